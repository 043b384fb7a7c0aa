"""The simgen Zarr store (zarr format 3): layout, creation, crash-safe appends and reading.

Layout (diffusion_policy's replay buffer, plus metadata in the root group's attributes):

    data/<key>          arrays concatenated along time (axis 0), one row per control step
    meta/episode_ends   int64, exclusive end index of each episode in data/*

Committing an episode writes every data/* array first, then the per-episode record in the root
attributes, then appends to meta/episode_ends. Each file write is atomic (zarr's LocalStore writes
a temporary file and renames it), so a killed run leaves at worst rows or records past the last
episode end: `open_store` treats those as uncommitted and `Writer` truncates them before appending.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

SCHEMA = "simgen"
SCHEMA_VERSION = 1
DEPTH_UNIT_M = 0.001  # depth is stored as uint16 millimetres; 0 = no reading
DEPTH_MAX_M = 65.534
LOWDIM_CHUNK = 4096  # rows per chunk for non-image arrays
LOCK_FILE = ".simgen.lock"
SHARD_BYTES = 8 << 20  # raw bytes of frames grouped in one shard file


def shard_frames(frame_bytes: int) -> int:
    """Frames per shard: one file holds about SHARD_BYTES of raw frames (8 to 256 frames)."""
    return int(np.clip(SHARD_BYTES // max(frame_bytes, 1), 8, 256))


# Why these compressors: depth is smooth 16-bit data, and Blosc's bit-shuffle puts the slowly
# varying high bits of neighbouring pixels together, so zstd packs it about 8x losslessly
# (128x128: 32 kB -> about 4 kB a frame). Level 1: higher levels save few bytes for much CPU, which
# rendering competes for (docs/experiments.md). Colour and label images are bytes already; plain zstd
# inside Blosc suits them. Images are chunked one frame per chunk (read one frame, decode one
# frame) and those chunks are grouped into shard files (zarr's sharding codec), so a dataset is
# hundreds of files, not millions, and writes pay per-file costs once per shard.
DEPTH_CODEC = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.bitshuffle)
BYTE_IMAGE_CODEC = BloscCodec(cname="zstd", clevel=1, shuffle=BloscShuffle.noshuffle)
LOWDIM_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.shuffle)


class StoreError(ValueError):
    """A path that is not a usable simgen store (wrong schema, version or configuration)."""


def depth_to_stored(depth_m: np.ndarray) -> np.ndarray:
    """float32 metres (0 = no reading) -> uint16 millimetres, rounded; beyond range -> 0."""
    d = np.asarray(depth_m, np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("depth must be finite and non-negative")
    mm = np.rint(d / DEPTH_UNIT_M)
    mm[(mm > DEPTH_MAX_M / DEPTH_UNIT_M)] = 0
    return mm.astype(np.uint16)


def depth_from_stored(mm: np.ndarray) -> np.ndarray:
    """uint16 millimetres -> float32 metres (0 stays 0 = no reading)."""
    return (np.asarray(mm, np.float32) * np.float32(DEPTH_UNIT_M)).astype(np.float32)


def _image_kind(key: str) -> str | None:
    for suffix in ("_depth", "_rgb", "_seg"):
        if key.endswith(suffix):
            return suffix[1:]
    return None


def is_store(path: str | Path) -> bool:
    """True if `path` holds a zarr group whose attributes name this schema."""
    p = Path(path)
    if not (p / "zarr.json").is_file():
        return False
    try:
        return "schema" in zarr.open_group(p, mode="r").attrs.get(SCHEMA, {})
    except Exception:
        return False


def check_store(path: str | Path) -> zarr.Group:
    """Open an existing store read-only, or raise StoreError saying why it is not one."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such store")
    try:
        root = zarr.open_group(p, mode="r")
    except Exception as e:
        raise StoreError(f"{p}: not a zarr store ({type(e).__name__})") from None
    meta = root.attrs.get(SCHEMA)
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise StoreError(f"{p}: a zarr store, but not a simgen store")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(
            f"{p}: simgen schema version {meta.get('schema_version')}, "
            f"this simgen reads version {SCHEMA_VERSION}"
        )
    return root


def is_derived(a: zarr.Array) -> bool:
    """Arrays computed from others after rendering (e.g. noisified depth) carry attrs['derived']."""
    return bool(a.attrs.get("derived"))


