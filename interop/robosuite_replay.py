"""Replaying a robosuite dataset's stored MuJoCo states to render its cameras again.

A robosuite-made demo (robomimic, MimicGen, a simgen robosuite-task store) keeps the MJCF of its
model and the flattened MjSim state [time, qpos, qvel] of every step. `Replay` builds the model from
that MJCF (its asset paths moved to this machine's installs, as robosuite's `edit_model_xml` and
MimicGen's do), sets each state, and renders with simgen's robosuite rendering
(`simgen.robosuite_env.render_context` / `render_camera`): the depth is what `simgen render` gives
for the same model and state, bit for bit. No environment class is needed, only the assets.
"""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco
import numpy as np

from simgen.robosuite_env import (
    camera_K,
    free_render_context,
    import_robosuite,
    metric_from_normalized,
    render_camera,
    render_context,
)

__all__ = [
    "Replay",
    "camera_K",
    "camera_names",
    "metric_from_normalized",
    "model_from_xml",
    "remap_asset_paths",
    "resolve_assets",
]

# Packages whose assets robosuite-made models point at, and the names their folders had in older
# datasets.
ASSET_PACKAGES = ("robosuite", "mimicgen", "robosuite_task_zoo", "robocasa")
RENAMED = {"mimicgen_envs": "mimicgen"}


def _package_dir(name: str) -> str | None:
    """Where package `name` is installed (without importing it), or None."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))))


def _asset_files(root: ET.Element) -> list[ET.Element]:
    return [e for tag in ("mesh", "texture", "hfield", "skin") for e in root.iter(tag) if e.get("file")]


def _package_of(path: str) -> tuple[str, list[str]] | None:
    """(package, the path's parts after its folder) for an asset path through an ASSET_PACKAGES
    folder (the last listed wins: MimicGen's assets lie under .../mimicgen/models/robosuite/...)."""
    parts = [RENAMED.get(p, p) for p in path.split("/")]
    for name in reversed(ASSET_PACKAGES):
        if name in parts:
            last = len(parts) - 1 - parts[::-1].index(name)
            return name, path.split("/")[last + 1 :]
    return None


def remap_asset_paths(xml: str) -> str:
    """`xml` with every asset file path that runs through an ASSET_PACKAGES folder (any machine's
    install, or `robosuite/...` as simgen stores it) moved into this machine's install of that
    package, keeping the part after the package's last folder (robosuite's `edit_model_xml`,
    MimicGen's). Paths of packages not installed here stay as they are."""
    root = ET.fromstring(xml)
    for elem in _asset_files(root):
        found = _package_of(elem.get("file"))
        home = _package_dir(found[0]) if found else None
        if home is not None:
            elem.set("file", "/".join([home, *found[1]]))
    return ET.tostring(root, encoding="unicode")


def resolve_assets(xml: str) -> str:
    """remap_asset_paths(xml), checked: ValueError naming the first asset file missing on this
    machine (and the package to install)."""
    xml = remap_asset_paths(xml)
    for elem in _asset_files(ET.fromstring(xml)):
        path = elem.get("file")
        if Path(path).is_absolute() and not Path(path).is_file():
            found = _package_of(path)
            need = (
                f"install {found[0]} (the dataset's model uses its assets)"
                if found and _package_dir(found[0]) is None
                else "the dataset was made with other assets than this machine has"
            )
            raise ValueError(f"model asset not found: {path}; {need}")
    return xml


def model_from_xml(xml: str) -> mujoco.MjModel:
    """The MuJoCo model of a robosuite-made MJCF (a demo's `model_file`), asset paths remapped
    (remap_asset_paths). ValueError, one line, if an asset is missing here (resolve_assets) or
    MuJoCo cannot compile it."""
    xml = resolve_assets(xml)
    try:
        return mujoco.MjModel.from_xml_string(xml)
    except ValueError as e:
        lines = str(e).strip().splitlines() or ["(no message)"]
        raise ValueError(f"the dataset's model does not compile here: {' '.join(lines)}") from None


def camera_names(xml: str) -> list[str]:
    """The cameras an MJCF names (a text search, fast on thousands of demos' models)."""
    return re.findall(r'<camera\b[^>]*?\bname="([^"]*)"', xml)


class Replay:
    """A robosuite MjSim of a demo's MJCF with a depth render context; close it when done.
    `sizes` maps each robosuite camera to render to its (width, height)."""

    def __init__(self, xml: str, sizes: dict[str, tuple[int, int]]):
        import_robosuite()
        from robosuite.utils.binding_utils import MjSim

        self.sizes = {c: (int(w), int(h)) for c, (w, h) in sizes.items()}
        self.sim = MjSim(model_from_xml(xml))
        self.model = self.sim.model._model
        known = {self.model.camera(i).name for i in range(self.model.ncam)}
        missing = [c for c in self.sizes if c not in known]
        if missing:
            raise ValueError(f"unknown camera {missing[0]!r}; the model has: {', '.join(sorted(known))}")
        if self.model.na:
            raise ValueError("the model has actuator activations, which [time, qpos, qvel] states lack")
        self.state_size = 1 + self.model.nq + self.model.nv
        width = max(w for w, _ in self.sizes.values())
        height = max(h for _, h in self.sizes.values())
        self._ctx = render_context(self.sim, width, height)

    def camera_K(self, camera: str) -> np.ndarray:
        """K of `camera` at its size (OpenCV pixel-centre convention)."""
        return camera_K(self.model, camera, *self.sizes[camera])

    def render(self, states: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per camera, the depth (T, H, W) float32 m (upright, 0 = no reading) and camera-to-world
        extrinsics (T, 4, 4) float32 (OpenCV axes) at each flattened state of `states` (T, S)."""
        from robosuite.utils.camera_utils import get_camera_extrinsic_matrix

        states = np.asarray(states, np.float64)
        if states.ndim != 2 or states.shape[1] < self.state_size:
            raise ValueError(
                f"states of shape {states.shape} do not fit the model: each needs at least "
                f"{self.state_size} numbers (time, {self.model.nq} qpos, {self.model.nv} qvel)"
            )
        out = {
            c: (np.zeros((len(states), h, w), np.float32), np.zeros((len(states), 4, 4), np.float32))
            for c, (w, h) in self.sizes.items()
        }
        self._ctx.gl_ctx.make_current()  # another renderer in this process may have taken over
        for t, state in enumerate(states):
            self.sim.set_state_from_flattened(state)
            self.sim.forward()
            for c, (w, h) in self.sizes.items():
                out[c][0][t] = render_camera(self.sim, c, w, h)[0]
                out[c][1][t] = get_camera_extrinsic_matrix(self.sim, c)
        return out

    def close(self) -> None:
        if self._ctx is not None:
            free_render_context(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
