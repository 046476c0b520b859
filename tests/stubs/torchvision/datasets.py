"""Every name of this torchvision module is a placeholder (see ``torchvision._stand_in``)."""
from torchvision._stand_in import placeholder


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return placeholder(__name__, name)
