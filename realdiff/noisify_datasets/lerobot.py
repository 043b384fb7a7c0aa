"""`realdiff noisify` on a LeRobot v3 dataset (interop.lerobot_depth; docs/formats/lerobot.md):
each depth feature gains `<feature>_<suffix>`, frames seeded by their global `index`."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from interop import lerobot_depth as lr
from interop.hdf5 import Sidecar
from realdiff.noisify import TOOL, _model, _warn_stderr, check_suffix, run_noisify_jobs
from realdiff.noisify_datasets.common import (
    PIECE,
    RANGE_SAMPLE_FRAMES,
    models_for,
    range_warning,
    read_intrinsics,
    resume_sidecar,
)
from realdiff.sensors import DEFAULT_NOISER
from simgen.store import depth_from_stored, depth_to_stored


def _noisify_rows(
    span: lr.DepthRows,
    start: int,
    end: int,
    model_json: str,
    K: list,
    seed: int,
    sidecar: str,
    threads: int = 1,
) -> int:
    """Worker: noisify rows [start, end) of a LeRobot depth feature, seeded by each frame's global
    index, and save them (uint16 mm) in the sidecar."""
    model = _model(model_json, threads)
    clean, index = lr.read_rows(span, start, end)
    cam = zlib.crc32(span.camera.encode())
    rngs = [np.random.default_rng([seed, cam, int(i)]) for i in index]
    out = model.noisify_frames(clean, np.asarray(K, float), rngs)
    Sidecar(sidecar).save(_rows_name(span, start), depth_to_stored(out))
    return end - start


def _rows_name(span: lr.DepthRows, start: int) -> str:
    return f"{Path(span.file).parent.name}/{Path(span.file).stem}-{span.feature}.{start}"


def noisify_lerobot(
    path: str | Path,
    noiser: str | dict = DEFAULT_NOISER,
    cameras: list[str] | None = None,
    suffix: str = "noisy",
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    range_scale: dict | None = None,
    warn=_warn_stderr,
    backend: str = "local",
    address: str | None = None,
    intrinsics: str | None = None,
) -> dict:
    """Add `<feature>_<suffix>` for each depth feature of a LeRobot v3 dataset (interop.lerobot_depth);
    arguments as noisify_hdf5 (cameras: the features' camera names). Frames are seeded by their
    global `index`, so a dataset exported from a simgen store gets the store's noise."""
    import pyarrow.parquet as pq

    root = Path(path)
    check_suffix(suffix)
    info = lr.read_info(root)
    feats = lr.depth_features(info)
    known = list(dict.fromkeys(feats.values()))
    cams = list(cameras or known)
    for c in cams:
        if c not in known:
            raise lr.LeRobotError(
                f"{root}: no depth feature of camera {c!r}; it has {', '.join(known) or 'none'}"
            )
    feats = {f: c for f, c in feats.items() if c in cams}
    if not feats:
        raise lr.LeRobotError(f"{root}: no depth feature (observation.depth.<camera>)")
    for feat in feats:
        if f"{feat}_{suffix}" in info["features"] and not overwrite:
            raise lr.LeRobotError(f"{feat}_{suffix} exists; --overwrite replaces it")
    given_K = read_intrinsics(intrinsics, cams)
    names, models = models_for(noiser, cams, range_scale, seed)
    files = lr.data_files(root)
    rows = {f: pq.ParquetFile(f).metadata.num_rows for f in files}
    Ks, settings = {}, {}
    for feat, c in feats.items():
        K = given_K.get(c)
        if K is None and "K" in (info["features"][feat].get("info") or {}):
            K = np.asarray(info["features"][feat]["info"]["K"], float)
        if K is None:
            raise lr.LeRobotError(f"{root}: no intrinsics for {feat} (info.K); pass --intrinsics K.txt")
        Ks[feat] = np.asarray(K, float)
        settings[feat] = {"config": models[c][2], "K": np.round(Ks[feat], 9).tolist()}
    stamp = [[str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    side = resume_sidecar(
        Path(f"{root}.{TOOL}-{suffix}"), {"files": stamp, "suffix": suffix, "features": settings}, overwrite
    )
    spans = {feat: [lr.DepthRows(feat, c, str(f), rows[f]) for f in files] for feat, c in feats.items()}
    checks = {}
    for feat, c in feats.items():
        first = spans[feat][0]
        sample = lr.read_rows(first, 0, min(first.rows, RANGE_SAMPLE_FRAMES))[0]
        checks[feat] = range_warning(sample, c, names[c], models[c][0], models[c][1])
        if checks[feat] and "warning" in checks[feat]:
            warn(checks[feat]["warning"])
    jobs = []
    for feat, c in feats.items():
        fixed = (models[c][0].to_json(), Ks[feat].tolist(), seed, str(side.folder))
        for span in spans[feat]:
            for start in range(0, span.rows, PIECE):
                if not side.has(_rows_name(span, start)):
                    jobs.append((span, start, min(start + PIECE, span.rows), *fixed))
    total = sum(j[2] - j[1] for j in jobs)
    label = ",".join(dict.fromkeys(names[c] for c in cams))
    bar = tqdm(total=total, unit="frame", desc=f"noisify {label}", disable=not progress)
    run_noisify_jobs(_noisify_rows, jobs, bar.update, backend, workers, address)
    bar.close()
    stats = {feat: lr.Stats(lr.clean_stats(root, feat)) for feat in feats}
    for f in tqdm(files, desc="write", unit="file", disable=not progress):
        columns = {}
        for feat in feats:
            span = next(s for s in spans[feat] if s.file == str(f))
            mm = np.concatenate([side.load(_rows_name(span, s)) for s in range(0, span.rows, PIECE)])
            values = depth_from_stored(mm)
            stats[feat].add(values)
            shape = info["features"][feat]["shape"]
            columns[f"{feat}_{suffix}"] = (feat, values.reshape(len(values), *shape))
        lr.add_columns(f, columns)
    lr.add_features(
        root,
        {
            f"{feat}_{suffix}": (feat, {**settings[feat], "range_check": checks[feat]}, stats[feat])
            for feat in feats
        },
    )
    side.remove()
    return {
        "frames": sum(rows.values()),
        "cameras": cams,
        "frames_noisified": total,
        "keys": [f"{feat}_{suffix}" for feat in feats],
        "noiser": label,
        "noisers": {c: names[c] for c in cams},
        "warnings": [v["warning"] for v in checks.values() if v and "warning" in v],
        "out": str(root),
    }
