"""`realdiff noisify` on datasets of other frameworks: robomimic / MimicGen HDF5 (interop.robomimic)
LeRobot v3 (interop.lerobot_depth) and 3D Diffusion Policy's zarr (interop.dp3).

The guarantees of noisifying a simgen store hold here too:

- Work is cut into pieces of up to PIECE frames of one camera; each piece is noisified by any
  process (or Ray task) with one generator per frame, `default_rng([seed, crc32(camera), frame])`,
  `frame` counted over the demos' obs in demo order (so a dataset exported from a simgen store gets
  the same noise as the store), so the result does not depend on workers.
- Each finished piece is saved (uint16 millimetres) in a sidecar folder beside the dataset,
  `DATASET.noisify-<suffix>/`, with the run's settings: a killed run resumes, a run with other
  settings is refused (or, with --overwrite, starts afresh).
- The dataset file is written once, at the end, through interop.hdf5.atomic_update (a copy renamed
  over it): a kill never leaves it half-written, and a bad input leaves it untouched.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import h5py
import numpy as np
import zarr
from tqdm import tqdm

from interop import lerobot_depth as lr
from interop import robomimic as rm
from interop.hdf5 import Sidecar, atomic_update
from realdiff.noisify import TOOL, _model, _warn_stderr, run_noisify_jobs
from realdiff.sensors import DEFAULT_NOISER, load_noiser, noisers_per_camera, per_camera, sensor_info
from simgen.store import depth_from_stored, depth_to_stored

PIECE = 32  # frames one job noisifies
RANGE_SAMPLE_FRAMES = 64


def _piece_name(span: rm.DepthSpan, start: int) -> str:
    return f"{span.path.replace('#', '-')}.{start}"


def _noisify_piece(
    path: str,
    span: rm.DepthSpan,
    start: int,
    end: int,
    convention: str,
    model_json: str,
    K: list,
    seed: int,
    sidecar: str,
    threads: int = 1,
) -> int:
    """Worker: noisify frames [start, end) of a span and save them (uint16 mm) in the sidecar."""
    model = _model(model_json, threads)
    with h5py.File(path, "r") as f:
        clean = rm.span_read(f, span, start, end, convention)
    cam = zlib.crc32(span.camera.encode())
    extra = [span.stream] if span.stream else []
    rngs = [np.random.default_rng([seed, cam, span.first + start + i, *extra]) for i in range(len(clean))]
    out = model.noisify_frames(clean, np.asarray(K, float), rngs)
    Sidecar(sidecar).save(_piece_name(span, start), depth_to_stored(out))
    return end - start


def _read_intrinsics(intrinsics, cams: list[str]) -> dict:
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


def _range_warning(frames: np.ndarray, camera, noiser, model, base) -> dict | None:
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


def _models(noiser, cams: list[str], range_scale, seed: int) -> tuple[dict, dict]:
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


def _resume(folder: Path, run: dict, overwrite: bool) -> Sidecar:
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
    plus `intrinsics` (K files, see _read_intrinsics; default: the file's own) and
    `depth_convention` (interop.robomimic.CONVENTIONS)."""
    path = Path(path)
    if not rm.is_robomimic(path):
        raise rm.DatasetError(f"{path}: not a robomimic HDF5 dataset (no data/demo_<i> groups)")
    if not suffix or not suffix.replace("_", "").isalnum():
        raise ValueError(f"--out-key {suffix!r}: use letters, digits and _")
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
        given_K = _read_intrinsics(intrinsics, cams)
        names, models = _models(noiser, cams, range_scale, seed)
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
            checks[c] = _range_warning(_sample_spans(f, spans, conv), c, names[c], model, base)
    stat = path.stat()
    run = {"file": [stat.st_size, stat.st_mtime_ns], "suffix": suffix, "cameras": settings}
    side = _resume(Path(f"{path}.{TOOL}-{suffix}"), run, overwrite)
    warnings = [checks[c]["warning"] for c in cams if checks[c] and "warning" in checks[c]]
    for message in warnings:
        warn(message)

    jobs = []
    for c in cams:
        spans, _, conv, K, model = plans[c]
        fixed = (conv, model.to_json(), K.tolist(), seed, str(side.folder))
        for s in spans:
            for start in range(0, s.frames, PIECE):
                if not side.has(_piece_name(s, start)):
                    jobs.append((str(path), s, start, min(start + PIECE, s.frames), *fixed))
    total = sum(j[3] - j[2] for j in jobs)
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
    if not suffix or not suffix.replace("_", "").isalnum():
        raise ValueError(f"--out-key {suffix!r}: use letters, digits and _")
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
    given_K = _read_intrinsics(intrinsics, cams)
    names, models = _models(noiser, cams, range_scale, seed)
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
    side = _resume(
        Path(f"{root}.{TOOL}-{suffix}"), {"files": stamp, "suffix": suffix, "features": settings}, overwrite
    )
    spans = {feat: [lr.DepthRows(feat, c, str(f), rows[f]) for f in files] for feat, c in feats.items()}
    checks = {}
    for feat, c in feats.items():
        first = spans[feat][0]
        sample = lr.read_rows(first, 0, min(first.rows, RANGE_SAMPLE_FRAMES))[0]
        checks[feat] = _range_warning(sample, c, names[c], models[c][0], models[c][1])
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