def source_arrays(root: zarr.Group) -> dict[str, zarr.Array]:
    """The data arrays `simgen render` writes (derived arrays excluded)."""
    return {k: a for k, a in root["data"].arrays() if not is_derived(a)}


def committed_episode_ends(root: zarr.Group) -> np.ndarray:
    """The episode ends a reader may trust: the strictly increasing prefix of meta/episode_ends
    that every data array covers (an end appended by a run killed mid-write is dropped)."""
    ends = np.asarray(root["meta/episode_ends"][:], np.int64)
    rows = min((a.shape[0] for a in source_arrays(root).values()), default=0)
    n, last = 0, 0
    for e in ends:
        if e <= last or e > rows:
            break
        n, last = n + 1, int(e)
    return ends[:n]


class Store:
    """Read access to a simgen store: episodes, arrays and metadata (depth in metres)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root = check_store(self.path)
        self.meta: dict = dict(self.root.attrs[SCHEMA])
        self.episode_ends = committed_episode_ends(self.root)
        self.episodes: list[dict] = self.meta.get("episodes", [])[: len(self.episode_ends)]

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    def keys(self) -> list[str]:
        return sorted(name for name, _ in self.root["data"].arrays())

    def array(self, key: str) -> zarr.Array:
        return self.root["data"][key]

    def episode_slice(self, i: int) -> slice:
        if not 0 <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range (store has {self.n_episodes})")
        start = int(self.episode_ends[i - 1]) if i > 0 else 0
        return slice(start, int(self.episode_ends[i]))

    def episode(self, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """All (or `keys`) arrays of episode i; depth converted to float32 metres."""
        sl = self.episode_slice(i)
        out = {}
        for k in keys or self.keys():
            v = self.array(k)[sl]
            out[k] = depth_from_stored(v) if v.dtype == np.uint16 and "_depth" in k else v
        return out


def _unfinished_creation(path: Path) -> bool:
    """True for an empty folder, or for what a Writer killed while creating a store leaves: the
    lock file and a zarr group without attributes holding at most empty `data` and `meta` groups
    (meta with an empty episode_ends). Such a folder holds nothing to lose and is rebuilt."""
    if not path.is_dir():
        return False
    if {c.name for c in path.iterdir()} <= {LOCK_FILE}:
        return True
    if not (path / "zarr.json").is_file():  # zarr writes a skeleton's metadata files concurrently, so
        # a kill can leave some of them without the root's
        skeleton = {LOCK_FILE, "data/zarr.json", "meta/zarr.json", "meta/episode_ends/zarr.json"}
        return {f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file()} <= skeleton
    try:
        root = zarr.open_group(path, mode="r")
        with warnings.catch_warnings():  # zarr warns that the lock file is not one of its nodes
            warnings.simplefilter("ignore")
            children = set(root.keys())
        if dict(root.attrs) or not children <= {"data", "meta"}:
            return False
        if "data" in root and list(root["data"].keys()):
            return False
        if "meta" in root:
            meta = root["meta"]
            if not set(meta.keys()) <= {"episode_ends"}:
                return False
            if "episode_ends" in meta and meta["episode_ends"].shape != (0,):
                return False
        return True
    except Exception:
        return False


def lock_store(path: Path) -> int:
    """Take the store's exclusive write lock (a file descriptor; the OS releases it when the
    process ends, however it ends). StoreError if another process holds it."""
    fd = os.open(Path(path) / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{path}: another process is writing this store") from None
    return fd


class Writer:
    """Creates or reopens a store for appending whole episodes. Holds an exclusive lock file
    (released by the OS even if the process is killed) so two runs never write one store."""

    def __init__(self, path: str | Path, attrs: dict, config: dict):
        self.path = Path(path)
        if self.path.exists() and not is_store(self.path) and not _unfinished_creation(self.path):
            check_store(self.path)  # raises the precise reason
            raise StoreError(f"{self.path}: exists and is not a simgen store")
        if self.path.exists() and is_store(self.path):
            root = check_store(self.path)
            old = root.attrs[SCHEMA].get("config")
            if old != config:
                diff = sorted(k for k in set(old or {}) | set(config) if (old or {}).get(k) != config.get(k))
                raise StoreError(
                    f"{self.path}: made with different settings ({', '.join(diff)}); "
                    "choose another --out or repeat the original command"
                )
            self._lock()
            self.root = zarr.open_group(self.path, mode="r+")
            self._truncate_uncommitted()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            for child in self.path.iterdir():  # the skeleton a run killed while creating it left
                if child.name != LOCK_FILE:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            self.root = zarr.open_group(self.path, mode="a")  # mode "w" would delete the lock file
            self.root.create_group("data")
            meta = self.root.create_group("meta")
            meta.create_array(
                "episode_ends",
                shape=(0,),
                chunks=(LOWDIM_CHUNK,),
                dtype="int64",
                compressors=LOWDIM_CODEC,
                fill_value=0,
            )
            # Written last: only now does the folder count as a store (see _unfinished_creation).
            self.root.attrs[SCHEMA] = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                **attrs,
                "config": config,
                "episodes": [],
            }
        self.meta = dict(self.root.attrs[SCHEMA])
        self.ends = self.root["meta/episode_ends"]
        self._arrays: dict[str, zarr.Array] = {}

    def _lock(self) -> None:
        self._lock_fd = lock_store(self.path)

    def _truncate_uncommitted(self) -> None:
        ends = committed_episode_ends(self.root)
        rows = int(ends[-1]) if len(ends) else 0
        for _, a in self.root["data"].arrays():  # derived arrays never outgrow their source
            if a.shape[0] > rows or (a.shape[0] != rows and not is_derived(a)):
                a.resize((rows, *a.shape[1:]))
        if self.root["meta/episode_ends"].shape[0] != len(ends):
            self.root["meta/episode_ends"].resize((len(ends),))
        meta = dict(self.root.attrs[SCHEMA])
        if len(meta["episodes"]) != len(ends):
            meta["episodes"] = meta["episodes"][: len(ends)]
            self.root.attrs[SCHEMA] = meta

    @property
    def n_episodes(self) -> int:
        return self.ends.shape[0]

    def _array_for(self, key: str, value: np.ndarray) -> zarr.Array:
        if key in self._arrays:
            return self._arrays[key]
        data = self.root["data"]
        if key in data:
            self._arrays[key] = data[key]
            return self._arrays[key]
        kind = _image_kind(key)
        shards = None
        if kind is None:
            chunks, codec = (LOWDIM_CHUNK, *value.shape[1:]), LOWDIM_CODEC
        else:
            chunks = (1, *value.shape[1:])
            codec = DEPTH_CODEC if kind == "depth" else BYTE_IMAGE_CODEC
            shards = (shard_frames(value[0].nbytes), *value.shape[1:])
        attrs = {"unit": "mm", "scale_to_m": DEPTH_UNIT_M, "no_reading": 0} if kind == "depth" else {}
        self._arrays[key] = data.create_array(
            key,
            shape=(0, *value.shape[1:]),
            chunks=chunks,
            shards=shards,
            dtype=value.dtype,
            compressors=codec,
            fill_value=0,
            attributes=attrs,
        )
        return self._arrays[key]

    def append(self, arrays: dict[str, np.ndarray], record: dict) -> None:
        """Commit one episode (see append_many)."""
        self.append_many([(arrays, record)])

    def append_many(self, episodes: list[tuple[dict[str, np.ndarray], dict]]) -> None:
        """Commit episodes together: data arrays, then their records, then their end indices
        (last). Batching pays zarr's per-call costs once for several episodes."""
        if not episodes:
            return
        keys = set(episodes[0][0])
        lengths = []
        for arrays, _ in episodes:
            n = next(iter(arrays.values())).shape[0]
            if set(arrays) != keys or any(v.shape[0] != n for v in arrays.values()):
                raise ValueError("episode arrays differ in keys or length")
            lengths.append(n)
        if self.n_episodes:
            if not self._arrays:
                self._arrays = source_arrays(self.root)
            if keys != set(self._arrays):
                raise ValueError("episode keys differ from the store's arrays")
        start = int(self.ends[-1]) if self.ends.shape[0] else 0
        total = sum(lengths)
        with zarr.config.set({"codec_pipeline.batch_size": 64}):  # halves per-chunk overhead
            for key in sorted(keys):
                value = np.concatenate([a[key] for a, _ in episodes])
                if _image_kind(key) == "depth" and value.dtype != np.uint16:
                    value = depth_to_stored(value)  # float metres; uint16 is already stored units
                a = self._array_for(key, value)
                a.resize((start + total, *a.shape[1:]))
                a[start : start + total] = value
        self.meta["episodes"] = self.meta["episodes"] + [r for _, r in episodes]
        self.root.attrs[SCHEMA] = self.meta
        e = self.ends.shape[0]
        self.ends.resize((e + len(episodes),))
        self.ends[e:] = start + np.cumsum(lengths)

    def close(self) -> None:
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- derived arrays ------------------------------------------------------------------------------


