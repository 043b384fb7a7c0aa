"""Camera rendering at the control rate: metric z-depth, optional RGB and segmentation.

Depth passes run with shadows, reflections, skybox and multisampling off (they change no depth
value and cost most of the CPU renderer's time). Images come out upright (row 0 at the top).
"""
from __future__ import annotations

import mujoco
import numpy as np

from simgen.cameras import CameraConfig
from simgen.scene import SCENE_GROUP, VISUAL_GROUP

_OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
        mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG, mujoco.mjtRndFlag.mjRND_HAZE)


class CameraRenderer:
    """Renders every configured camera; close() it (EGL complains at exit otherwise)."""

    def __init__(self, model: mujoco.MjModel, cameras: list[CameraConfig], rgb: bool = False,
                 seg_lut: np.ndarray | None = None):
        model.vis.quality.offsamples = 0
        self.model, self.cameras, self.rgb, self.seg_lut = model, cameras, rgb, seg_lut
        self.far = model.vis.map.zfar * model.stat.extent
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
                r = mujoco.Renderer(model, cam.height, cam.width)
                for flag in _OFF:
                    r.scene.flags[flag] = 0
                self._renderers[key] = r

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """{'<cam>_depth': float32 (H, W) metres, 0 = nothing hit; '<cam>_rgb'; '<cam>_seg'}."""
        out = {}
        for cam in self.cameras:
            r = self._renderers[(cam.height, cam.width)]
            r.update_scene(data, cam.name, scene_option=self.option)
            r.enable_depth_rendering()
            depth = r.render()
            depth[depth >= 0.99 * self.far] = 0.0  # background: no surface, no reading
            out[f"{cam.name}_depth"] = depth
            if self.seg_lut is not None:
                r.enable_segmentation_rendering()
                ids = r.render()
                seg = np.where(ids[..., 1] == mujoco.mjtObj.mjOBJ_GEOM,
                               self.seg_lut[np.clip(ids[..., 0], 0, None)], 0)
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
