"""robosuite's own environments as simgen tasks: `--task robosuite:Lift`, `--task robosuite:Stack`.

`RobosuiteEnv` wraps a robosuite environment (its Panda, its arena, its objects and its object
placement) behind the interface of `simgen.env.Env`, so `run_episode` and the runner write the same
store schema as native tasks:

- Control: robosuite's Panda OSC_POSE controller at 20 Hz, switched to absolute world-frame input
  (`input_type: absolute`, `input_ref_frame: world`; robosuite 1.5 supports both). Our 10-number
  action (eef target position, first two columns of the target rotation, gripper 0 open .. 1
  closed) becomes robosuite's [position, rotation vector, gripper -1 open .. +1 closed] unchanged,
  so the recorded action is exactly the pose the expert commanded. The eef is robosuite's
  `gripper0_right_grip_site`, the controller's own reference site.
- Cameras: ours map to robosuite's (`front` -> `agentview`, `wrist` -> `robot0_eye_in_hand`) and
  render through robosuite's offscreen context (`MjSim.render`) once per control step, after the
  step. Depth comes from `camera_utils.get_real_depth_map`, flipped upright; K from
  `get_camera_intrinsic_matrix` moved to the OpenCV pixel-centre convention (robosuite puts the
  principal point at W/2, H/2; MuJoCo's image centre is at (W-1)/2, (H-1)/2 in that convention);
  extrinsics from `get_camera_extrinsic_matrix` (camera-to-world, OpenCV axes). The context is made
  at the image size with multisampling, shadows, reflections and skybox off: depth is exact
  without them (multisampled depth is off by millimetres) and they cost most of the render time.
- Seeding: robosuite draws object placement and the robot's initial joint noise from one
  generator, `env.rng`; `reset(seed)` reseeds it in place, so an episode depends on its seed only.
  The environment is built once (`hard_reset=False`), with seed 0, so anything drawn at build time
  (Lift's cube size) is the same in every process.

robosuite is imported lazily: checking a task name or a configuration does not load it.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys

import mujoco
import numpy as np

from simgen.controller import ACTION_DIM, rot6d_to_mat
from simgen.controller import make_action as _make_action
from simgen.randomize import Randomization
from simgen.scene import FIRST_OBJECT_SEGMENT
from tasks.base import R_DOWN, rot_z

PREFIX = "robosuite:"
CONTROL_HZ = 20
CAMERAS = {"front": "agentview", "wrist": "robot0_eye_in_hand"}  # our name -> robosuite's
SCENE_SWITCHES = ("table_height", "table_texture", "lighting", "camera_jitter")
OBJECT_SWITCHES = ("object_pose", "object_size", "object_color")
_OFF_FLAGS = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
              mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG, mujoco.mjtRndFlag.mjRND_HAZE)


# --------------------------------------------------------------------------------------------
# Names and configuration checks (no robosuite import)


def is_robosuite_task(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def env_name(task: str) -> str:
    """'robosuite:Lift' -> 'Lift'; ValueError naming the supported ones for anything else."""
    name = task[len(PREFIX):] if is_robosuite_task(task) else task
    if name not in TASKS:
        raise ValueError(f"unsupported robosuite environment {name!r}; supported: "
                         f"{', '.join(PREFIX + n for n in sorted(TASKS))}")
    return name


def check_config(task: str, cameras, randomize: Randomization) -> None:
    """ValueError for a setting a robosuite task cannot honour."""
    env_name(task)
    for c in cameras:
        if c not in CAMERAS:
            raise ValueError(f"unknown camera {c!r} for robosuite tasks; known: {', '.join(CAMERAS)}")
    if len(set(cameras)) != len(tuple(cameras)):
        raise ValueError("a camera is named twice")
    on = [s for s in SCENE_SWITCHES if getattr(randomize, s)]
    if on:
        raise ValueError(f"randomisation {', '.join(on)} is not supported for robosuite tasks "
                         "(robosuite randomises its own object placement only)")
    off = [s for s in OBJECT_SWITCHES if not getattr(randomize, s)]
    if off:
        raise ValueError(f"randomisation {', '.join(off)} cannot be turned off for robosuite tasks "
                         "(robosuite always randomises its own object placement)")


# --------------------------------------------------------------------------------------------
# robosuite loading


def _import_robosuite():
    """Import robosuite (and the camera utilities, which import its wrappers) without their
    import-time chatter (missing private macros, gym), and keep its console log to warnings and
    errors."""
    if "robosuite.utils.camera_utils" not in sys.modules:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import robosuite.utils.camera_utils
        logger = logging.getLogger("robosuite_logs")
        for h in logger.handlers:  # made during the import, pointing at the swallowed stream
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setStream(sys.stderr)
        logger.setLevel(logging.WARNING)
    import robosuite

    return robosuite


def _controller_config(robosuite) -> dict:
    """robosuite's default Panda controller (OSC_POSE) taking absolute world-frame poses."""
    cfg = robosuite.load_composite_controller_config(robot="Panda")
    arm = cfg["body_parts"]["right"]
    if arm["type"] != "OSC_POSE":
        raise RuntimeError(f"robosuite's default Panda arm controller is {arm['type']}, expected OSC_POSE")
    arm.update(input_type="absolute", input_ref_frame="world")
    return cfg