def _ranges(n: int, step: int) -> list[tuple[int, int]]:
    return [(s, min(s + step, n)) for s in range(0, n, step)]


class Derived:
    """Adds depth arrays computed from a store's own depth after rendering (noisified depth), shard
    by shard, under the store's write lock. Each derived array has its source's shape, chunks and
    shards, attribute `derived` (so the store's own bookkeeping ignores it), and under the `tool`'s
    name its provenance: the settings that made it, the shards done and whether it is complete. A
    killed run therefore resumes where it stopped, and an array made with other settings is never
    mixed into (it is refused, or replaced with `overwrite`).

        with Derived(path, "noisify") as d:
            left = d.prepare("front_depth_noisy", "front_depth", {"noiser": ...}, overwrite=False)
            for start, end in left:
                ...  # write data/front_depth_noisy[start:end] (any process)
                d.done("front_depth_noisy", start, end)
    """

    def __init__(self, path: str | Path, tool: str):
        self.store = Store(path)  # StoreError if not a simgen store of this schema
        self.tool = tool
        self._lock = lock_store(self.store.path)
        self._data = zarr.open_group(self.store.path, mode="r+")["data"]

    def prepare(
        self, key: str, source: str, settings: dict, overwrite: bool = False
    ) -> list[tuple[int, int]]:
        """Create data/<key> from data/<source>'s layout, or reopen it to resume (same settings,
        unfinished); returns the (start, end) frame ranges of the shards still to write."""
        src, n = self._data[source], self.store.n_frames
        per_shard = src.shards[0] if src.shards else shard_frames(int(np.prod(src.shape[1:])) * 2)
        if key in self._data:
            dst = self._data[key]
            meta = dst.attrs.get(self.tool, {})
            if not overwrite:
                if meta.get("config") != settings:
                    raise StoreError(f"{key} exists, made with other settings; --overwrite replaces it")
                if meta.get("complete") and dst.shape[0] == n:
                    raise StoreError(f"{key} exists and is complete; --overwrite redoes it")
                if dst.shape[0] != n:  # the store grew: the last shard must be redone
                    dst.resize((n, *dst.shape[1:]))
                    meta = {
                        **meta,
                        "complete": False,
                        "done": [d for d in meta["done"] if d[1] % per_shard == 0 and d[1] <= n],
                    }
                    dst.attrs[self.tool] = meta
                done = {tuple(r) for r in meta["done"]}
                return [r for r in _ranges(n, per_shard) if r not in done]
            del self._data[key]
        self._data.create_array(
            key,
            shape=(n, *src.shape[1:]),
            chunks=(1, *src.shape[1:]),
            shards=(per_shard, *src.shape[1:]),
            dtype=np.uint16,
            compressors=DEPTH_CODEC,
            fill_value=0,
            attributes={
                "derived": True,
                "source": source,
                "unit": "mm",
                "scale_to_m": DEPTH_UNIT_M,
                "no_reading": 0,
                self.tool: {"config": settings, "done": [], "complete": False},
            },
        )
        return _ranges(n, per_shard)

    def annotate(self, key: str, **fields) -> None:
        """Record more provenance of data/<key> beside its settings (not compared on resume, unlike
        them): each field under the tool's attribute; a field given as None is removed."""
        a = self._data[key]
        meta = dict(a.attrs[self.tool])
        for name, value in fields.items():
            if name in ("config", "done", "complete"):
                raise ValueError(f"annotate cannot set {name!r}")
            if value is None:
                meta.pop(name, None)
            else:
                meta[name] = value
        a.attrs[self.tool] = meta

    def done(self, key: str, start: int, end: int) -> None:
        """Record that frames [start, end) of data/<key> are written."""
        a = self._data[key]
        meta = dict(a.attrs[self.tool])
        meta["done"] = sorted(meta["done"] + [[start, end]])
        meta["complete"] = sum(e - s for s, e in meta["done"]) == self.store.n_frames
        a.attrs[self.tool] = meta

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def derived_complete(path: str | Path, key: str, tool: str) -> bool:
    """Whether data/<key> of a simgen store was written in full, for every frame, by `tool`."""
    try:
        store = Store(path)
        a = store.array(key)
    except (StoreError, KeyError):
        return False
    return bool(a.attrs.get(tool, {}).get("complete")) and a.shape[0] == store.n_frames
