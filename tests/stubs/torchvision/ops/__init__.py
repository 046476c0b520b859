"""torchvision.ops stand-in: only ``misc.FrozenBatchNorm2d``."""