def _make(name: str):
    robosuite = _import_robosuite()
    return robosuite.make(name, robots="Panda", controller_configs=_controller_config(robosuite),
                          has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
                          use_object_obs=False, control_freq=CONTROL_HZ, hard_reset=False,
                          ignore_done=True, reward_shaping=False, seed=0)


# --------------------------------------------------------------------------------------------
# The environment


class RobosuiteEnv:
    """A robosuite environment with simgen's Env interface. Close it when done."""

    def __init__(self, task: str, cameras=("front", "wrist"), width: int = 128, height: int = 128,
                 rgb: bool = False, seg: bool = False, render: bool = True):
        check_config(task, cameras, Randomization())
        self.task = TASKS[env_name(task)]()
        self.cameras, self.width, self.height = list(cameras), int(width), int(height)
        self.rgb, self.seg = rgb, seg
        self.dt = 1.0 / CONTROL_HZ
        self._ctx = None
        self.rs = _make(self.task.env_name)
        try:
            self.sim = self.rs.sim
            self.model, self.data = self.sim.model._model, self.sim.data._data
            robot = self.rs.robots[0]
            self._arm_q = np.asarray(robot._ref_joint_pos_indexes)
            self._finger_q = np.asarray(robot._ref_gripper_joint_pos_indexes["right"])
            self._eef_site = robot.eef_site_id["right"]
            self._bodies = [self.model.body(b).id for b in self.task.object_bodies]
            for name in self.rs._observables:  # state is read from the sim directly: skip their cost
                self.rs.modify_observable(name, "enabled", False)
            self._ctx = self._render_context() if render and self.cameras else None
            self._seg_lut = segment_lut(self.model, self.task.object_bodies) if seg else None
        except BaseException:
            self.close()
            raise

    # -- rendering setup

    def _render_context(self):
        """robosuite's offscreen context, sized to the images, without the passes depth does not
        need (multisampling, shadows, reflections, skybox)."""
        from robosuite.utils.binding_utils import MjRenderContextOffscreen

        m = self.model
        m.vis.global_.offwidth, m.vis.global_.offheight = self.width, self.height
        m.vis.quality.offsamples = 0
        m.light_castshadow[:] = 0
        ctx = MjRenderContextOffscreen(self.sim, device_id=-1, max_width=self.width, max_height=self.height)
        for flag in _OFF_FLAGS:
            ctx.scn.flags[flag] = 0
        ctx.vopt.geomgroup[0] = 0  # robosuite's camera settings: visual meshes, not collision ones
        ctx.vopt.geomgroup[1] = 1
        ctx.vopt.sitegroup[:] = 0
        return ctx

    # -- Env interface

    def reset(self, seed: int) -> dict:
        """Reseed robosuite's generator and reset (robot at its noisy home pose, objects placed by
        robosuite's sampler). Returns the record of what robosuite drew."""
        self.rs.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.rs.reset()
        self._sync()
        objects = {}
        for name, obj, b in zip(self.task.object_bodies, self.task.objects(self.rs), self._bodies, strict=True):
            objects[name] = {"pos": self.data.xpos[b].round(6).tolist(),
                             "quat": self.data.xquat[b].round(6).tolist(),
                             "half_size": np.round(obj.size, 6).tolist()}
        return {"robosuite_env": self.task.env_name, "objects": objects,
                "robot_init_qpos": self.data.qpos[self._arm_q].round(6).tolist()}

    def step(self, action: np.ndarray) -> None:
        """Apply one 10-number action for one control period (25 physics steps of 2 ms)."""
        action = np.asarray(action, float)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be {ACTION_DIM} finite numbers, got shape {action.shape}")
        rotvec = rotation_vector(rot6d_to_mat(action[3:9]))
        grip = 2.0 * np.clip(action[9], 0.0, 1.0) - 1.0
        self.rs.step(np.concatenate([action[:3], rotvec, [grip]]))
        self._sync()

    def _sync(self) -> None:
        """Poses and cameras from the final qpos (robosuite's split steps leave them one physics
        step old)."""
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    def make_action(self, pos, R, grip: float) -> np.ndarray:
        return _make_action(pos, R, grip)

    def eef_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (grip site) position and rotation matrix."""
        s = self._eef_site
        return self.data.site_xpos[s].copy(), self.data.site_xmat[s].reshape(3, 3).copy()

    def state(self) -> dict[str, np.ndarray]:
        """Proprioception, object poses and camera extrinsics of the current state."""
        from robosuite.utils.camera_utils import get_camera_extrinsic_matrix

        d = self.data
        pos, R = self.eef_pose()
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, R.ravel())
        out = {
            "robot_qpos": d.qpos[self._arm_q].astype(np.float32),
            "gripper_qpos": d.qpos[self._finger_q].astype(np.float32),
            "eef_pos": pos.astype(np.float32),
            "eef_quat": quat.astype(np.float32),
            "object_pose": np.array([np.concatenate([d.xpos[b], d.xquat[b]]) for b in self._bodies], np.float32),
        }
        for c in self.cameras:
            out[f"{c}_extrinsics"] = get_camera_extrinsic_matrix(self.sim, CAMERAS[c]).astype(np.float32)
        return out

    def observe(self) -> dict[str, np.ndarray]:
        """state() plus every camera's images (upright; depth in metres, 0 = no reading)."""
        return {**self.state(), **self.render()}

    def render(self) -> dict[str, np.ndarray]:
        """Every camera's images: '<cam>_depth' float32 metres, '<cam>_rgb', '<cam>_seg'."""
        from robosuite.utils.camera_utils import get_real_depth_map

        if not self.cameras:
            return {}
        if self._ctx is None:
            raise RuntimeError("this RobosuiteEnv was made without rendering")
        self._ctx.gl_ctx.make_current()  # another renderer in this process may have taken over
        far = 0.99 * self.model.vis.map.zfar * self.model.stat.extent
        out = {}
        for c in self.cameras:
            rgb, raw = self.sim.render(camera_name=CAMERAS[c], width=self.width, height=self.height, depth=True)
            depth = get_real_depth_map(self.sim, raw)[::-1].astype(np.float32)
            depth[depth >= far] = 0.0  # nothing hit: no reading
            out[f"{c}_depth"] = np.ascontiguousarray(depth)
            if self.rgb:
                out[f"{c}_rgb"] = np.ascontiguousarray(rgb[::-1])
            if self._seg_lut is not None:
                ids = self.sim.render(camera_name=CAMERAS[c], width=self.width, height=self.height,
                                      segmentation=True)[::-1]
                seg = np.where(ids[..., 0] == mujoco.mjtObj.mjOBJ_GEOM,
                               self._seg_lut[np.clip(ids[..., 1], 0, None)], 0)
                out[f"{c}_seg"] = seg.astype(np.uint8)
        return out

    def success(self) -> bool:
        """robosuite's own success check for the environment."""
        return bool(self.rs._check_success())

    def camera_attrs(self) -> dict[str, dict]:
        """Per camera (our names): size, K (OpenCV pixel-centre convention), fovy, mount, nominal
        extrinsics of a fixed camera, and the robosuite camera it is."""
        from robosuite.utils.camera_utils import get_camera_extrinsic_matrix, get_camera_intrinsic_matrix

        out = {}
        for c in self.cameras:
            rs_name = CAMERAS[c]
            cam = self.model.camera(rs_name)
            K = get_camera_intrinsic_matrix(self.sim, rs_name, self.height, self.width)
            K[:2, 2] -= 0.5  # robosuite's principal point W/2, H/2 is (W-1)/2, (H-1)/2 here
            body = int(cam.bodyid[0])
            fixed = body == 0
            out[c] = {
                "width": self.width, "height": self.height, "K": K.round(9).tolist(),
                "fovy_deg": float(cam.fovy[0]),
                "mount": "world" if fixed else self.model.body(body).name,
                "extrinsics_key": f"{c}_extrinsics",
                "extrinsics": get_camera_extrinsic_matrix(self.sim, rs_name).round(9).tolist() if fixed else None,
                "extrinsics_convention": "camera-to-world 4x4, OpenCV axes (x right, y down, z forward)",
                "robosuite_camera": rs_name,
            }
        return out

    def close(self) -> None:
        if self._ctx is not None:  # free the GL context now, not whenever the collector runs
            self._ctx.con.free()
            self._ctx.gl_ctx.free()
            self._ctx = None
        if self.rs is not None:
            self.rs.close()
            self.rs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def segment_lut(model: mujoco.MjModel, object_bodies: list[str]) -> np.ndarray:
    """Map geom id -> simgen segment class (simgen.scene.SEGMENTS) for a robosuite model."""
    lut = np.zeros(model.ngeom, np.uint8)
    obj_ids = {model.body(b).id: FIRST_OBJECT_SEGMENT + i for i, b in enumerate(object_bodies)}
    for g in range(model.ngeom):
        body = int(model.geom_bodyid[g])
        name = model.body(body).name
        if model.geom(g).name == "floor":
            lut[g] = 1
        elif name == "table" or name.startswith("fixed_mount"):
            lut[g] = 2  # the table and the robot's pedestal (simgen's scene counts both as table)
        elif name.startswith("gripper0_"):
            lut[g] = 4
        elif name.startswith("robot0_"):
            lut[g] = 3
        else:
            lut[g] = obj_ids.get(body, 0)
    return lut


