"""The PortraitSR inference service: FastAPI + Redis Streams + ONNX Runtime workers. Never imports torch.

Layers, each a sub-package; imports go downwards only (``lint-imports`` checks it, contracts in
``pyproject.toml``, the picture in ``docs/architecture.md``):

- :mod:`service.commands`, :mod:`service.supervisor`: the ``portraitsr`` subcommands and ``serve``'s processes;
- :mod:`service.http`: the FastAPI app (routes, errors and statuses, auth, uploads, security headers);
- :mod:`service.files`: files in and out of the command line (``portraitsr upscale|restore``);
- :mod:`service.queue`: the Redis Streams protocol, the API's broker and the batching worker;
- :mod:`service.faces`: face detection, alignment and paste-back for whole photos;
- :mod:`service.core`: settings, image decoding, the model runner and the metrics.
"""
