"""Placeholder names: any name imported from a stand-in module is a class that refuses to be built
(its attributes, e.g. ``InterpolationMode.BILINEAR``, are the strings of their names)."""


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return name.lower()


def placeholder(module: str, name: str) -> type:
    def refuse(self, *args, **kwargs):
        raise RuntimeError(f"torchvision stand-in: {module}.{name} is not available")
    return _Meta(name, (), {"__init__": refuse, "__module__": module})
