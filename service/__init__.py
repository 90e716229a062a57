"""The PortraitSR inference service: FastAPI + Redis Streams + ONNX Runtime workers. Never imports torch."""
