"""Networks used by training but not shipped: the fixed pretrained feature extractors (VGG16,
AlexNet) and LPIPS, written out without torchvision, and the small face parser of prepare-data."""
