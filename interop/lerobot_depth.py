"""Depth in LeRobot v3 datasets: finding it, reading it, adding noisy depth beside it (for
`realdiff noisify`; docs/formats/lerobot.md).

Depth is a numeric feature (dtype float32, shape (H, W, 1) or (H, W), metres, 0 = no reading) named
`observation.depth.<camera>`, or any numeric feature with "depth" in its name whose `info` says
`unit: "m"`, stored in the parquet data files. Depth stored as a video or an image feature is
refused: those encodings are lossy or 8-bit, not metric.

Noisy depth becomes a feature `<feature>_<suffix>` of the same dtype and shape: a column added to
every data file (each rewritten to a temporary file and renamed), then its entry in meta/info.json
(with its provenance under `info.noisify`) and its statistics in meta/stats.json, both written
last, each by a rename.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class LeRobotError(ValueError):
    """A folder that is not a LeRobot v3 dataset, or depth this reader cannot use."""


def is_lerobot(path: str | Path) -> bool:
    info = Path(path) / "meta" / "info.json"
    if not info.is_file():
        return False
    try:
        return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v3")
    except ValueError:
        return False


def read_info(root: Path) -> dict:
    return json.loads((root / "meta" / "info.json").read_text())


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=4))
    os.replace(tmp, path)


def depth_features(info: dict) -> dict[str, str]:
    """{feature: camera} of the clean depth features (noisified ones, with info.noisify, excluded).
    LeRobotError for depth stored as video or image."""
    out = {}
    for name, f in info["features"].items():
        meta = f.get("info") or {}
        if "depth" not in name or "noisify" in meta:
            continue
        if f["dtype"] in ("video", "image"):
            raise LeRobotError(f"{name}: depth stored as {f['dtype']} (lossy or 8-bit), not metres")
        if name.startswith("observation.depth.") or meta.get("unit") == "m":
            if f["dtype"] not in ("float32", "float64") or len(f["shape"]) not in (2, 3):
                raise LeRobotError(
                    f"{name}: depth of dtype {f['dtype']} shape {f['shape']}; expected float (H, W[, 1])"
                )
            out[name] = meta.get("camera") or name.rsplit(".", 1)[-1]
    return out


def data_files(root: Path) -> list[Path]:
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise LeRobotError(f"{root}: no data/chunk-*/file-*.parquet")
    return files


@dataclass(frozen=True)
class DepthRows:
    """Rows of one depth feature in one data file: what a noisify job reads."""

    feature: str
    camera: str
    file: str
    rows: int


def read_rows(span: DepthRows, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [start, end) of a feature: depth (n, H, W) float32 metres and the frames' global
    `index` (the noise seed)."""
    import pyarrow.parquet as pq

    t = pq.read_table(span.file, columns=[span.feature, "index"]).slice(start, end - start)
    depth = _leaves(t.column(span.feature)).astype(np.float32, copy=False)
    h = len(t.column(span.feature).chunk(0)[0]) if len(t) else 0
    depth = depth.reshape(len(t), h, -1) if len(t) else depth.reshape(0, 0, 0)
    if not np.all(np.isfinite(depth)):
        raise LeRobotError(f"{span.file}: {span.feature} holds NaN or infinite depth")
    if np.any(depth < 0):
        raise LeRobotError(f"{span.file}: {span.feature} holds negative depth")
    return depth, np.asarray(t.column("index").to_numpy(), np.int64)


def _leaves(column) -> np.ndarray:
    """The leaf values of a nested-list (possibly extension-typed) column, row-major."""
    import pyarrow as pa

    arr = column.combine_chunks()
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    while (
        pa.types.is_list(arr.type)
        or pa.types.is_large_list(arr.type)
        or pa.types.is_fixed_size_list(arr.type)
    ):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False)


def _like(column, values: np.ndarray):
    """A column of the same (nested list, possibly extension) type as `column` holding `values`
    (same row count and shape), built from column's offsets: no per-value Python objects."""
    import pyarrow as pa

    out = []
    flat = values.reshape(-1)
    at = 0
    for chunk in column.chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        levels, arr = [], storage
        while (
            pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)
            or pa.types.is_fixed_size_list(arr.type)
        ):
            levels.append(arr)
            arr = arr.flatten()
        n = len(arr)
        new = pa.array(flat[at : at + n], type=arr.type)
        at += n
        for level in reversed(levels):
            if pa.types.is_fixed_size_list(level.type):
                new = pa.FixedSizeListArray.from_arrays(new, level.type.list_size)
            else:
                offsets = level.offsets
                new = type(level).from_arrays(pa.compute.subtract(offsets, offsets[0]), new)
        if isinstance(chunk, pa.ExtensionArray):
            new = pa.ExtensionArray.from_storage(chunk.type, new.cast(storage.type))
        out.append(new.cast(chunk.type) if not isinstance(chunk, pa.ExtensionArray) else new)
    return pa.chunked_array(out, type=column.type)


def add_columns(file: Path, columns: dict[str, tuple[str, np.ndarray]]) -> None:
    """Add (or replace) columns {new_name: (like_feature, values)} in one data file, by a rename."""
    import pyarrow.parquet as pq

    table = pq.read_table(file)
    for name, (like, values) in columns.items():
        col = _like(table.column(like), values)
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(table.schema.field(like).with_name(name), col)
    tmp = file.with_name(file.name + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, file)


class Stats:
    """Running statistics of a depth feature, with the keys LeRobot gave the clean one: exact
    min, max, mean, std and count (frames), quantiles from an even subsample of the values."""

    SAMPLE = 1_000_000

    def __init__(self, like: dict):
        self.like, self.frames, self.n = like, 0, 0
        self.lo, self.hi, self.sum, self.sumsq = np.inf, -np.inf, 0.0, 0.0
        self.sample: list[np.ndarray] = []

    def add(self, values: np.ndarray) -> None:
        v = values.reshape(-1).astype(np.float64)
        self.frames += len(values)
        self.n += v.size
        self.lo, self.hi = min(self.lo, v.min()), max(self.hi, v.max())
        self.sum, self.sumsq = self.sum + v.sum(), self.sumsq + (v * v).sum()
        self.sample.append(v[:: max(1, v.size * 64 // self.SAMPLE)])

    def result(self) -> dict:
        mean = self.sum / self.n
        out = {
            "min": [float(self.lo)],
            "max": [float(self.hi)],
            "mean": [float(mean)],
            "std": [float(np.sqrt(max(self.sumsq / self.n - mean * mean, 0.0)))],
            "count": [self.frames],
        }
        sample = np.concatenate(self.sample)
        for k in self.like:
            if k.startswith("q") and k[1:].isdigit():
                out[k] = [float(np.quantile(sample, int(k[1:]) / 100))]
        return out


def add_features(root: Path, new: dict[str, tuple[str, dict, Stats]]) -> None:
    """meta/info.json and meta/stats.json gain features {name: (like_feature, provenance, stats)}:
    the clean feature's entry with `info.source` and `info.noisify` set, and its statistics."""
    info = read_info(root)
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    for name, (like, prov, st) in new.items():
        feat = json.loads(json.dumps(info["features"][like]))
        feat["info"] = {**(feat.get("info") or {}), "source": like, "noisify": prov}
        info["features"][name] = feat
        stats[name] = st.result()
    if stats_path.is_file():
        _write_json(stats_path, stats)
    _write_json(root / "meta" / "info.json", info)


def clean_stats(root: Path, feature: str) -> dict:
    stats_path = root / "meta" / "stats.json"
    return json.loads(stats_path.read_text()).get(feature, {}) if stats_path.is_file() else {}
