"""Scene files shipped with simgen (found with importlib.resources, so they work from a wheel)."""

from importlib.resources import files


def path(name: str) -> str:
    """Absolute path of a file in this package, e.g. path('scene.xml')."""
    return str(files(__name__) / name)
