"""Training data: framing faces like the benchmark, parsing maps, the cache and its Dataset."""
