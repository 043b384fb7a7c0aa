"""`realdiff noisify`: turn a simgen store's clean depth into sensor-like depth with a noise model.

For each camera, `data/<camera>_depth` (clean, uint16 mm) gives `data/<camera>_depth_<suffix>`
(same units, chunks and shards; attribute `derived` so simgen's own bookkeeping ignores it).
Work is split by shard: each process (this one, and workers spawned beside it) reads one shard of
clean frames, noisifies it (in batches for RealD²iff; each frame with its own generator
`default_rng([seed, crc32(camera), frame])`) and writes the whole shard, so memory is bounded by one
shard per process, any number of workers gives the same result, and a killed run resumes:
finished shards are recorded in the array's attributes (by this process, after each shard is
written) and skipped next time.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import zlib
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from realdiff.noise_models import from_json, load_noiser, per_camera
from simgen.store import (DEPTH_CODEC, DEPTH_UNIT_M, Store, StoreError, depth_from_stored,
                          depth_to_stored, lock_store, shard_frames)
from simgen.runner import exit_when_orphaned


def _shard_ranges(n: int, per_shard: int) -> list[tuple[int, int]]:
    return [(s, min(s + per_shard, n)) for s in range(0, n, per_shard)]


# zarr's codec settings for one shard's read and write: chunks in batches of 64 (as simgen's
# Writer: halves per-chunk costs), compressed in this thread (every core already runs a process;
# zarr's thread pool would only add hand-offs: read + write 0.66 -> 0.50 ms a 128x128 frame).
SHARD_IO = {"codec_pipeline.batch_size": 64, "threading.max_workers": 1}


@functools.lru_cache(maxsize=2)
def _model(model_json: str, threads: int):
    """The worker's model, loaded once per process; torch (RealD²iff) gets `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    return from_json(model_json)


def _noisify_shard(path: str, src_key: str, dst_key: str, camera: str, start: int, end: int,
                   model_json: str, K: list, seed: int, threads: int = 1) -> tuple[str, int, int]:
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
        with ProcessPoolExecutor(max_workers=procs - 1, mp_context=mp.get_context("spawn"),  # not fork: zarr's event-loop thread
                                 initializer=exit_when_orphaned, initargs=(os.getpid(),)) as pool:
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
    for start, end in _shard_ranges(a.shape[0], 64):
        v = a[start:end]
        if not np.all(np.isfinite(v)):
            raise StoreError(f"{key} holds NaN or infinite depth (frames {start}..{end - 1})")
        if np.any(v < 0):
            raise StoreError(f"{key} holds negative depth (frames {start}..{end - 1})")


DEFAULT_NOISER = "reald2iff-texture-shift"  # RealD²iff with every stage: diffusion, sensor texture and
# twin registration (realdiff/reald2iff.py, sections 2-6); `--noiser reald2iff` for the diffusion stages alone


def noisify_store(path: str | Path, noiser: str = DEFAULT_NOISER, cameras: list[str] | None = None,
                  suffix: str = "noisy", seed: int = 0, overwrite: bool = False,
                  workers: int | None = None, progress: bool = True,
                  range_scale: dict | None = None) -> dict:
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
    lock = lock_store(store.path)
    try:
        data = zarr.open_group(store.path, mode="r+")["data"]
        jobs = []
        for c in cams:
            src_key, dst_key = f"{c}_depth", f"{c}_depth_{suffix}"
            src = data[src_key]
            per_shard = src.shards[0] if src.shards else shard_frames(int(np.prod(src.shape[1:])) * 2)
            config = dict(base_config)
            if models[c] is not model:
                config["range_scale"] = models[c].scale
            dst = _prepare_output(data, src_key, dst_key, src, n, per_shard, config, overwrite)
            done = {tuple(r) for r in dst.attrs["noisify"]["done"]}
            K = store.meta["cameras"][c]["K"]
            for start, end in _shard_ranges(n, per_shard):
                if (start, end) not in done:
                    jobs.append((str(store.path), src_key, dst_key, c, start, end, models[c].to_json(), K, seed))
        total = sum(j[5] - j[4] for j in jobs)
        bar = tqdm(total=total, unit="frame", desc=f"noisify {model.name}", disable=not progress)

        def record(result) -> None:  # a shard is written: say so in its array's attributes
            dst_key, start, end = result
            dst = data[dst_key]
            meta = dict(dst.attrs["noisify"])
            meta["done"] = sorted(meta["done"] + [[start, end]])
            meta["complete"] = sum(e - s for s, e in meta["done"]) == n
            dst.attrs["noisify"] = meta
            bar.update(end - start)

        _run_shards(jobs, min(workers or os.cpu_count() or 1, max(1, len(jobs))), record)
        bar.close()
    finally:
        os.close(lock)
    return {"frames": n, "cameras": cams, "frames_noisified": total,
            "keys": [f"{c}_depth_{suffix}" for c in cams], "noiser": model.name}


def is_noisified(path: str | Path, key: str) -> bool:
    """Whether data/<key> of a simgen store was written in full by noisify, for every frame."""
    try:
        store = Store(path)
        a = store.array(key)
    except (StoreError, KeyError):
        return False
    return bool(a.attrs.get("noisify", {}).get("complete")) and a.shape[0] == store.n_frames


def _prepare_output(data: zarr.Group, src_key: str, dst_key: str, src: zarr.Array, n: int,
                    per_shard: int, config: dict, overwrite: bool) -> zarr.Array:
    """Create the output array, or reopen one to resume (same settings, unfinished)."""
    if dst_key in data:
        dst = data[dst_key]
        meta = dst.attrs.get("noisify", {})
        same = meta.get("config") == config
        if not overwrite:
            if not same:
                raise StoreError(f"{dst_key} exists, made with other settings; --overwrite replaces it")
            if meta.get("complete") and dst.shape[0] == n:
                raise StoreError(f"{dst_key} exists and is complete; --overwrite redoes it")
            if dst.shape[0] != n:  # the store grew: the last shard must be redone
                dst.resize((n, *dst.shape[1:]))
                meta = dict(meta)
                meta["done"] = [d for d in meta["done"] if d[1] % per_shard == 0 and d[1] <= n]
                meta["complete"] = False
                dst.attrs["noisify"] = meta
            return dst
        del data[dst_key]
    return data.create_array(
        dst_key, shape=(n, *src.shape[1:]), chunks=(1, *src.shape[1:]),
        shards=(per_shard, *src.shape[1:]), dtype=np.uint16, compressors=DEPTH_CODEC, fill_value=0,
        attributes={"derived": True, "source": src_key, "unit": "mm", "scale_to_m": DEPTH_UNIT_M,
                    "no_reading": 0, "noisify": {"config": config, "done": [], "complete": False}})
