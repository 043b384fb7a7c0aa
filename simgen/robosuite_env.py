"""The adapter running robosuite's own environments as simgen tasks (`--task robosuite:Lift`; the
tasks themselves are tasks/robosuite_*.py).

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
  step. Depth is metric by `camera_utils.get_real_depth_map`'s formula, flipped upright; K is
  `get_camera_intrinsic_matrix`'s moved to the OpenCV pixel-centre convention (robosuite puts the
  principal point at W/2, H/2; MuJoCo's image centre is at (W-1)/2, (H-1)/2 in that convention);
  extrinsics from `get_camera_extrinsic_matrix` (camera-to-world, OpenCV axes). The context is made
  at the image size without multisampling and without the passes `simgen.render.depth_scene` turns
  off (shadows, reflections, skybox): depth is exact without them (multisampled depth is off by
  millimetres) and they cost most of the render time. These render functions (`render_context`,
  `render_camera`, `camera_K`) take any robosuite MjSim: `simgen depth` replays datasets with them
  (interop.robosuite_replay), bit for bit what rendering here gives.
- Replay: each step records `sim_state`, robosuite's flattened MjSim state, and the store's
  `robosuite` section the MJCF the model was compiled from (`model_xml`), as robomimic datasets
  keep `states` and `model_file`.
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
from pathlib import Path
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from simgen.controller import ACTION_DIM, rot6d_to_mat, rotation_vector
from simgen.controller import make_action as _make_action
from simgen.env import robot_state
from simgen.render import depth_scene, far_plane, no_reading_at_far
from simgen.scene import FIRST_OBJECT_SEGMENT

if TYPE_CHECKING:
    from tasks.robosuite_base import RobosuiteTask

CONTROL_HZ = 20
CAMERAS = {"front": "agentview", "wrist": "robot0_eye_in_hand"}  # our name -> robosuite's


def check_cameras(cameras) -> None:
    """ValueError for a camera robosuite tasks do not have, or one named twice."""
    for c in cameras:
        if c not in CAMERAS:
            raise ValueError(f"unknown camera {c!r} for robosuite tasks; known: {', '.join(CAMERAS)}")
    if len(set(cameras)) != len(tuple(cameras)):
        raise ValueError("a camera is named twice")


# --------------------------------------------------------------------------------------------
# robosuite loading


def import_robosuite():
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
    robosuite = import_robosuite()
    return robosuite.make(
        name,
        robots="Panda",
        controller_configs=_controller_config(robosuite),
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        use_object_obs=False,
        control_freq=CONTROL_HZ,
        hard_reset=False,
        ignore_done=True,
        reward_shaping=False,
        seed=0,
    )


def model_xml(rs_env) -> str:
    """The MJCF robosuite compiled `rs_env`'s model from (its own XML after its XML processors,
    full precision, unlike MuJoCo's saved XML), asset paths made relative to the robosuite package
    (`robosuite/models/assets/...`) so the text is the same on every machine. Read it before the
    environment changes its model tree."""
    xml = rs_env.model.get_xml()
    for process in rs_env._xml_processors:
        xml = process(xml)
    home = str(Path(sys.modules["robosuite"].__file__).parent)
    return xml.replace(f'file="{home}/', 'file="robosuite/')


# --------------------------------------------------------------------------------------------
# Rendering any robosuite MjSim (used by RobosuiteEnv and by interop.robosuite_replay)


def render_context(sim, width: int, height: int):
    """robosuite's offscreen context for `sim` (a robosuite MjSim), sized to the images, without
    the passes depth does not need (multisampling, shadow casting and depth_scene's passes). Sets
    the model's offscreen size, samples and shadows. Free it with free_render_context."""
    from robosuite.utils.binding_utils import MjRenderContextOffscreen

    m = sim.model._model
    m.vis.global_.offwidth, m.vis.global_.offheight = width, height
    m.vis.quality.offsamples = 0
    m.light_castshadow[:] = 0
    ctx = MjRenderContextOffscreen(sim, device_id=-1, max_width=width, max_height=height)
    depth_scene(ctx.scn)
    ctx.vopt.geomgroup[0] = 0  # robosuite's camera settings: visual meshes, not collision ones
    ctx.vopt.geomgroup[1] = 1
    ctx.vopt.sitegroup[:] = 0
    return ctx


def free_render_context(ctx) -> None:
    """Free a render_context's GL resources now, not whenever the collector runs."""
    ctx.con.free()
    ctx.gl_ctx.free()


def metric_from_normalized(model: mujoco.MjModel, z: np.ndarray) -> np.ndarray:
    """Metric z-depth from MuJoCo's normalised depth buffer `z` in [0, 1], as robosuite's
    `get_real_depth_map` computes it (same operations, same result; the image's orientation is
    kept)."""
    extent = model.stat.extent
    far = model.vis.map.zfar * extent
    near = model.vis.map.znear * extent
    return near / (1.0 - z * (1.0 - near / far))


def render_camera(sim, camera: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Robosuite camera `camera` of `sim` (with a render_context current): upright metric depth
    (float32 m, 0 = no reading) and the upright RGB image (a view)."""
    rgb, raw = sim.render(camera_name=camera, width=width, height=height, depth=True)
    if not (np.all(raw >= 0.0) and np.all(raw <= 1.0)):
        raise RuntimeError(f"camera {camera!r}: depth buffer outside [0, 1]")
    m = sim.model._model
    depth = metric_from_normalized(m, raw)[::-1].astype(np.float32)
    return np.ascontiguousarray(no_reading_at_far(depth, far_plane(m))), rgb[::-1]


def camera_K(model: mujoco.MjModel, camera: str, width: int, height: int) -> np.ndarray:
    """K (3x3) of model camera `camera` at width x height in the OpenCV pixel-centre convention:
    robosuite's `get_camera_intrinsic_matrix` (focal length from the camera's fovy, principal point
    W/2, H/2) moved by half a pixel, since MuJoCo's image centre is (W-1)/2, (H-1)/2 there."""
    fovy = model.cam_fovy[model.camera(camera).id]
    f = 0.5 * height / np.tan(fovy * np.pi / 360)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    K[:2, 2] -= 0.5
    return K


# --------------------------------------------------------------------------------------------
# The environment


class RobosuiteEnv:
    """A robosuite environment with simgen's Env interface. Close it when done."""

    def __init__(
        self,
        task: RobosuiteTask,
        cameras=("front", "wrist"),
        width: int = 128,
        height: int = 128,
        rgb: bool = False,
        seg: bool = False,
        render: bool = True,
    ):
        check_cameras(cameras)
        self.task = task
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
            self._ctx = render_context(self.sim, self.width, self.height) if render and self.cameras else None
            self._seg_lut = segment_lut(self.model, self.task.object_bodies) if seg else None
        except BaseException:
            self.close()
            raise

    # -- Env interface

    def reset(self, seed: int) -> dict:
        """Reseed robosuite's generator and reset (robot at its noisy home pose, objects placed by
        robosuite's sampler). Returns the record of what robosuite drew."""
        self.rs.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.rs.reset()
        self._sync()
        objects = {}
        for name, obj, b in zip(
            self.task.object_bodies, self.task.objects(self.rs), self._bodies, strict=True
        ):
            objects[name] = {
                "pos": self.data.xpos[b].round(6).tolist(),
                "quat": self.data.xquat[b].round(6).tolist(),
                "half_size": np.round(obj.size, 6).tolist(),
            }
        return {
            "robosuite_env": self.task.env_name,
            "objects": objects,
            "robot_init_qpos": self.data.qpos[self._arm_q].round(6).tolist(),
        }

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
        """Proprioception, object poses, camera extrinsics and `sim_state`, robosuite's flattened
        MjSim state [time, qpos, qvel] (float64: what a replay sets to render this step again)."""
        from robosuite.utils.camera_utils import get_camera_extrinsic_matrix

        d = self.data
        objects = np.array([np.concatenate([d.xpos[b], d.xquat[b]]) for b in self._bodies])
        out = robot_state(d.qpos[self._arm_q], d.qpos[self._finger_q], *self.eef_pose(), objects)
        for c in self.cameras:
            out[f"{c}_extrinsics"] = get_camera_extrinsic_matrix(self.sim, CAMERAS[c]).astype(np.float32)
        out["sim_state"] = self.sim.get_state().flatten()
        return out

    def observe(self) -> dict[str, np.ndarray]:
        """state() plus every camera's images (upright; depth in metres, 0 = no reading)."""
        return {**self.state(), **self.render()}

    def render(self) -> dict[str, np.ndarray]:
        """Every camera's images: '<cam>_depth' float32 metres, '<cam>_rgb', '<cam>_seg'."""
        if not self.cameras:
            return {}
        if self._ctx is None:
            raise RuntimeError("this RobosuiteEnv was made without rendering")
        self._ctx.gl_ctx.make_current()  # another renderer in this process may have taken over
        out = {}
        for c in self.cameras:
            out[f"{c}_depth"], rgb = render_camera(self.sim, CAMERAS[c], self.width, self.height)
            if self.rgb:
                out[f"{c}_rgb"] = np.ascontiguousarray(rgb)
            if self._seg_lut is not None:
                ids = self.sim.render(
                    camera_name=CAMERAS[c], width=self.width, height=self.height, segmentation=True
                )[::-1]
                seg = np.where(
                    ids[..., 0] == mujoco.mjtObj.mjOBJ_GEOM, self._seg_lut[np.clip(ids[..., 1], 0, None)], 0
                )
                out[f"{c}_seg"] = seg.astype(np.uint8)
        return out

    def success(self) -> bool:
        """robosuite's own success check for the environment."""
        return bool(self.rs._check_success())

    def camera_attrs(self) -> dict[str, dict]:
        """Per camera (our names): size, K (OpenCV pixel-centre convention), fovy, mount, nominal
        extrinsics of a fixed camera, and the robosuite camera it is."""
        from robosuite.utils.camera_utils import get_camera_extrinsic_matrix

        out = {}
        for c in self.cameras:
            rs_name = CAMERAS[c]
            cam = self.model.camera(rs_name)
            K = camera_K(self.model, rs_name, self.width, self.height)
            body = int(cam.bodyid[0])
            fixed = body == 0
            out[c] = {
                "width": self.width,
                "height": self.height,
                "K": K.round(9).tolist(),
                "fovy_deg": float(cam.fovy[0]),
                "mount": "world" if fixed else self.model.body(body).name,
                "extrinsics_key": f"{c}_extrinsics",
                "extrinsics": get_camera_extrinsic_matrix(self.sim, rs_name).round(9).tolist()
                if fixed
                else None,
                "extrinsics_convention": "camera-to-world 4x4, OpenCV axes (x right, y down, z forward)",
                "robosuite_camera": rs_name,
            }
        return out

    def robosuite_attrs(self) -> dict:
        """The store's `robosuite` section: version, environment, robot, controller, eef site, the
        robosuite camera of each of ours and the model's MJCF (`model_xml`, see model_xml: the
        same in every process, the environment being built with seed 0)."""
        return {
            "version": sys.modules["robosuite"].__version__,
            "env": self.task.env_name,
            "robot": "Panda",
            "controller": "OSC_POSE, absolute world-frame input",
            "eef_site": self.model.site(self._eef_site).name,
            "cameras": {c: CAMERAS[c] for c in self.cameras},
            "model_xml": model_xml(self.rs),
        }

    def close(self) -> None:
        if self._ctx is not None:
            free_render_context(self._ctx)
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