def describe(task: str, cameras, width: int, height: int) -> dict:
    """What a store's attributes say about a robosuite task: description, object bodies, cameras
    and versions (builds the environment once, without rendering)."""
    with RobosuiteEnv(task, cameras, width, height, render=False) as env:
        robosuite = sys.modules["robosuite"]
        return {"description": env.task.description, "object_bodies": list(env.task.object_bodies),
                "cameras": env.camera_attrs(), "physics_dt": float(env.model.opt.timestep),
                "robosuite": {"version": robosuite.__version__, "env": env.task.env_name,
                              "robot": "Panda", "controller": "OSC_POSE, absolute world-frame input",
                              "eef_site": env.model.site(env._eef_site).name,
                              "cameras": {c: CAMERAS[c] for c in env.cameras}}}


# --------------------------------------------------------------------------------------------
# Tasks and their scripted experts

def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> rotation vector (axis times angle, angle in [0, pi])."""
    q, v = np.zeros(4), np.zeros(3)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, float).ravel())
    mujoco.mju_quat2Vel(v, q if q[0] >= 0 else -q, 1.0)
    return v


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vector -> rotation matrix."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    q, R = np.zeros(4), np.zeros(9)
    mujoco.mju_axisAngle2Quat(q, np.asarray(rotvec, float) / angle, angle)
    mujoco.mju_quat2Mat(R, q)
    return R.reshape(3, 3)


def _yaw(quat_wxyz) -> float:
    w, x, y, z = quat_wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def grasp_yaws(cube_yaw: float) -> tuple[float, float]:
    """The two hand yaws (about world z, relative to R_DOWN) that close the fingers on a pair of
    the cube's faces, the smaller turn first."""
    a = (cube_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4  # in [-45, 45) degrees
    return a, a - np.pi / 2 if a >= 0 else a + np.pi / 2


class Plan:
    """A scripted trajectory: the reference pose moves toward successive goals at a bounded speed
    and turn rate (a large sudden orientation error sends OSC into the joint limits); a goal is
    done once the reference is there, the hand has come within `tol` of it (or `patience` steps
    have passed) and then `hold` more steps have passed."""

    def __init__(self, pos, R, speed: float, turn_rate: float, dt: float, patience: int = 40):
        self.pos, self.R, self.grip = np.array(pos, float), np.array(R, float), 0.0
        self.step_len, self.step_angle, self.patience = speed * dt, turn_rate * dt, patience
        self.goals: list[tuple[np.ndarray, np.ndarray, float, int, float | None]] = []
        self._waited = self._held = 0

    def add(self, pos, R, grip: float, hold: int = 0, tol: float | None = None) -> Plan:
        self.goals.append((np.asarray(pos, float), np.asarray(R, float), float(grip), hold, tol))
        return self

    def next(self, eef_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Advance one control step; returns the reference (position, rotation, gripper)."""
        if not self.goals:
            return self.pos, self.R, self.grip
        goal, R, grip, hold, tol = self.goals[0]
        delta = goal - self.pos
        dist = np.linalg.norm(delta)
        self.pos = goal.copy() if dist <= self.step_len else self.pos + delta * (self.step_len / dist)
        turn = rotation_vector(R @ self.R.T)
        angle = np.linalg.norm(turn)
        self.R = R.copy() if angle <= self.step_angle else (
            rotation_matrix(turn * (self.step_angle / angle)) @ self.R)
        self.grip = grip
        if dist <= self.step_len and angle <= self.step_angle:
            self._waited += 1
            if tol is None or np.linalg.norm(eef_pos - goal) <= tol or self._waited > self.patience:
                self._held += 1
            if self._held > hold:
                self.goals.pop(0)
                self._waited = self._held = 0
        return self.pos, self.R, self.grip


def _follow(plan: Plan):
    def act(env) -> np.ndarray:
        p, R, g = plan.next(env.eef_pose()[0])
        return env.make_action(p, R, g)

    return act


class RobosuiteTask:
    """A supported robosuite environment: the bodies recorded in object_pose and the expert."""

    env_name = ""
    name = ""
    description = ""
    object_bodies: list[str] = []
    max_steps = 150
    success_hold = 5

    def objects(self, rs_env) -> list:
        """robosuite's MujocoObjects, in object_bodies order."""
        raise NotImplementedError

    def make_expert(self, env: RobosuiteEnv, rng: np.random.Generator):
        raise NotImplementedError


GRASP_DEPTH = 0.004  # m the grip site goes below a cube's centre: the finger pads centred on it
SPEED = 0.25  # m/s of the reference pose
TURN_RATE = 1.5  # rad/s of the reference pose


class Lift(RobosuiteTask):
    env_name, name = "Lift", "robosuite:Lift"
    description = "robosuite Lift: grasp the cube and lift it (robosuite's own scene and success check)"
    object_bodies = ["cube_main"]
    max_steps = 150

    def objects(self, rs_env):
        return [rs_env.cube]

    def make_expert(self, env, rng):
        d = env.data
        pos0, R0 = env.eef_pose()
        b = env.model.body(self.object_bodies[0]).id
        c = d.xpos[b].copy()
        R = rot_z(grasp_yaws(_yaw(d.xquat[b]))[0]) @ R_DOWN
        grasp = c - [0.0, 0.0, GRASP_DEPTH]
        plan = (Plan(pos0, R0, SPEED, TURN_RATE, env.dt)
                .add(c + [0.0, 0.0, 0.10], R, 0.0, tol=0.02)
                .add(grasp, R, 0.0, tol=0.006)
                .add(grasp, R, 1.0, hold=12)
                .add(c + [0.0, 0.0, 0.20], R, 1.0, hold=100))
        return _follow(plan)


class Stack(RobosuiteTask):
    env_name, name = "Stack", "robosuite:Stack"
    description = ("robosuite Stack: grasp cubeA and place it on cubeB, then let go (robosuite's own "
                   "scene and success check)")
    object_bodies = ["cubeA_main", "cubeB_main"]
    max_steps = 250

    def objects(self, rs_env):
        return [rs_env.cubeA, rs_env.cubeB]

    def make_expert(self, env, rng):
        d, m = env.data, env.model
        pos0, R0 = env.eef_pose()
        a, b = (m.body(n).id for n in self.object_bodies)
        ca, cb = d.xpos[a].copy(), d.xpos[b].copy()
        half_a, half_b = (obj.size[2] for obj in self.objects(env.rs))
        # Of the two grasps, the one whose fingers (closing along the hand's x axis) close across
        # the line to cubeB, so neither finger comes down on it.
        to_b = (cb - ca)[:2] / max(np.linalg.norm((cb - ca)[:2]), 1e-9)
        yaw = min(grasp_yaws(_yaw(d.xquat[a])), key=lambda y: abs((rot_z(y) @ R_DOWN)[:2, 0] @ to_b))
        R = rot_z(yaw) @ R_DOWN
        grasp = ca - [0.0, 0.0, GRASP_DEPTH]
        # Carried, cubeA's centre sits GRASP_DEPTH above the grip site.
        top_b = cb[2] + half_b
        place = np.array([cb[0], cb[1], top_b + half_a + 0.008 - GRASP_DEPTH])
        carry_z = top_b + half_a + 0.08
        plan = (Plan(pos0, R0, SPEED, TURN_RATE, env.dt)
                .add(ca + [0.0, 0.0, 0.10], R, 0.0, tol=0.02)
                .add(grasp, R, 0.0, tol=0.006)
                .add(grasp, R, 1.0, hold=12)
                .add([ca[0], ca[1], carry_z], R, 1.0, tol=0.02)
                .add([cb[0], cb[1], carry_z], R, 1.0, tol=0.01)
                .add(place, R, 1.0, tol=0.005)
                .add(place, R, 0.0, hold=10)
                .add(place + [0.0, 0.0, 0.08], R, 0.0, hold=100))
        return _follow(plan)


TASKS: dict[str, type[RobosuiteTask]] = {"Lift": Lift, "Stack": Stack}

