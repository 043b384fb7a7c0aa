"""What noisifying another framework's dataset shares, whatever its format: pieces of frames saved in
a sidecar folder with the run's settings (interop.hdf5.Sidecar: resume after a kill, refuse other
settings), each camera's noiser and the settings it records, intrinsics from --intrinsics, and the
working-range check of realdiff.noisify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from interop.hdf5 import Sidecar
from realdiff.frames import read_intrinsics as read_camera_matrix
from realdiff.noisify import range_report
from realdiff.sensors import load_noiser, noisers_per_camera, per_camera

PIECE = 64  # frames one job noisifies (at most): two of RealD²iff's batches at 128x128
RANGE_SAMPLE_FRAMES = 64


def read_intrinsics(intrinsics, cams: list[str]) -> dict:
    """--intrinsics: one K.txt (3x3, realdiff.frames.read_intrinsics) for every camera, or
    CAM=K.txt,... per camera."""
    out = {}
    for item in (i.strip() for i in str(intrinsics or "").split(",") if i.strip()):
        cam, _, file = item.rpartition("=")
        for c in [cam] if cam else cams:
            out[c] = read_camera_matrix(file)
    return out


def range_warning(frames: np.ndarray, camera: str, noiser: str, model, base) -> dict | None:
    """realdiff.noisify.range_report on sampled frames (n, H, W) metres, at the model's range scale
    (`model` is `base` built smaller, or base itself)."""
    return range_report(frames, camera, noiser, 1.0 if model is base else model.scale)


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
