"""What noisifying another framework's dataset shares, whatever its format: pieces of frames saved in
a sidecar folder with the run's settings (interop.hdf5.Sidecar: resume after a kill, refuse other
settings), each camera's noiser and the settings it records, intrinsics from --intrinsics, and the
working-range check of realdiff.noisify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from interop.hdf5 import Sidecar
from realdiff.sensors import load_noiser, noisers_per_camera, per_camera, sensor_info

PIECE = 64  # frames one job noisifies (at most): two of RealD²iff's batches at 128x128
RANGE_SAMPLE_FRAMES = 64


def read_intrinsics(intrinsics, cams: list[str]) -> dict:
    """--intrinsics: one K.txt (3x3, or fx fy cx cy) for every camera, or CAM=K.txt,... per camera."""
    if not intrinsics:
        return {}
    items = [i.strip() for i in str(intrinsics).split(",") if i.strip()]
    out = {}
    for item in items:
        cam, _, file = item.rpartition("=") if "=" in item else ("", "", item)
        v = np.loadtxt(file, dtype=float).ravel()
        if v.size == 4:
            v = np.array([v[0], 0, v[2], 0, v[1], v[3], 0, 0, 1], float)
        if v.size != 9:
            raise ValueError(f"{file}: expected a 3x3 matrix or fx fy cx cy")
        for c in [cam] if cam else cams:
            out[c] = v.reshape(3, 3)
    return out


def range_warning(frames: np.ndarray, camera, noiser, model, base) -> dict | None:
    """The store's range check (realdiff.noisify.range_check) on sampled frames (n, H, W) metres."""
    info = sensor_info(noiser)
    if info is None or info.range_m is None:
        return None
    scale = 1.0 if model is base else model.scale
    outside = info.fraction_outside(frames, scale)
    if outside is None:
        return None
    out = {"sensor": info.sensor, "outside": round(outside, 4), "frames_sampled": len(frames)}
    if outside > 0.5:
        out["warning"] = (
            f"{camera}: {outside:.0%} of depth readings lie outside {noiser}'s working range "
            f"{info.range_text(scale)} ({info.sensor}); choose another --noiser or --range-scale {camera}=S"
        )
    return out


def models_for(noiser, cams: list[str], range_scale, seed: int) -> tuple[dict, dict]:
    """Each camera's noiser name, and (model, settings): the model (built smaller with its range
    scale) and the settings its output records."""
    names = noisers_per_camera(noiser, cams)
    loaded = {n: load_noiser(n) for n in dict.fromkeys(names.values())}
    scaled = {n: per_camera(m, cams, range_scale) for n, m in loaded.items()}
    out = {}
    for c in cams:
        model, base = scaled[names[c]][c], loaded[names[c]]
        config = {**base.describe(), "seed": seed}
        if model is not base:
            config["range_scale"] = model.scale
        out[c] = (model, base, config)
    return names, out


def resume_sidecar(folder: Path, run: dict, overwrite: bool) -> Sidecar:
    """The run's sidecar: resumed when it holds this run's settings, else refused (or, with
    overwrite, emptied); its settings written."""
    side = Sidecar(folder)
    settings_file = side.folder / "settings.json"
    run = json.loads(json.dumps(run))
    if side.folder.exists():
        if not (settings_file.is_file() and json.loads(settings_file.read_text()) == run):
            if not overwrite:
                raise ValueError(
                    f"{side.folder}: left by a noisify run with other settings or of an older file; "
                    "--overwrite discards it"
                )
            side.remove()
    side.folder.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(run))
    return side


def pack(segments: list[tuple], size: int) -> list[list[tuple]]:
    """Segments (item, start, end), each at most `size` frames, packed in order into groups of at
    most `size` frames: one job each."""
    groups, current, n = [], [], 0
    for seg in segments:
        k = seg[2] - seg[1]
        if current and n + k > size:
            groups.append(current)
            current, n = [], 0
        current.append(seg)
        n += k
    return groups + ([current] if current else [])
