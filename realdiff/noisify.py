"""`realdiff noisify`: turn a simgen store's clean depth into sensor-like depth with a noise model.

For each camera, `data/<camera>_depth` (clean, uint16 mm) gives `data/<camera>_depth_<suffix>`
(same units, chunks and shards), a derived array of the store (simgen.store.Derived: its settings
and finished shards are recorded with it, so a killed run resumes). Work is split by shard: each
process (this one, and workers spawned beside it) reads one shard of clean frames, noisifies it
(in batches for RealD²iff; each frame with its own generator `default_rng([seed, crc32(camera),
frame])`) and writes the whole shard, so memory is bounded by one shard per process and any
number of workers gives the same result.

Each camera may have its own noiser (`--noiser front=reald2iff-texture-shift,wrist=structured-light`);
the frames' generators do not depend on it. Before writing, each camera's clean depth (a sample of
up to 64 frames spread over the store) is checked against the working range of the sensor its
noiser imitates (realdiff.sensors.sensor_file, scaled by --range-scale): when most readings lie
outside it, one warning line goes to stderr and into the output array's provenance; the run goes on.
"""

from __future__ import annotations

import functools
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from plumbing.backends import check_backend, run_jobs
from realdiff.sensors import (
    DEFAULT_NOISER,
    from_json,
    load_noiser,
    noisers_per_camera,
    per_camera,
    sensor_info,
)
from simgen.store import Derived, Store, StoreError, depth_from_stored, depth_to_stored, derived_complete

TOOL = "noisify"  # the name noisified arrays record their provenance under

# zarr's codec settings for one shard's read and write: chunks in batches of 64 (as simgen's
# Writer: halves per-chunk costs), compressed in this thread (every core already runs a process,
# so zarr's thread pool would only add hand-offs).
SHARD_IO = {"codec_pipeline.batch_size": 64, "threading.max_workers": 1}
RANGE_SAMPLE_FRAMES = 64  # frames, spread over a camera's array, whose readings the range check counts
RANGE_WARN_FRACTION = 0.5  # warn when more of a camera's readings than this lie outside the range


