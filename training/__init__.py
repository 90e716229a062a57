"""Training, evaluation and export of PortraitSR models (PyTorch)."""
