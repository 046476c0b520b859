"""A stand-in for the few torchvision names timm imports, for machines whose torchvision wheel
does not match the installed torch (it then fails at import: "operator torchvision::nms does not
exist").  Nothing here computes anything; a test that needs torchvision itself is not served by it.
The tests put this folder on the path only when the real torchvision cannot be imported.
"""


__version__ = "0.0+stub"
