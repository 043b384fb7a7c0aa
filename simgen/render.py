"""Depth rendering, set up once (depth_renderer: shadows, reflections, skybox, fog, haze and
multisampling off, as they change no depth value and cost most of the CPU renderer's time; depth
at the far plane is no reading, 0), for simgen's cameras at the control rate (CameraRenderer:
metric z-depth, optional RGB and segmentation), the robosuite adapter and a scene mesh at
arbitrary poses (TwinRenderer, for real/twin depth pairs). Images come out upright (row 0 at the
top)."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from simgen.cameras import MJ_TO_CV, CameraConfig, mat_to_quat, set_mujoco_intrinsics
from simgen.scene import SCENE_GROUP, VISUAL_GROUP

DEPTH_OFF_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
    mujoco.mjtRndFlag.mjRND_FOG,
    mujoco.mjtRndFlag.mjRND_HAZE,
)


def depth_scene(scene: mujoco.MjvScene) -> None:
    """Turn off the passes that change no depth value (shadows, reflections, skybox, fog, haze)."""
    for flag in DEPTH_OFF_FLAGS:
        scene.flags[flag] = 0


def depth_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """A `mujoco.Renderer` for depth: no multisampling (it blends depth across edges) and
    depth_scene's passes off. Close it when done."""
    model.vis.quality.offsamples = 0
    r = mujoco.Renderer(model, height, width)
    depth_scene(r.scene)
    return r


def far_plane(model: mujoco.MjModel) -> float:
    """The far clipping plane in metres."""
    return float(model.vis.map.zfar * model.stat.extent)


def no_reading_at_far(depth: np.ndarray, far: float) -> np.ndarray:
    """Depth at the far plane (nothing hit) set to 0, no reading, in place; returns depth."""
    depth[depth >= 0.99 * far] = 0.0
    return depth


class CameraRenderer:
    """Renders every configured camera; close() it (EGL complains at exit otherwise)."""

    def __init__(
        self,
        model: mujoco.MjModel,
        cameras: list[CameraConfig],
        rgb: bool = False,
        seg_lut: np.ndarray | None = None,
    ):
        self.model, self.cameras, self.rgb, self.seg_lut = model, cameras, rgb, seg_lut
        self.far = far_plane(model)
        self.option = mujoco.MjvOption()
        self.option.geomgroup[:] = 0
        self.option.geomgroup[[VISUAL_GROUP, SCENE_GROUP]] = 1
        self.option.sitegroup[:] = 0
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        for cam in cameras:
            if model.camera(cam.name).id < 0:
                raise ValueError(f"camera {cam.name} is not in the model")
            key = (cam.height, cam.width)
            if key not in self._renderers:
                self._renderers[key] = depth_renderer(model, cam.height, cam.width)

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """{'<cam>_depth': float32 (H, W) metres, 0 = nothing hit; '<cam>_rgb'; '<cam>_seg'}."""
        out = {}
        for cam in self.cameras:
            r = self._renderers[(cam.height, cam.width)]
            r.update_scene(data, cam.name, scene_option=self.option)
            r.enable_depth_rendering()
            out[f"{cam.name}_depth"] = no_reading_at_far(r.render(), self.far)
            if self.seg_lut is not None:
                r.enable_segmentation_rendering()
                ids = r.render()
                seg = np.where(
                    ids[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, self.seg_lut[np.clip(ids[..., 0], 0, None)], 0
                )
                out[f"{cam.name}_seg"] = seg.astype(np.uint8)
            if self.rgb:
                r.disable_segmentation_rendering()
                r.disable_depth_rendering()
                out[f"{cam.name}_rgb"] = r.render()
        return out

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TwinRenderer:
    """Renders a mesh's depth at arbitrary camera poses with fixed intrinsics (MuJoCo, headless)."""

    def __init__(self, mesh_path: str | Path, K: np.ndarray, width: int, height: int):
        import trimesh

        mesh = trimesh.load(mesh_path, force="mesh", process=False)
        if len(mesh.faces) == 0:
            raise ValueError(f"{mesh_path}: mesh has no faces")
        spec = mujoco.MjSpec()
        lo, hi = mesh.bounds
        spec.stat.extent = float(np.linalg.norm(hi - lo))
        spec.stat.center = ((lo + hi) / 2).tolist()
        spec.visual.map.znear = 0.05 / spec.stat.extent  # 5 cm near plane
        spec.visual.map.zfar = 4.0  # in extents: past any wall of the mesh
        m = spec.add_mesh(name="twin")
        m.uservert = np.asarray(mesh.vertices, np.float64).ravel().tolist()
        m.userface = np.asarray(mesh.faces, np.int32).ravel().tolist()
        m.inertia = mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL
        spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname="twin", contype=0, conaffinity=0)
        cam = spec.worldbody.add_camera(name="sensor", pos=[0, 0, 0], quat=[1, 0, 0, 0])
        set_mujoco_intrinsics(cam, K, width, height)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.far = far_plane(self.model)
        self.renderer = depth_renderer(self.model, height, width)
        self.renderer.enable_depth_rendering()

    def render(self, pose_cv: np.ndarray) -> np.ndarray:
        """float32 z-depth (m) seen from a camera-to-world pose with OpenCV axes; 0 = no surface."""
        self.model.cam_pos[0] = pose_cv[:3, 3]
        self.model.cam_quat[0] = mat_to_quat(pose_cv[:3, :3] @ MJ_TO_CV)
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self.renderer.update_scene(self.data, "sensor")
        return no_reading_at_far(self.renderer.render(), self.far)

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
