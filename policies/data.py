"""Task side of the policy: what a policy observes and does, read from a simgen store.

- `window_indices`: the episode-aware sequences a policy trains on (pure; padding at episode edges).
- `proprio_from`: proprioception from a store's (or a live env's) state arrays.
- `Normalizer`: actions and proprioception to [-1, 1], depth per camera to zero mean, unit spread.
- `PolicyData`: batches of (depth, proprioception, actions) read lazily from the store through a
  bounded cache of shards (the store is never loaded whole), with random-crop augmentation.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from simgen.store import Store, StoreError, depth_from_stored

PROPRIO_KEYS = ("eef_pos", "eef_quat", "gripper_qpos")


def window_indices(episode_ends: np.ndarray, horizon: int, pad_before: int, pad_after: int) -> np.ndarray:
    """(N, horizon) store rows of every training sequence.

    Sequences start at every step of an episode from `pad_before` steps before its first step to
    `pad_after` steps past the last start that fits; rows before the episode's first or after its
    last step repeat that step (the edge padding of Chi et al.'s sampler), so a sequence never
    crosses into another episode."""
    out, start = [], 0
    for end in np.asarray(episode_ends, np.int64):
        n = int(end) - start
        if n <= 0:
            raise ValueError("episode ends must be strictly increasing")
        first = np.arange(-pad_before, max(n - horizon + pad_after, -pad_before) + 1)
        rows = first[:, None] + np.arange(horizon)[None]
        out.append(start + np.clip(rows, 0, n - 1))
        start = int(end)
    return np.concatenate(out) if out else np.zeros((0, horizon), np.int64)


def quat_to_rot6d(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (w, x, y, z) -> (..., 6): the first two columns of the rotation
    matrix (continuous, unlike the quaternion with its sign ambiguity)."""
    w, x, y, z = np.moveaxis(np.asarray(q, np.float64), -1, 0)
    c0 = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1)
    c1 = np.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1)
    return np.concatenate([c0, c1], -1).astype(np.float32)


def proprio_from(state: dict) -> np.ndarray:
    """(..., 11) proprioception: end-effector position (3), rotation (6D), finger positions (2)."""
    return np.concatenate(
        [
            np.asarray(state["eef_pos"], np.float32),
            quat_to_rot6d(state["eef_quat"]),
            np.asarray(state["gripper_qpos"], np.float32),
        ],
        -1,
    )


@dataclass
class Normalizer:
    """Affine maps fitted on the training store and saved with the run."""

    action_lo: list
    action_hi: list
    proprio_lo: list
    proprio_hi: list
    depth_mean: dict  # camera -> metres
    depth_std: dict

    @staticmethod
    def _to_unit(x, lo, hi):
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        return (2 * (x - lo) / np.maximum(hi - lo, 1e-4) - 1).astype(np.float32)

    def actions(self, a):
        return self._to_unit(a, self.action_lo, self.action_hi)

    def unnormalize_actions(self, a):
        lo, hi = np.asarray(self.action_lo, np.float32), np.asarray(self.action_hi, np.float32)
        return ((a + 1) / 2 * np.maximum(hi - lo, 1e-4) + lo).astype(np.float32)

    def proprio(self, p):
        return self._to_unit(p, self.proprio_lo, self.proprio_hi)

    def depth(self, camera: str, d: np.ndarray) -> np.ndarray:
        """(..., H, W) metres -> (..., 2, H, W): normalised depth (0 where no reading), validity."""
        valid = d > 0
        z = np.where(valid, (d - self.depth_mean[camera]) / self.depth_std[camera], 0.0)
        return np.stack([z, valid], -3).astype(np.float32)


def crop_size(H: int, W: int, frac: float) -> tuple[int, int]:
    """The (height, width) of a crop keeping `frac` of an H x W image's height and width."""
    return max(1, round(frac * H)), max(1, round(frac * W))


