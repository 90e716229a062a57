"""Pretrained VGG16 / AlexNet / LPIPS weights: fetched once, converted to PyTorch, cached on disk."""
