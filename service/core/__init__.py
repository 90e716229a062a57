"""The service's core, below every layer: settings, image decoding and encoding, the model runner
(the inference runtime) and the Prometheus metrics. No FastAPI, no Redis."""
