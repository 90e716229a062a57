"""Real-world degradations: how a 128×128 face becomes the low-resolution input people send.

``config`` (the YAML section), ``kernels`` (blur kernels), ``operations`` (blur, resize, noise,
JPEG: one function each), ``pipeline`` (the random, seeded training pipeline after Real-ESRGAN's
second-order model) and ``benchmark`` (the fixed, seeded table the real models are measured on).
NumPy, Pillow and OpenCV only: no torch, so data-loader workers and benchmarks share it.
"""
