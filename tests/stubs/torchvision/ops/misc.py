"""``FrozenBatchNorm2d``: timm imports the name; the stand-in refuses to be built."""


class FrozenBatchNorm2d:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision stand-in: FrozenBatchNorm2d is not available")
