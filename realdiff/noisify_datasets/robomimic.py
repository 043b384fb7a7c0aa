"""`realdiff noisify` on a robomimic / MimicGen HDF5 dataset (interop.robomimic; the manual is
docs/formats/robomimic.md#noisify).

Pieces of up to PIECE frames of one camera (segments of several demos packed together, so that the
model runs full batches) are noisified by any process or Ray task, frame n (counted
over every demo's obs in demo order) with `default_rng([seed, crc32(camera), n])`, as frame n of a
simgen store, and saved in the sidecar `DATASET.noisify-<suffix>/`. The file is written once, at the
end, through interop.hdf5.atomic_update (a copy renamed over it): a kill never leaves it half
written, bad input leaves it untouched."""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from interop import robomimic as rm
from interop.hdf5 import Sidecar, atomic_update
from realdiff.noisify import TOOL, _model, _warn_stderr, check_suffix, run_noisify_jobs
from realdiff.noisify_datasets.common import (
    PIECE,
    RANGE_SAMPLE_FRAMES,
    models_for,
    pack,
    range_warning,
    read_intrinsics,
    resume_sidecar,
)
from realdiff.sensors import DEFAULT_NOISER
from simgen.store import depth_from_stored, depth_to_stored


def _piece_name(span: rm.DepthSpan, start: int) -> str:
    return f"{span.path.replace('#', '-')}.{start}"


def _noisify_piece(
    path: str,
    segments: list[tuple[rm.DepthSpan, int, int]],
    convention: str,
    model_json: str,
    K: list,
    seed: int,
    sidecar: str,
    threads: int = 1,
) -> int:
    """Worker: noisify frames [start, end) of each (span, start, end) of one camera in one call
    (full batches for the model however short the demos) and save each segment (uint16 mm) in the
    sidecar."""
    model = _model(model_json, threads)
    with h5py.File(path, "r") as f:
        clean = np.concatenate([rm.span_read(f, s, a, b, convention) for s, a, b in segments])
    cam = zlib.crc32(segments[0][0].camera.encode())
    rngs = [
        np.random.default_rng([seed, cam, s.first + t, *([s.stream] if s.stream else [])])
        for s, a, b in segments
        for t in range(a, b)
    ]
    out = depth_to_stored(model.noisify_frames(clean, np.asarray(K, float), rngs))
    at = 0
    for s, a, b in segments:
        Sidecar(sidecar).save(_piece_name(s, a), out[at : at + b - a])
        at += b - a
    return at


def _sample_spans(f, spans, conv: str) -> np.ndarray:
    """Up to RANGE_SAMPLE_FRAMES obs frames spread over a camera's spans, metres."""
    obs = [s for s in spans if s.stream == 0]
    total = sum(s.frames for s in obs)
    picks = np.unique(np.linspace(0, total - 1, min(RANGE_SAMPLE_FRAMES, total)).round().astype(int))
    frames, ends = [], np.cumsum([s.frames for s in obs])
    for i in picks:
        k = int(np.searchsorted(ends, i, side="right"))
        t = int(i - (ends[k - 1] if k else 0))
        frames.append(rm.span_read(f, obs[k], t, t + 1, conv)[0])
    return np.stack(frames)


