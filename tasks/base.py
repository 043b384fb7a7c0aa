"""What every task provides. One task = one module in tasks/ holding a subclass of Task."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import mujoco
import numpy as np

from simgen.randomize import TABLE_TOP_Z, Randomization

Expert = Callable[["object"], np.ndarray]  # env -> action


class Task(ABC):
    """A scripted manipulation task: scene objects, randomisation, expert and success check.

    Subclasses set `name`, `description`, `object_bodies` (bodies whose poses are recorded, each
    with a free joint of the same name), optionally `fixture_bodies` / `fixture_joints` (bins,
    cabinets: segmented, and their joints recorded) and implement the four methods below. `self.dr` holds the
    randomisation switches (draw with `self.uniform` so each switch is honoured) and
    `self.table_z` this episode's table top height (the scene may randomise it).
    """

    name: str = ""
    description: str = ""
    object_bodies: list[str] = []
    fixture_bodies: list[str] = []  # static or articulated bodies labelled in segmentation
    fixture_joints: list[str] = []  # hinge/slide joints recorded per step as `fixture_qpos`
    max_steps: int = 150  # control steps (at 20 Hz) before an episode is cut off
    success_hold: int = 5  # an episode ends after this many consecutive successful steps

    def __init__(self, randomize: Randomization | None = None):
        self.dr = randomize if randomize is not None else Randomization()
        self.table_z = TABLE_TOP_Z  # set by the environment before each randomize()

    def uniform(self, rng: np.random.Generator, switch: str, low, high, nominal) -> np.ndarray | float:
        """rng.uniform(low, high) if randomisation `switch` (a Randomization field) is on, else
        `nominal`. The draw is made either way, so one switch never shifts another's values."""
        v = rng.uniform(low, high)
        if getattr(self.dr, switch):
            return v
        nominal = np.broadcast_to(np.asarray(nominal, float), np.shape(v)).copy()
        return float(nominal) if nominal.ndim == 0 else nominal

    @abstractmethod
    def add_objects(self, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies to the scene (once, before compiling)."""

    @abstractmethod
    def randomize(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> dict:
        """Draw this episode's object poses/sizes/colours into model and data; return them."""

    @abstractmethod
    def make_expert(self, env, rng: np.random.Generator) -> Expert:
        """A scripted policy for this episode: called once per control step, returns an action."""

    @abstractmethod
    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the task is solved in the current state."""


def set_box(model: mujoco.MjModel, geom: int, half: np.ndarray, density: float = 500.0) -> None:
    """Resize a box geom and its body's mass and inertia in a compiled model."""
    half = np.asarray(half, float)
    model.geom_size[geom] = half
    model.geom_rbound[geom] = np.linalg.norm(half)
    model.geom_aabb[geom] = np.concatenate([np.zeros(3), half])
    body = model.geom_bodyid[geom]
    if model.body_geomnum[body] != 1 or np.any(model.geom_pos[geom]) or model.geom_quat[geom][0] != 1:
        raise ValueError("set_box expects the only geom of its body, at the body's origin")
    # The body's bounding-volume hierarchy caches the compiled size; collisions use it too.
    model.bvh_aabb[model.body_bvhadr[body]] = model.geom_aabb[geom]
    mass = density * 8.0 * np.prod(half)
    model.body_mass[body] = mass
    model.body_inertia[body] = mass / 3.0 * np.array([half[1] ** 2 + half[2] ** 2,
                                                      half[0] ** 2 + half[2] ** 2,
                                                      half[0] ** 2 + half[1] ** 2])


def set_free_pose(model: mujoco.MjModel, data: mujoco.MjData, joint: str, pos, quat) -> None:
    """Place a free-jointed body and zero its velocity."""
    j = model.joint(joint)
    data.qpos[j.qposadr[0]:j.qposadr[0] + 7] = np.concatenate([pos, quat])
    data.qvel[j.dofadr[0]:j.dofadr[0] + 6] = 0.0


def set_cylinder(model: mujoco.MjModel, geom: int, radius: float, half_height: float,
                 density: float = 500.0) -> None:
    """Make a compiled geom an upright cylinder of this size and update its body's mass and
    inertia and the bounding volumes collisions use (as set_box does for boxes)."""
    body = model.geom_bodyid[geom]
    if model.body_geomnum[body] != 1 or np.any(model.geom_pos[geom]) or model.geom_quat[geom][0] != 1:
        raise ValueError("set_cylinder expects the only geom of its body, at the body's origin")
    model.geom_type[geom] = mujoco.mjtGeom.mjGEOM_CYLINDER
    model.geom_size[geom] = [radius, half_height, 0.0]
    model.geom_rbound[geom] = np.hypot(radius, half_height)
    model.geom_aabb[geom] = [0.0, 0.0, 0.0, radius, radius, half_height]
    model.bvh_aabb[model.body_bvhadr[body]] = model.geom_aabb[geom]
    mass = density * np.pi * radius ** 2 * 2 * half_height
    model.body_mass[body] = mass
    side = mass * (3 * radius ** 2 + (2 * half_height) ** 2) / 12
    model.body_inertia[body] = [side, side, mass * radius ** 2 / 2]


# The hand pointing straight down, fingers closing along world y.
R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
FINGER_HALF_DEPTH = 0.011  # m: closed fingers' half-depth from the grip site, seen along a push or pull


def fold_yaw(yaw: float) -> float:
    """The smallest hand turn about z, in [-45, 45) degrees, lining the fingers up with the faces
    of a box turned by `yaw`."""
    return (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4


def body_yaw(data: mujoco.MjData, body: str) -> float:
    """A body's rotation about world z (radians)."""
    xmat = data.body(body).xmat
    return float(np.arctan2(xmat[3], xmat[0]))


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by yaw about world z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Waypoints:
    """Moves a reference pose toward successive goals at a bounded speed (one call per step).

    Each goal is (position, rotation, gripper, hold_steps); a goal is done once the reference has
    reached it and `hold_steps` further steps have passed.
    """

    def __init__(self, start_pos, start_R, speed: float, dt: float):
        self.pos, self.R, self.grip = np.array(start_pos, float), np.array(start_R, float), 0.0
        self.step_len = speed * dt
        self.goals: list[tuple[np.ndarray, np.ndarray, float, int]] = []
        self._held = 0

    def add(self, pos, R, grip: float, hold: int = 0) -> "Waypoints":
        self.goals.append((np.asarray(pos, float), np.asarray(R, float), grip, hold))
        return self

    def next(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Advance one control step; returns the reference (position, rotation, gripper)."""
        if not self.goals:
            return self.pos, self.R, self.grip
        goal, R, grip, hold = self.goals[0]
        delta = goal - self.pos
        dist = np.linalg.norm(delta)
        if dist > self.step_len:
            self.pos = self.pos + delta * (self.step_len / dist)
        else:
            self.pos = goal.copy()
        self.R, self.grip = R, grip  # orientation goals are reached by the controller's IK
        if dist <= self.step_len:
            self._held += 1
            if self._held > hold:
                self.goals.pop(0)
                self._held = 0
        return self.pos, self.R, self.grip
