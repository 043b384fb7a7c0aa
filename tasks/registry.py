"""The task registry and the environment factory. Every task, native or robosuite's, is a class
registered here under its name with @register; `make_env` builds the environment a task runs in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simgen.scene import DEFAULT_MESH_DETAIL

if TYPE_CHECKING:
    from simgen.env import Env
    from simgen.randomize import Randomization
    from simgen.robosuite_env import RobosuiteEnv
    from tasks.base import BaseTask

REGISTRY: dict[str, type[BaseTask]] = {}


def register(cls: type[BaseTask]) -> type[BaseTask]:
    """Class decorator adding a task class to the registry under cls.name."""
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"task name {cls.name!r} is empty or taken")
    REGISTRY[cls.name] = cls
    return cls


def get_task(name: str, randomize: Randomization | None = None) -> BaseTask:
    """A new instance of the task called `name` with randomisation switches `randomize`
    (default: Randomization()); ValueError lists the known ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(task_names())}")
    return REGISTRY[name](randomize)


def task_names() -> list[str]:
    return sorted(REGISTRY)


def make_env(
    task: str,
    cameras=(),
    width: int = 128,
    height: int = 128,
    rgb: bool = False,
    seg: bool = False,
    mesh_detail: float = DEFAULT_MESH_DETAIL,
    randomize: Randomization | None = None,
) -> Env | RobosuiteEnv:
    """The environment task `task` runs in, with these cameras (names) at width x height, RGB and
    segmentation if asked: a `simgen.env.Env` for a native task, a `simgen.robosuite_env.RobosuiteEnv`
    for a robosuite one (which ignores `mesh_detail` and `randomize`). Close it when done."""
    return get_task(task, randomize).make_env(
        cameras, width, height, rgb=rgb, seg=seg, mesh_detail=mesh_detail
    )