def crop(images: np.ndarray, frac: float, rng: np.random.Generator | None) -> np.ndarray:
    """(B, ..., H, W) -> (B, ..., h, w), (h, w) = crop_size(H, W, frac): a random crop per sample
    (rng) or the centre (None)."""
    H, W = images.shape[-2:]
    h, w = crop_size(H, W, frac)
    if rng is None:
        y, x = (H - h) // 2, (W - w) // 2
        return images[..., y : y + h, x : x + w]
    out = np.empty(images.shape[:-2] + (h, w), images.dtype)
    for i, (y, x) in enumerate(
        zip(rng.integers(0, H - h + 1, len(images)), rng.integers(0, W - w + 1, len(images)))
    ):
        out[i] = images[i, ..., y : y + h, x : x + w]
    return out


class FrameCache:
    """Frames of one image array, read a shard-aligned block at a time, least recently used blocks
    dropped beyond max_bytes."""

    def __init__(self, array, max_bytes: int):
        self.array = array
        self.block = int((array.shards or array.chunks)[0])
        frame_bytes = int(np.prod(array.shape[1:])) * array.dtype.itemsize
        self.max_blocks = max(1, max_bytes // max(1, frame_bytes * self.block))
        self.blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.empty(rows.shape + self.array.shape[1:], self.array.dtype)
        for b in np.unique(rows // self.block):
            if b in self.blocks:
                self.blocks.move_to_end(b)
            else:
                self.blocks[b] = self.array[b * self.block : (b + 1) * self.block]
                if len(self.blocks) > self.max_blocks:
                    self.blocks.popitem(last=False)
            sel = rows // self.block == b
            out[sel] = self.blocks[b][rows[sel] - b * self.block]
        return out


def depth_keys(store: Store, names: list[str], depth_key: str, cameras: list[str] | None) -> dict[str, str]:
    """camera -> store key of the depth a policy sees, given the store's array `names`. `depth_key`
    names the first camera's array (e.g. front_depth_noisy); the other cameras use the same variant
    (wrist_depth_noisy)."""
    store_cams = list(store.meta.get("cameras", {}))
    avail = [k for k in names if any(k.startswith(f"{c}_depth") for c in store_cams)]
    cam = next((c for c in store_cams if depth_key.startswith(f"{c}_depth")), None)
    if cam is None or depth_key not in avail:
        raise StoreError(f"{store.path}: no depth array {depth_key!r}; depth arrays here: {', '.join(avail)}")
    variant = depth_key[len(cam) :]
    cams = list(cameras) if cameras else [cam]
    keys = {}
    for c in cams:
        if c not in store_cams:
            raise StoreError(f"{store.path}: no camera {c!r}; cameras here: {', '.join(store_cams)}")
        if c + variant not in avail:
            raise StoreError(
                f"{store.path}: no depth array {c + variant!r} for camera {c}; "
                f"depth arrays here: {', '.join(avail)}"
            )
        keys[c] = c + variant
    return keys


class PolicyData:
    """Training sequences of a simgen store. Low-dimensional arrays are read once (a few bytes a
    step); depth frames come through a FrameCache per camera and copy (cache_mb in all).

    `depth_key` may name several copies of the depth, comma-separated (front_depth_reald2iff,
    front_depth_reald2iff_s1: the same frames noisified with other seeds): each sampled sequence
    then reads one copy, drawn at random, for all its cameras and steps."""

    def __init__(
        self,
        path,
        depth_key: str,
        cameras: list[str] | None,
        obs_horizon: int,
        pred_horizon: int,
        cache_mb: int = 4096,
        max_episodes: int | None = None,
    ):
        self.store = Store(path)
        if self.store.n_episodes == 0:
            raise StoreError(f"{path}: the store has no episodes")
        names = self.store.keys()  # one listing of the store's arrays
        variants = [k.strip() for k in depth_key.split(",") if k.strip()]
        self.copies = [depth_keys(self.store, names, k, cameras) for k in variants or [depth_key]]
        if any(list(c) != list(self.copies[0]) for c in self.copies):
            raise StoreError(f"{path}: --depth-key {depth_key!r} names copies of different cameras")
        self.keys = self.copies[0]  # camera -> key of the first copy
        missing = [k for k in ("action",) + PROPRIO_KEYS if k not in names]
        if missing:
            raise StoreError(f"{path}: missing arrays {', '.join(missing)} (not a demonstration store?)")
        ends = self.store.episode_ends[:max_episodes] if max_episodes else self.store.episode_ends
        self.n_episodes, n = len(ends), int(ends[-1])
        self.task = self.store.meta["task"]
        self.cameras = {
            c: {k: self.store.meta["cameras"][c][k] for k in ("width", "height", "K")} for c in self.keys
        }
        self.actions = np.asarray(self.store.array("action")[:n], np.float32)
        self.proprio = proprio_from({k: self.store.array(k)[:n] for k in PROPRIO_KEYS})
        # every step is the current observation (index obs_horizon - 1) of exactly one window
        self.windows = window_indices(ends, pred_horizon, obs_horizon - 1, pred_horizon - obs_horizon)
        self.obs_horizon = obs_horizon
        per = cache_mb * (1 << 20) // (len(self.keys) * len(self.copies))
        self.copy_frames = [
            {c: FrameCache(self.store.array(k), per) for c, k in keys.items()} for keys in self.copies
        ]
        self.frames = self.copy_frames[0]
        need = sum(
            int(np.prod(f.array.shape[1:])) * f.array.dtype.itemsize * n
            for frames in self.copy_frames
            for f in frames.values()
        )
        if need > cache_mb * (1 << 20):
            # sampling is uniform over the store, so a cache holding a fraction f of it misses 1 - f of
            # the blocks a batch touches, each a whole shard read again: many times slower
            print(
                f"warning: {path}: the depth frames trained on take {need / (1 << 20):.0f} MB, more than "
                f"the {cache_mb} MB frame cache; batches will re-read shards (slow); raise --cache-mb",
                file=sys.stderr,
            )
        self.normalizer = self._fit_normalizer(n)

    def _fit_normalizer(self, n: int) -> Normalizer:
        mean, std = {}, {}
        rows = np.unique(np.linspace(0, n - 1, min(n, 256)).astype(int))
        for c, cache in self.frames.items():
            d = depth_from_stored(cache.array.get_orthogonal_selection((rows,)))
            v = d[d > 0]
            if v.size == 0:
                raise StoreError(f"{self.store.path}: {self.keys[c]} has no depth readings")
            mean[c], std[c] = float(v.mean()), float(max(v.std(), 1e-3))
        return Normalizer(
            self.actions.min(0).tolist(),
            self.actions.max(0).tolist(),
            self.proprio.min(0).tolist(),
            self.proprio.max(0).tolist(),
            mean,
            std,
        )

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, idx: np.ndarray, crop_frac: float, rng: np.random.Generator | None) -> dict:
        """Samples idx as tensors: depth {camera: (B, To, 2, h, w)} (crop_frac of each side),
        proprio (B, To, P), action (B, T, Da), normalised; a random crop per sample with rng, the
        centre without."""
        w = self.windows[idx]
        obs_rows = w[:, : self.obs_horizon]
        which = (
            rng.integers(0, len(self.copies), len(idx))
            if len(self.copies) > 1 and rng is not None
            else np.zeros(len(idx), int)
        )  # the copy each sample reads
        depth = {}
        for c in self.keys:
            stored = np.empty(obs_rows.shape + self.frames[c].array.shape[1:], self.frames[c].array.dtype)
            for j in np.unique(which):
                stored[which == j] = self.copy_frames[j][c].get(obs_rows[which == j])
            d = depth_from_stored(stored)  # (B, To, H, W)
            depth[c] = torch.from_numpy(crop(self.normalizer.depth(c, d), crop_frac, rng))
        return {
            "depth": depth,
            "proprio": torch.from_numpy(self.normalizer.proprio(self.proprio[obs_rows])),
            "action": torch.from_numpy(self.normalizer.actions(self.actions[w])),
        }
