"""Tasks: one module each (native ones in simgen's scene, robosuite:* ones in robosuite's own
environments), registered by name in tasks.registry. Importing this package imports every module
in it; get_task(name) gives a task, make_env(name, ...) the environment it runs in."""

from __future__ import annotations

import importlib
import pkgutil

from tasks.registry import REGISTRY, get_task, make_env, register, task_names

__all__ = ["REGISTRY", "get_task", "make_env", "register", "task_names"]


def _import_task_modules() -> None:
    """Import every module in this package (importing a task module registers its task)."""
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{m.name}")


_import_task_modules()