def is_dp3(path: Path) -> bool:
    """A zarr group with data/depth and meta/episode_ends (3D Diffusion Policy's replay buffer)."""
    try:
        root = zarr.open_group(str(path), mode="r")
        return "depth" in root["data"] and "episode_ends" in root["meta"]
    except Exception:
        return False


def _noisify_dp3_piece(
    path: str, start: int, end: int, camera: str, model_json: str, K: list, seed: int, sidecar: str, threads=1
) -> int:
    """Worker: noisify frames [start, end) of a DP3 zarr's data/depth into the sidecar."""
    model = _model(model_json, threads)
    clean = np.asarray(zarr.open_group(path, mode="r")["data/depth"][start:end], np.float32)
    if not np.all(np.isfinite(clean)) or np.any(clean < 0):
        raise ValueError(
            f"{path}: data/depth holds NaN, infinite or negative depth (frames {start}..{end - 1})"
        )
    cam = zlib.crc32(camera.encode())
    rngs = [np.random.default_rng([seed, cam, start + i]) for i in range(len(clean))]
    Sidecar(sidecar).save(
        f"depth.{start}", depth_to_stored(model.noisify_frames(clean, np.asarray(K, float), rngs))
    )
    return end - start


def noisify_dp3(
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
    """Write data/depth_<suffix> in a DP3 zarr (one camera: its name from data/depth's attrs, else
    "depth"), frames seeded by their index as in a simgen store; and data/point_cloud_<suffix> from it
    when the zarr says how its point clouds were made (`simgen export --format dp3`: K, extrinsics,
    workspace), with the same sampling."""
    from interop import dp3

    root = Path(path)
    if not suffix or not suffix.replace("_", "").isalnum():
        raise ValueError(f"--out-key {suffix!r}: use letters, digits and _")
    g = zarr.open_group(str(root), mode="r")
    depth = g["data/depth"]
    if depth.ndim != 3:
        raise ValueError(f"{root}: data/depth has shape {depth.shape}; expected (N, H, W) metres")
    cam = str(depth.attrs.get("camera", "depth"))
    if cameras and list(cameras) != [cam]:
        raise ValueError(f"{root}: a DP3 zarr holds one camera, {cam!r}")
    for key in (f"depth_{suffix}", f"point_cloud_{suffix}"):
        if key in g["data"] and not overwrite:
            raise ValueError(f"data/{key} exists; --overwrite replaces it")
    K = _read_intrinsics(intrinsics, [cam]).get(cam)
    if K is None and "K" in depth.attrs:
        K = np.asarray(depth.attrs["K"], float)
    if K is None:
        raise ValueError(f"{root}: no intrinsics in data/depth's attrs; pass --intrinsics K.txt")
    names, models = _models(noiser, [cam], range_scale, seed)
    model, base, config = models[cam]
    n = depth.shape[0]
    sample = np.asarray(depth[:: max(1, n // RANGE_SAMPLE_FRAMES)], np.float32)
    check = _range_warning(sample, cam, names[cam], model, base)
    if check and "warning" in check:
        warn(check["warning"])
    settings = {"config": config, "K": np.round(K, 9).tolist(), "camera": cam}
    stamp = [n, str(g["meta/episode_ends"][:].tolist())]
    side = _resume(
        Path(f"{root}.{TOOL}-{suffix}"), {"zarr": stamp, "suffix": suffix, "depth": settings}, overwrite
    )
    step = depth.chunks[0]
    fixed = (cam, model.to_json(), K.tolist(), seed, str(side.folder))
    jobs = [(str(root), s, min(s + step, n), *fixed) for s in range(0, n, step) if not side.has(f"depth.{s}")]
    bar = tqdm(
        total=sum(j[2] - j[1] for j in jobs), unit="frame", desc=f"noisify {names[cam]}", disable=not progress
    )
    run_noisify_jobs(_noisify_dp3_piece, jobs, bar.update, backend, workers, address)
    bar.close()
    w = zarr.open_group(str(root), mode="r+")
    data = w["data"]
    attrs = {**dict(depth.attrs), "source": "depth", "noisify": {**settings, "range_check": check}}
    out = data.create_array(
        f"depth_{suffix}",
        shape=depth.shape,
        chunks=depth.chunks,
        dtype=np.float32,
        compressors=depth.compressors,
        fill_value=0,
        overwrite=True,
        attributes={**attrs, "complete": False},
    )
    pc_meta = dict(w.attrs.get("simgen", {})).get("point_cloud")
    clouds = None
    if pc_meta and "extrinsics" in data and "point_cloud" in data:
        src_pc = data["point_cloud"]
        clouds = data.create_array(
            f"point_cloud_{suffix}",
            shape=src_pc.shape,
            chunks=src_pc.chunks,
            dtype=np.float32,
            compressors=src_pc.compressors,
            fill_value=0,
            overwrite=True,
            attributes={**dict(src_pc.attrs), "source": f"depth_{suffix}", "complete": False},
        )
        ws = pc_meta["workspace"]
        box = np.array([np.inf * (-1) ** (i + 1) if b is None else b for i, b in enumerate(ws["box"])])
        ends = np.asarray(w["meta/episode_ends"][:])
        floors = ws["table_top_per_episode"]
    for s in tqdm(range(0, n, step), desc="write", unit="piece", disable=not progress):
        noisy = depth_from_stored(side.load(f"depth.{s}"))
        out[s : s + len(noisy)] = noisy
        if clouds is not None:
            rgb = data["img"][s : s + len(noisy)] if "img" in data and clouds.shape[2] == 6 else None
            ext = np.asarray(data["extrinsics"][s : s + len(noisy)], np.float64)
            pcs = []
            for i in range(len(noisy)):
                e = int(np.searchsorted(ends, s + i, side="right"))
                b = box.copy()
                if floors[e] is not None:
                    b[4] = max(b[4], floors[e] + ws["above_table_m"])
                pcs.append(
                    dp3.sample_cloud(
                        noisy[i],
                        K,
                        ext[i],
                        None if rgb is None else rgb[i],
                        b,
                        clouds.shape[1],
                        pc_meta["sampling"],
                        np.random.default_rng([dp3.SAMPLING_SEED, s + i]),
                    )
                )
            clouds[s : s + len(noisy)] = np.stack(pcs)
    out.attrs["complete"] = True
    if clouds is not None:
        clouds.attrs["complete"] = True
    side.remove()
    keys = [f"depth_{suffix}"] + ([f"point_cloud_{suffix}"] if clouds is not None else [])
    return {
        "frames": n,
        "cameras": [cam],
        "frames_noisified": bar.total,
        "keys": keys,
        "noiser": names[cam],
        "noisers": {cam: names[cam]},
        "warnings": [check["warning"]] if check and "warning" in check else [],
        "out": str(root),
    }


def noisify_path(path: str | Path, intrinsics=None, depth_convention="auto", out=None, **kw) -> dict:
    """`realdiff noisify PATH`: a simgen store (realdiff.noisify.noisify_store) or a robomimic HDF5
    dataset (noisify_hdf5), told apart by what the path holds."""
    from realdiff.noisify import noisify_store
    from simgen.store import is_store

    p = Path(path)
    if is_store(p):
        given = [f for f, v in (("--intrinsics", intrinsics), ("--out", out)) if v is not None]
        if depth_convention != "auto":
            given.append("--depth-convention")
        if given:
            raise ValueError(f"{', '.join(given)}: for other datasets; a simgen store records its own")
        return noisify_store(p, **kw)
    if p.is_file() and h5py.is_hdf5(p):
        return noisify_hdf5(p, intrinsics=intrinsics, depth_convention=depth_convention, out=out, **kw)
    if is_dp3(p) and not is_store(p):
        if out is not None or depth_convention != "auto":
            raise ValueError("--out, --depth-convention: for HDF5 datasets; a DP3 zarr gains arrays")
        return noisify_dp3(p, intrinsics=intrinsics, **kw)
    if lr.is_lerobot(p):
        if out is not None or depth_convention != "auto":
            raise ValueError("--out, --depth-convention: for HDF5 datasets; a LeRobot dataset gains features")
        return noisify_lerobot(p, intrinsics=intrinsics, **kw)
    if not p.exists():
        raise ValueError(f"{p}: no such dataset")
    raise ValueError(f"{p}: not a simgen store, a robomimic HDF5 dataset, a LeRobot v3 dataset or a DP3 zarr")