def noisify_hdf5(
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
    depth_convention: str = "auto",
    out: str | Path | None = None,
) -> dict:
    """Write `obs/<camera>_depth_<suffix>` (and next_obs) in every demo of a robomimic HDF5 dataset
    (into `out`, a new file, if given); returns a summary. Arguments as realdiff.noisify.noisify_store,
    plus `intrinsics` (K files, see read_intrinsics; default: the file's own) and
    `depth_convention` (interop.robomimic.CONVENTIONS)."""
    path = Path(path)
    if not rm.is_robomimic(path):
        raise rm.DatasetError(f"{path}: not a robomimic HDF5 dataset (no data/demo_<i> groups)")
    check_suffix(suffix)
    if out is not None and Path(out).exists() and Path(out) != path and not overwrite:
        raise ValueError(f"{out} exists; --overwrite replaces it")
    given_K = {}
    with h5py.File(path, "r") as f:
        known = rm.depth_cameras(f)
        cams = list(cameras or known)
        if not cams:
            raise rm.DatasetError(f"{path}: no obs/<camera>_depth in {rm.demos(f)[0]}")
        for c in cams:
            if c not in known:
                raise rm.DatasetError(f"{path}: no depth obs/{c}_depth; it has {', '.join(known) or 'none'}")
        given_K = read_intrinsics(intrinsics, cams)
        names, models = models_for(noiser, cams, range_scale, seed)
        plans, settings, checks = {}, {}, {}
        for c in cams:
            first = f[f"data/{rm.demos(f)[0]}/obs/{c}_depth"]
            conv = rm.convention_of(first, depth_convention)
            K = given_K.get(c)
            if K is None:
                K = rm.intrinsics(f, c, conv)
            if K is None:
                raise rm.DatasetError(f"{path}: no intrinsics for {c} in the file; pass --intrinsics K.txt")
            spans, plan = rm.noisify_spans(f, c)
            for demo in rm.demos(f):
                for group in ("obs", "next_obs"):
                    g = f[f"data/{demo}"].get(group)
                    if g is not None and f"{c}_depth_{suffix}" in g and not overwrite:
                        raise rm.DatasetError(f"{g.name}/{c}_depth_{suffix} exists; --overwrite replaces it")
            model, base, config = models[c]
            plans[c] = (spans, plan, conv, np.asarray(K, float), model)
            settings[c] = {"config": config, "convention": conv, "K": np.round(K, 9).tolist()}
            checks[c] = range_warning(_sample_spans(f, spans, conv), c, names[c], model, base)
    stat = path.stat()
    run = {"file": [stat.st_size, stat.st_mtime_ns], "suffix": suffix, "cameras": settings}
    side = resume_sidecar(Path(f"{path}.{TOOL}-{suffix}"), run, overwrite)
    warnings = [checks[c]["warning"] for c in cams if checks[c] and "warning" in checks[c]]
    for message in warnings:
        warn(message)

    jobs = []
    for c in cams:
        spans, _, conv, K, model = plans[c]
        segments = [
            (s, a, min(a + PIECE, s.frames))
            for s in spans
            for a in range(0, s.frames, PIECE)
            if not side.has(_piece_name(s, a))
        ]
        fixed = (conv, model.to_json(), K.tolist(), seed, str(side.folder))
        jobs += [(str(path), piece, *fixed) for piece in pack(segments, PIECE)]
    total = sum(b - a for j in jobs for _, a, b in j[1])
    label = ",".join(dict.fromkeys(names[c] for c in cams))
    bar = tqdm(total=total, unit="frame", desc=f"noisify {label}", disable=not progress)
    run_noisify_jobs(_noisify_piece, jobs, bar.update, backend, workers, address)
    bar.close()
    _commit(path, out, side, cams, plans, settings, checks, suffix, overwrite, progress)
    side.remove()
    frames = sum(s.frames for s in plans[cams[0]][0] if s.stream == 0)
    return {
        "frames": frames,
        "cameras": cams,
        "frames_noisified": total,
        "keys": [f"{c}_depth_{suffix}" for c in cams],
        "noiser": label,
        "noisers": {c: names[c] for c in cams},
        "warnings": warnings,
        "out": str(out or path),
    }


def _commit(path, out, side, cams, plans, settings, checks, suffix, overwrite, progress) -> None:
    """Add every camera's noisy depth to a copy of the file, renamed over it (or to `out`)."""
    n = sum(not s.path.endswith("#last") for c in cams for s in plans[c][0])
    with (
        atomic_update(path, out) as f,
        tqdm(total=n, desc="write", unit="array", disable=not progress) as bar,
    ):
        for c in cams:
            spans, plan, _, K, _ = plans[c]
            prov = {**settings[c], "range_check": checks[c]}
            attrs = {"K": K, "source": f"{c}_depth", TOOL: prov}
            by_path = {s.path: s for s in spans}
            for s in spans:
                if s.path.endswith("#last"):
                    continue  # written with its demo's obs
                bar.update()
                group = f[s.path.rsplit("/", 1)[0]]
                t, h, w = rm.frames_of(group[f"{c}_depth"])
                ds = rm.create_depth(group, f"{c}_depth_{suffix}", (t, h, w), attrs, overwrite)
                for start in range(0, t, PIECE):
                    piece = depth_from_stored(side.load(_piece_name(s, start)))
                    ds[start : start + len(piece), ..., 0] = piece
                demo = s.path.split("/")[1]
                if s.stream == 0 and plan.get(demo) == "shift":
                    nxt = f[f"data/{demo}/next_obs"]
                    dn = rm.create_depth(nxt, f"{c}_depth_{suffix}", (t, h, w), attrs, overwrite)
                    dn[: t - 1] = ds[1:]
                    last = by_path[f"data/{demo}/next_obs/{c}_depth#last"]
                    dn[t - 1, ..., 0] = depth_from_stored(side.load(_piece_name(last, 0)))[0]
