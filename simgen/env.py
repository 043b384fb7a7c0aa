"""The simulation environment shared by every task: physics at 500 Hz, control at 20 Hz,
rendering once per control step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mujoco
import numpy as np

from simgen.cameras import CameraConfig, extrinsics_cv, nominal_extrinsics
from simgen.controller import CartesianController, make_action
from simgen.randomize import SceneRandomizer
from simgen.render import CameraRenderer
from simgen.scene import ARM_JOINTS, DEFAULT_MESH_DETAIL, FINGER_JOINTS, HOME_QPOS, build_scene, segment_lut

if TYPE_CHECKING:
    from tasks.base import Task

CONTROL_HZ = 20


def camera_attrs(cameras: list[CameraConfig]) -> dict[str, dict]:
    """Per camera: size, K (OpenCV pixel-centre convention), fovy, mount and the nominal
    extrinsics of a fixed camera (None for a mounted one)."""
    return {
        c.name: {
            "width": c.width,
            "height": c.height,
            "K": c.K.round(9).tolist(),
            "fovy_deg": c.fovy_deg,
            "mount": c.body or "world",
            "extrinsics_key": f"{c.name}_extrinsics",
            "extrinsics": nominal_extrinsics(c),
            "extrinsics_convention": "camera-to-world 4x4, OpenCV axes (x right, y down, z forward)",
        }
        for c in cameras
    }


def robot_state(arm_q, finger_q, eef_pos, eef_R, object_pose) -> dict[str, np.ndarray]:
    """The state arrays of a step (float32): arm and finger joint positions, end-effector position
    and quaternion (w, x, y, z) from its rotation matrix, and each object's pose (n, 7)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(eef_R, float).ravel())
    return {
        "robot_qpos": np.asarray(arm_q, np.float32),
        "gripper_qpos": np.asarray(finger_q, np.float32),
        "eef_pos": np.asarray(eef_pos, np.float32),
        "eef_quat": quat.astype(np.float32),
        "object_pose": np.asarray(object_pose, np.float32),
    }


class Env:
    """One task's scene with a Cartesian controller and cameras. Close it when done."""

    def __init__(
        self,
        task: Task,
        cameras: list[CameraConfig],
        rgb: bool = False,
        seg: bool = False,
        mesh_detail: float = DEFAULT_MESH_DETAIL,
    ):
        self.task, self.cameras = task, cameras
        self.model = build_scene(cameras, task.add_objects, mesh_detail).compile()
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # mj_setConst overwrites the state it is given
        self.dt = 1.0 / CONTROL_HZ
        self.n_substeps = int(round(self.dt / self.model.opt.timestep))
        self.controller = CartesianController(self.model)
        lut = segment_lut(self.model, task.object_bodies + task.fixture_bodies) if seg else None
        self.renderer = CameraRenderer(self.model, cameras, rgb=rgb, seg_lut=lut)
        self._arm_q = np.array([self.model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._finger_q = np.array([self.model.joint(j).qposadr[0] for j in FINGER_JOINTS])
        self._obj_q = [self.model.joint(b).qposadr[0] for b in task.object_bodies]
        self._fix_q = [self.model.joint(j).qposadr[0] for j in task.fixture_joints]
        self._cam_ids = [self.model.camera(c.name).id for c in cameras]
        self.scene = SceneRandomizer(self.model, [c.name for c in cameras])

    def reset(self, seed: int) -> dict:
        """Home the robot, randomise the scene and the task from `seed`; returns the record of
        every randomised value (the task's, plus the scene's under "scene")."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self._arm_q] = HOME_QPOS
        d.ctrl[self.controller.arm_act] = HOME_QPOS
        d.qpos[self._finger_q] = [0.04, -0.04]
        d.ctrl[self.controller.finger_act] = [0.04, -0.04]
        scene = self.scene.apply(np.random.default_rng([seed, 2]), self.task.dr)
        self.task.table_z = scene["table_z"]
        params = self.task.randomize(m, d, np.random.default_rng(seed))
        mujoco.mj_setConst(m, self._scratch)  # masses may have changed: refresh derived constants
        mujoco.mj_forward(m, d)
        return {**params, "scene": scene}

    def step(self, action: np.ndarray) -> None:
        """Apply one action and advance one control period."""
        self.controller.apply(self.data, action)
        self.step_physics()

    def step_physics(self) -> None:
        """Advance one control period with the current servo targets."""
        for _ in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
        # Poses, cameras and images agree with the final qpos (mj_step's are one sub-step old).
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    def make_action(self, pos, R, grip: float) -> np.ndarray:
        return make_action(pos, R, grip)

    def state(self) -> dict[str, np.ndarray]:
        """Proprioception, object poses and camera extrinsics of the current state."""
        d = self.data
        objects = np.array([d.qpos[a : a + 7] for a in self._obj_q], np.float32).reshape(-1, 7)
        out = robot_state(d.qpos[self._arm_q], d.qpos[self._finger_q], *self.controller.eef_pose(d), objects)
        if self._fix_q:
            out["fixture_qpos"] = d.qpos[self._fix_q].astype(np.float32)
        for cam, cid in zip(self.cameras, self._cam_ids, strict=True):
            out[f"{cam.name}_extrinsics"] = extrinsics_cv(d.cam_xpos[cid], d.cam_xmat[cid]).astype(np.float32)
        return out

    def observe(self) -> dict[str, np.ndarray]:
        """state() plus every camera's images."""
        return {**self.state(), **self.renderer.render(self.data)}

    def success(self) -> bool:
        return self.task.success(self.model, self.data)

    def camera_attrs(self) -> dict[str, dict]:
        return camera_attrs(self.cameras)

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_episode(env: Env, seed: int, on_step=None) -> tuple[dict[str, np.ndarray], dict]:
    """Roll out the task's expert from `seed`. Returns per-step arrays (stacked along time,
    observation t paired with action t) and an info dict (seed, success, length, params)."""
    params = env.reset(seed)
    expert = env.task.make_expert(env, np.random.default_rng([seed, 1]))
    frames: dict[str, list] = {}
    held = 0
    for _ in range(env.task.max_steps):
        obs = env.observe()
        action = expert(env)
        obs["action"] = action
        for k, v in obs.items():
            frames.setdefault(k, []).append(v)
        env.step(action)
        held = held + 1 if env.success() else 0
        if on_step is not None:
            on_step()
        if held >= env.task.success_hold:
            break
    arrays = {k: np.stack(v) for k, v in frames.items()}
    info = {
        "seed": int(seed),
        "success": held >= env.task.success_hold,
        "length": len(arrays["action"]),
        "params": params,
    }
    return arrays, info
