"""PyTorch twins of the VCA and MHSA layers and of the tiny models (optional: needs torch).

The core package never imports this subpackage or torch.
"""
