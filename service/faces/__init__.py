"""Whole photos: faces found (MTCNN on ONNX Runtime), aligned to the training framing, and the
restored faces pasted back. NumPy and Pillow only; shared by ``POST /restore`` and ``portraitsr restore``."""
