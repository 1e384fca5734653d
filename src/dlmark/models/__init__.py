"""The zoo: model sources (seed names, torchvision, timm, py:), published accuracy, data sets."""
