"""Task registry: each task is one module here holding its scene, randomisation, expert and
success check; it registers itself with @register and is found by name with get_task()."""
from __future__ import annotations

from simgen.randomize import Randomization
from tasks.base import Task

REGISTRY: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a Task subclass to the registry under cls.name."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"task name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls
    return cls


def get_task(name: str, randomize: Randomization | None = None) -> Task:
    """A new instance of the task called `name` with randomisation switches `randomize`
    (default: Randomization()); ValueError lists the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](randomize)


def task_names() -> list[str]:
    return sorted(REGISTRY)


def _import_task_modules() -> None:
    """Import every module in this package (importing a task module registers its task)."""
    import importlib
    import pkgutil

    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if m.name != "base":
            importlib.import_module(f"{__name__}.{m.name}")


_import_task_modules()
