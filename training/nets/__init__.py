"""Fixed pretrained feature extractors (VGG16, AlexNet) and LPIPS, written out without torchvision."""
