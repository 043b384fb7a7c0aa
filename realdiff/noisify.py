"""`realdiff noisify`: turn a simgen store's clean depth into sensor-like depth with a noise model.

For each camera, `data/<camera>_depth` (clean, uint16 mm) gives `data/<camera>_depth_<suffix>`
(same units, chunks and shards), a derived array of the store (simgen.store.Derived: its settings
and finished shards are recorded with it, so a killed run resumes). Work is split by shard: each
process (this one, and workers spawned beside it) reads one shard of clean frames, noisifies it
(in batches for RealD²iff; each frame with its own generator `default_rng([seed, crc32(camera),
frame])`) and writes the whole shard, so memory is bounded by one shard per process and any
number of workers gives the same result.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from plumbing.procs import spawn_pool
from realdiff.sensors import DEFAULT_NOISER, from_json, load_noiser, per_camera
from simgen.store import Derived, Store, StoreError, depth_from_stored, depth_to_stored, derived_complete

TOOL = "noisify"  # the name noisified arrays record their provenance under

# zarr's codec settings for one shard's read and write: chunks in batches of 64 (as simgen's
# Writer: halves per-chunk costs), compressed in this thread (every core already runs a process,
# so zarr's thread pool would only add hand-offs).
SHARD_IO = {"codec_pipeline.batch_size": 64, "threading.max_workers": 1}


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


def _run_shards(jobs: list[tuple], procs: int, record) -> None:
    """Run _noisify_shard on every job with `procs` processes, this one included: it starts on the
    first shard at once while procs - 1 spawned workers start up (importing torch takes them
    seconds), and calls record(result) for each finished shard, here, as results come."""
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, cores // procs)  # torch threads per process: no oversubscription
    queue = deque(jobs)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if procs == 1:
            while queue:
                record(_noisify_shard(*queue.popleft(), threads))
            return
        with spawn_pool(procs - 1) as pool:
            running: set = set()
            while queue or running:
                while queue and len(running) < 2 * (procs - 1):  # a shard queued behind each running one
                    running.add(pool.submit(_noisify_shard, *queue.popleft(), threads))
                if queue:
                    record(_noisify_shard(*queue.popleft(), threads))
                    finished, _ = wait(running, timeout=0)
                else:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    running.discard(f)
                    record(f.result())
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


def noisify_store(
    path: str | Path,
    noiser: str = DEFAULT_NOISER,
    cameras: list[str] | None = None,
    suffix: str = "noisy",
    seed: int = 0,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    range_scale: dict | None = None,
) -> dict:
    """Write `<camera>_depth_<suffix>` for each camera of a simgen store; returns a summary.
    `range_scale` {camera: s}: that camera gets the noiser built s times smaller (RangeScaled)."""
    store = Store(path)  # StoreError if not a simgen store of this schema
    model = load_noiser(noiser)
    cams = list(cameras or store.meta["cameras"])
    if store.n_frames == 0:
        raise StoreError(f"{path}: the store holds no frames")
    if not cams:
        raise StoreError(f"{path}: the store has no camera with depth")
    for c in cams:
        if c not in store.meta["cameras"]:
            raise StoreError(f"{path}: no camera {c!r}; it has {', '.join(store.meta['cameras'])}")
        if f"{c}_depth" not in store.keys():
            raise StoreError(f"{path}: camera {c} has no depth array {c}_depth")
    if not suffix or not suffix.replace("_", "").isalnum():
        raise ValueError(f"--out-key {suffix!r}: use letters, digits and _")
    models = per_camera(model, cams, range_scale)
    for c in cams:
        _check_clean(store.array(f"{c}_depth"), f"{c}_depth")
    base_config = {**model.describe(), "seed": seed}
    n = store.n_frames
    with Derived(path, TOOL) as derived:
        jobs = []
        for c in cams:
            src_key, dst_key = f"{c}_depth", f"{c}_depth_{suffix}"
            config = dict(base_config)
            if models[c] is not model:
                config["range_scale"] = models[c].scale
            K = store.meta["cameras"][c]["K"]
            for start, end in derived.prepare(dst_key, src_key, config, overwrite):
                jobs.append((str(store.path), src_key, dst_key, c, start, end, models[c].to_json(), K, seed))
        total = sum(j[5] - j[4] for j in jobs)
        bar = tqdm(total=total, unit="frame", desc=f"noisify {model.name}", disable=not progress)

        def record(result) -> None:  # a shard is written
            dst_key, start, end = result
            derived.done(dst_key, start, end)
            bar.update(end - start)

        _run_shards(jobs, min(workers or os.cpu_count() or 1, max(1, len(jobs))), record)
        bar.close()
    return {
        "frames": n,
        "cameras": cams,
        "frames_noisified": total,
        "keys": [f"{c}_depth_{suffix}" for c in cams],
        "noiser": model.name,
    }


def is_noisified(path: str | Path, key: str) -> bool:
    """Whether data/<key> of a simgen store was written in full by noisify, for every frame."""
    return derived_complete(path, key, TOOL)
