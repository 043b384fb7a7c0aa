"""What every task provides, and the geometry and waypoint helpers the scripted experts share.
One task = one module in tasks/ holding a subclass of Task (a native MuJoCo scene) or of
tasks.robosuite_base.RobosuiteTask (one of robosuite's own environments)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import mujoco
import numpy as np

from simgen.cameras import get_cameras
from simgen.controller import rotation_matrix, rotation_vector
from simgen.env import Env, camera_attrs
from simgen.randomize import TABLE_TOP_Z, Randomization
from simgen.scene import DEFAULT_MESH_DETAIL

Expert = Callable[["object"], np.ndarray]  # env -> action


class BaseTask(ABC):
    """What the registry, the environment factory and `run_episode` need of any task.

    Subclasses set `name`, `description` and `object_bodies` (bodies whose poses are recorded);
    `self.dr` holds the randomisation switches.
    """

    name: str = ""
    description: str = ""
    object_bodies: list[str] = []
    max_steps: int = 150  # control steps (at 20 Hz) before an episode is cut off
    success_hold: int = 5  # an episode ends after this many consecutive successful steps

    def __init__(self, randomize: Randomization | None = None):
        self.dr = randomize if randomize is not None else Randomization()

    @abstractmethod
    def check(self, cameras, width: int, height: int) -> None:
        """ValueError for cameras, a resolution or randomisation switches this task cannot honour."""

    @abstractmethod
    def make_env(
        self,
        cameras,
        width: int,
        height: int,
        rgb: bool = False,
        seg: bool = False,
        mesh_detail: float = DEFAULT_MESH_DETAIL,
    ):
        """The environment this task runs in, with these cameras (names); close it when done."""

    @abstractmethod
    def describe(self, cameras, width: int, height: int) -> dict:
        """What a store's attributes say about this task with these cameras: `description`,
        `object_bodies`, `segment_bodies` (segment classes from FIRST_OBJECT_SEGMENT on),
        `cameras` (attributes per camera), `physics_dt`, `engine` (versions beyond simgen's and
        MuJoCo's) and `extra_attrs` (further root attributes)."""

    @abstractmethod
    def make_expert(self, env, rng: np.random.Generator) -> Expert:
        """A scripted policy for this episode: called once per control step, returns an action."""


class Task(BaseTask):
    """A scripted manipulation task in simgen's own scene: objects, randomisation, expert and
    success check.

    Subclasses set `name`, `description`, `object_bodies` (each with a free joint of the same
    name), optionally `fixture_bodies` / `fixture_joints` (bins, cabinets: segmented, and their
    joints recorded) and implement add_objects, randomize, make_expert and success. Draw with
    `self.uniform` so each randomisation switch is honoured; `self.table_z` is this episode's table
    top height (the scene may randomise it).
    """

    fixture_bodies: list[str] = []  # static or articulated bodies labelled in segmentation
    fixture_joints: list[str] = []  # hinge/slide joints recorded per step as `fixture_qpos`

    def __init__(self, randomize: Randomization | None = None):
        super().__init__(randomize)
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
    def success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        """Whether the task is solved in the current state."""

    def check(self, cameras, width, height):
        get_cameras(cameras, width, height)  # unknown or repeated camera, bad resolution

    def make_env(self, cameras, width, height, rgb=False, seg=False, mesh_detail=DEFAULT_MESH_DETAIL) -> Env:
        return Env(self, get_cameras(cameras, width, height), rgb=rgb, seg=seg, mesh_detail=mesh_detail)

    def describe(self, cameras, width, height):
        return {
            "description": self.description,
            "object_bodies": list(self.object_bodies),
            "segment_bodies": list(self.object_bodies) + list(self.fixture_bodies),
            "cameras": camera_attrs(get_cameras(cameras, width, height)),
            "physics_dt": 0.002,
            "engine": {},
            "extra_attrs": {"fixture_joints": list(self.fixture_joints)} if self.fixture_joints else {},
        }


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
    model.body_inertia[body] = (
        mass
        / 3.0
        * np.array([half[1] ** 2 + half[2] ** 2, half[0] ** 2 + half[2] ** 2, half[0] ** 2 + half[1] ** 2])
    )


def set_free_pose(model: mujoco.MjModel, data: mujoco.MjData, joint: str, pos, quat) -> None:
    """Place a free-jointed body and zero its velocity."""
    j = model.joint(joint)
    data.qpos[j.qposadr[0] : j.qposadr[0] + 7] = np.concatenate([pos, quat])
    data.qvel[j.dofadr[0] : j.dofadr[0] + 6] = 0.0


def set_cylinder(
    model: mujoco.MjModel, geom: int, radius: float, half_height: float, density: float = 500.0
) -> None:
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
    mass = density * np.pi * radius**2 * 2 * half_height
    model.body_mass[body] = mass
    side = mass * (3 * radius**2 + (2 * half_height) ** 2) / 12
    model.body_inertia[body] = [side, side, mass * radius**2 / 2]


# The hand pointing straight down, fingers closing along world y.
R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
FINGER_HALF_DEPTH = 0.011  # m: closed fingers' half-depth from the grip site, seen along a push or pull


def body_yaw(data: mujoco.MjData, body: str) -> float:
    """A body's rotation about world z (radians)."""
    xmat = data.body(body).xmat
    return float(np.arctan2(xmat[3], xmat[0]))


def grasp_yaws(yaw: float) -> tuple[float, float]:
    """The two hand turns about world z that line the fingers up with a pair of faces of a box
    turned by `yaw`: the smallest, in [-45, 45) degrees, first."""
    a = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
    return a, a - np.pi / 2 if a >= 0 else a + np.pi / 2


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by yaw about world z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class Waypoints:
    """Moves a reference pose toward successive goals at a bounded speed (one call per step).

    Each goal is (position, rotation, gripper, hold, tol). Without a `turn_rate` the reference
    takes a goal's rotation at once (the controller's IK gets there); with one it turns at most
    that fast (rad/s). A goal is done once the reference has reached it and `hold` further steps
    have passed, counting a step only if the hand is within `tol` of the goal (when given) or
    `patience` steps have passed there.
    """

    def __init__(
        self, start_pos, start_R, speed: float, dt: float, turn_rate: float | None = None, patience: int = 40
    ):
        self.pos, self.R, self.grip = np.array(start_pos, float), np.array(start_R, float), 0.0
        self.step_len = speed * dt
        self.step_angle = None if turn_rate is None else turn_rate * dt
        self.patience = patience
        self.goals: list[tuple[np.ndarray, np.ndarray, float, int, float | None]] = []
        self._waited = self._held = 0

    def add(self, pos, R, grip: float, hold: int = 0, tol: float | None = None) -> Waypoints:
        self.goals.append((np.asarray(pos, float), np.asarray(R, float), grip, hold, tol))
        return self

    def next(self, eef_pos: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Advance one control step; returns the reference (position, rotation, gripper).
        `eef_pos`, the hand's position, is needed by goals with a `tol`."""
        if not self.goals:
            return self.pos, self.R, self.grip
        goal, R, grip, hold, tol = self.goals[0]
        delta = goal - self.pos
        dist = np.linalg.norm(delta)
        self.pos = goal.copy() if dist <= self.step_len else self.pos + delta * (self.step_len / dist)
        turned = self._turn(R)
        self.grip = grip
        if dist <= self.step_len and turned:
            self._waited += 1
            if tol is None or np.linalg.norm(eef_pos - goal) <= tol or self._waited > self.patience:
                self._held += 1
            if self._held > hold:
                self.goals.pop(0)
                self._waited = self._held = 0
        return self.pos, self.R, self.grip

    def _turn(self, R: np.ndarray) -> bool:
        """Turn the reference toward R, at most step_angle; whether it is there."""
        if self.step_angle is None:
            self.R = R
            return True
        turn = rotation_vector(R @ self.R.T)
        angle = np.linalg.norm(turn)
        if angle <= self.step_angle:
            self.R = R.copy()
            return True
        self.R = rotation_matrix(turn * (self.step_angle / angle)) @ self.R
        return False