@functools.lru_cache(maxsize=2)
def _model(model_json: str, threads: int):
    """The worker's model, loaded once per process; torch (RealD²iff) gets `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    return from_json(model_json)


def _noisify_shard(
    path: str,
    src_key: str,
    dst_key: str,
    camera: str,
    start: int,
    end: int,
    model_json: str,
    K: list,
    seed: int,
    threads: int = 1,
) -> tuple[str, int, int]:
    """Worker: noisify frames [start, end) of one camera and write them (one whole shard)."""
    model = _model(model_json, threads)
    data = zarr.open_group(path, mode="r+")["data"]
    with zarr.config.set(SHARD_IO):
        src = data[src_key][start:end]
    clean = depth_from_stored(src) if src.dtype == np.uint16 else src.astype(np.float32)
    cam = zlib.crc32(camera.encode())
    rngs = [np.random.default_rng([seed, cam, start + i]) for i in range(len(clean))]
    out = model.noisify_frames(clean, np.asarray(K, float), rngs)
    with zarr.config.set(SHARD_IO):
        data[dst_key][start:end] = depth_to_stored(out)
    return dst_key, start, end


def run_noisify_jobs(
    fn, jobs: list[tuple], record, backend: str = "local", workers: int | None = None, address=None
) -> None:
    """fn(*job, threads) for every job on the backend (plumbing.backends.run_jobs), torch getting
    `threads` threads in each process so that processes times threads is the cores (one on Ray,
    whose tasks each hold one CPU); this process's own setting is restored afterwards."""
    import torch

    procs = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    threads = 1 if backend == "ray" else max(1, (os.cpu_count() or 1) // procs)
    saved = torch.get_num_threads()
    try:
        run_jobs(fn, [(*j, threads) for j in jobs], record, backend, procs, address)
    finally:
        torch.set_num_threads(saved)


def _check_clean(a: zarr.Array, key: str) -> None:
    """Float depth (not this schema's uint16) must be finite and non-negative: checked in full
    before anything is written."""
    if a.dtype == np.uint16:
        return
    for start in range(0, a.shape[0], 64):
        end = min(start + 64, a.shape[0])
        v = a[start:end]
        if not np.all(np.isfinite(v)):
            raise StoreError(f"{key} holds NaN or infinite depth (frames {start}..{end - 1})")
        if np.any(v < 0):
            raise StoreError(f"{key} holds negative depth (frames {start}..{end - 1})")


def sample_frames(a: zarr.Array, n: int, frames: int = RANGE_SAMPLE_FRAMES) -> np.ndarray:
    """Up to `frames` frames of the first n of a depth array, evenly spread, in metres."""
    idx = np.unique(np.linspace(0, n - 1, min(frames, n)).round().astype(int))
    with zarr.config.set(SHARD_IO):  # frame by frame: an orthogonal selection decodes far more
        v = np.stack([a[int(i)] for i in idx])
    return depth_from_stored(v) if v.dtype == np.uint16 else v.astype(np.float32)


def range_report(depth: np.ndarray, camera: str, noiser: str, scale: float = 1.0) -> dict | None:
    """How much of a camera's clean depth (sampled frames, metres) lies outside the working range of
    the sensor `noiser` imitates (built `scale` times smaller): {"sensor", "range_m", "outside",
    "frames_sampled"} and, when that is most of it (> RANGE_WARN_FRACTION), "warning", a one-line
    message. None when the noiser has no working range (identity, a model file without a sensor
    file) or there is no reading."""
    info = sensor_info(noiser)
    if info is None or info.range_m is None:
        return None
    outside = info.fraction_outside(depth, scale)
    if outside is None:
        return None
    lo, hi = info.range_m
    out = {
        "sensor": info.sensor,
        "range_m": [round(lo * scale, 6), round(hi * scale, 6)],
        "outside": round(outside, 4),
        "frames_sampled": len(depth),
    }
    if outside > RANGE_WARN_FRACTION:
        where = f" at --range-scale {camera}={scale:g}" if scale != 1 else ""
        built = f", built {1 / scale:.3g} times smaller" if scale != 1 else ""
        out["warning"] = (
            f"{camera}: {outside:.0%} of depth readings lie outside {noiser}'s working range "
            f"{info.range_text(scale)}{where} ({info.sensor}{built}); choose another --noiser or "
            f"--range-scale {camera}=S"
        )
    return out


def range_check(store: Store, camera: str, noiser: str, scale: float = 1.0) -> dict | None:
    """range_report on up to RANGE_SAMPLE_FRAMES frames spread over a store camera's depth."""
    return range_report(sample_frames(store.array(f"{camera}_depth"), store.n_frames), camera, noiser, scale)


def check_suffix(suffix: str) -> None:
    """ValueError for an output suffix (--out-key) that is not letters, digits and _."""
    if not suffix or not suffix.replace("_", "").isalnum():
        raise ValueError(f"--out-key {suffix!r}: use letters, digits and _")


def _warn_stderr(message: str) -> None:
    print(f"realdiff noisify: warning: {message}", file=sys.stderr, flush=True)


def noisify_store(
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
) -> dict:
    """Write `<camera>_depth_<suffix>` for each camera of a simgen store; returns a summary.
    `noiser`: one noiser for every camera, or per camera ('front=NAME,wrist=NAME' or a dict; see
    realdiff.sensors.noisers_per_camera). `range_scale` {camera: s}: that camera gets its noiser
    built s times smaller (RangeScaled). `warn(message)` gets each camera's out-of-range warning
    (default: one line on stderr). `backend`: "local" (processes on this machine) or "ray" (Ray
    tasks, on the cluster at `address` if given: the store must be on storage every node sees)."""
    check_backend(backend, address)
    store = Store(path)  # StoreError if not a simgen store of this schema
    cams = list(cameras or store.meta["cameras"])
    names = noisers_per_camera(noiser, cams)  # ValueError for a camera not among cams
    loaded = {n: load_noiser(n) for n in dict.fromkeys(names.values())}
    if store.n_frames == 0:
        raise StoreError(f"{path}: the store holds no frames")
    if not cams:
        raise StoreError(f"{path}: the store has no camera with depth")
    for c in cams:
        if c not in store.meta["cameras"]:
            raise StoreError(f"{path}: no camera {c!r}; it has {', '.join(store.meta['cameras'])}")
        if f"{c}_depth" not in store.keys():
            raise StoreError(f"{path}: camera {c} has no depth array {c}_depth")
    check_suffix(suffix)
    scaled = {n: per_camera(m, cams, range_scale) for n, m in loaded.items()}
    models = {c: scaled[names[c]][c] for c in cams}
    for c in cams:
        _check_clean(store.array(f"{c}_depth"), f"{c}_depth")
    scale = {c: 1.0 if models[c] is loaded[names[c]] else models[c].scale for c in cams}
    checks = {c: range_check(store, c, names[c], scale[c]) for c in cams}
    n = store.n_frames
    with Derived(path, TOOL) as derived:
        jobs = []
        for c in cams:
            src_key, dst_key = f"{c}_depth", f"{c}_depth_{suffix}"
            base = loaded[names[c]]
            config = {**base.describe(), "seed": seed}
            if models[c] is not base:
                config["range_scale"] = models[c].scale
            K = store.meta["cameras"][c]["K"]
            for start, end in derived.prepare(dst_key, src_key, config, overwrite):
                jobs.append((str(store.path), src_key, dst_key, c, start, end, models[c].to_json(), K, seed))
        for c in cams:  # every output is prepared: the run goes ahead
            derived.annotate(f"{c}_depth_{suffix}", range_check=checks[c])
        warnings = [checks[c]["warning"] for c in cams if checks[c] and "warning" in checks[c]]
        for message in warnings:
            warn(message)
        total = sum(j[5] - j[4] for j in jobs)
        single = len(loaded) == 1
        label = next(iter(loaded.values())).name if single else ",".join(f"{c}={names[c]}" for c in cams)
        bar = tqdm(total=total, unit="frame", desc=f"noisify {label}", disable=not progress)

        def record(result) -> None:  # a shard is written
            dst_key, start, end = result
            derived.done(dst_key, start, end)
            bar.update(end - start)

        run_noisify_jobs(_noisify_shard, jobs, record, backend, workers, address)
        bar.close()
    return {
        "frames": n,
        "cameras": cams,
        "frames_noisified": total,
        "keys": [f"{c}_depth_{suffix}" for c in cams],
        "noiser": label,
        "noisers": {c: loaded[names[c]].name for c in cams},
        "warnings": warnings,
    }


def is_noisified(path: str | Path, key: str) -> bool:
    """Whether data/<key> of a simgen store was written in full by noisify, for every frame."""
    return derived_complete(path, key, TOOL)
