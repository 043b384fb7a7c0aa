"""What `simgen export` reads from a simgen store, whatever the format: `Source`, the store's
episodes one at a time (depth in float32 metres, 0 = no reading), which cameras and depth arrays go
out (clean depth and the noisified arrays that `realdiff noisify` completed; `noisy_only` keeps only
the noisy ones), the low-dimensional state and the per-episode records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from simgen.store import Store, derived_complete

DEFAULT_NOISY_KEY = "noisy"
PROPRIO = ("robot_qpos", "gripper_qpos", "eef_pos", "eef_quat")  # observation.state, in this order
NOT_STATE = ("action", "sim_state")
IMAGE_SUFFIXES = ("_depth", "_rgb", "_seg")
NOISIFY_TOOL = "noisify"  # realdiff.noisify.TOOL (not imported: that would load torch)


class ExportError(ValueError):
    """Input an export cannot use (store, format, keys or output path): one line for the user."""


@dataclass(frozen=True)
class Depth:
    """One depth array of a camera: `key` in the store, `suffix` '' for clean depth or the noisify
    suffix, `provenance` the noisify record (settings that made it) of noisy depth."""

    camera: str
    key: str
    suffix: str = ""
    provenance: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """'depth' or 'depth_<suffix>': the key's tail after the camera name."""
        return "depth" + (f"_{self.suffix}" if self.suffix else "")


class Source:
    """What an export reads from a simgen store: cameras, depth arrays, state keys and episodes.

    cameras: those to export (default: all the store has). noisy_key: the noisify suffix to export
    (default: with noisy_only 'noisy', else every complete noisified array); each camera must then
    have it complete. noisy_only: export that noisy depth and no clean depth."""

    def __init__(
        self,
        path: str | Path,
        cameras: list[str] | None = None,
        noisy_only: bool = False,
        noisy_key: str | None = None,
    ):
        self.store = Store(path)  # StoreError (a ValueError) when not a simgen store
        self.path = self.store.path
        self.meta = self.store.meta
        if self.store.n_episodes == 0:
            raise ExportError(f"{self.path}: the store holds no episodes")
        known = list(self.meta.get("cameras", {}))
        self.cameras = list(cameras) if cameras else known
        unknown = [c for c in self.cameras if c not in known]
        if unknown:
            have = ", ".join(known)
            raise ExportError(f"{self.path}: no camera {', '.join(unknown)}; the store has {have}")
        self.noisy_only = noisy_only
        keys = set(self.store.keys())
        self.rgb = {c: f"{c}_rgb" for c in self.cameras if f"{c}_rgb" in keys}
        self.extrinsics = {
            c: k
            for c in self.cameras
            if (k := self.meta["cameras"][c].get("extrinsics_key", f"{c}_extrinsics")) in keys
        }
        self.depth = {c: self._depth_arrays(c, keys, noisy_key) for c in self.cameras}
        all_ext = {self.meta["cameras"][c].get("extrinsics_key", f"{c}_extrinsics") for c in known}
        source = self.store.root["data"]
        self.state_keys = sorted(
            k
            for k in keys
            if k not in NOT_STATE
            and k not in all_ext
            and not k.endswith(IMAGE_SUFFIXES)
            and "_depth_" not in k
            and not source[k].attrs.get("derived")
        )
        self.proprio = [k for k in PROPRIO if k in self.state_keys]
        self.env_state = [k for k in self.state_keys if k not in PROPRIO]
        self.has_sim_state = "sim_state" in keys

    def _depth_arrays(self, cam: str, keys: set[str], noisy_key: str | None) -> list[Depth]:
        clean = f"{cam}_depth"
        noisy = [k for k in sorted(keys) if k.startswith(clean + "_")]
        if noisy_key is None and self.noisy_only:
            noisy_key = DEFAULT_NOISY_KEY
        if noisy_key is not None:
            key = f"{clean}_{noisy_key}"
            if key not in keys:
                raise ExportError(
                    f"{self.path}: no noisified depth {key} (make it with `realdiff noisify "
                    f"{self.path} --out-key {noisy_key}`, or choose --noisy-key / --cameras)"
                )
            if not derived_complete(self.path, key, NOISIFY_TOOL):
                raise ExportError(f"{self.path}: {key} is incomplete; re-run the noisify that made it")
            noisy = [key]
        else:
            noisy = [k for k in noisy if derived_complete(self.path, k, NOISIFY_TOOL)]
        out = [] if self.noisy_only or clean not in keys else [Depth(cam, clean)]
        data = self.store.root["data"]
        for k in noisy:
            record = dict(data[k].attrs.get(NOISIFY_TOOL, {}))
            record.pop("done", None)  # the shards a resumed run finished: bookkeeping, not provenance
            out.append(Depth(cam, k, k[len(clean) + 1 :], record))
        return out

    # -- what the store says

    @property
    def n_episodes(self) -> int:
        return self.store.n_episodes

    @property
    def n_frames(self) -> int:
        return self.store.n_frames

    @property
    def task(self) -> str:
        return str(self.meta.get("task", ""))

    @property
    def task_text(self) -> str:
        """The task in words (the store's description, else its name): LeRobot's task string."""
        return str(self.meta.get("task_description") or self.task)

    @property
    def fps(self) -> int:
        return int(self.meta.get("control_hz", 20))

    @property
    def robosuite(self) -> dict | None:
        """The store's `robosuite` section (robosuite:* tasks), else None."""
        return self.meta.get("robosuite")

    def camera(self, cam: str) -> dict:
        return self.meta["cameras"][cam]

    def K(self, cam: str) -> np.ndarray:
        return np.asarray(self.camera(cam)["K"], np.float64)

    def size(self, cam: str) -> tuple[int, int]:
        """(height, width) of a camera's images."""
        return int(self.camera(cam)["height"]), int(self.camera(cam)["width"])

    def record(self, i: int) -> dict:
        return self.store.episodes[i]

    def success(self, i: int) -> bool:
        return bool(self.record(i).get("success", False))

    def seed(self, i: int) -> int:
        return int(self.record(i).get("seed", i))

    def success_steps(self, i: int, length: int) -> np.ndarray:
        """Per step, whether the state its action led to was a success: a successful episode ends
        after the task's `success_hold` consecutive successful steps (simgen.env.run_episode)."""
        out = np.zeros(length, bool)
        if self.success(i):
            out[-min(self.success_hold, length) :] = True
        return out

    @cached_property
    def success_hold(self) -> int:
        """The task's consecutive successful steps that end an episode (1 for an unknown task)."""
        try:
            from tasks import get_task

            return int(get_task(self.task).success_hold)
        except (KeyError, ValueError, AttributeError):  # a task this simgen does not know
            return 1

    def state_names(self, keys: list[str]) -> list[str]:
        """Names of the columns of `flat(ep, keys)`: '<key>_<i>'."""
        names = []
        for k in keys:
            n = int(np.prod(self.store.array(k).shape[1:], dtype=int))
            names += [f"{k}_{j}" for j in range(n)]
        return names

    @staticmethod
    def flat(ep: dict[str, np.ndarray], keys: list[str]) -> np.ndarray:
        """The arrays `keys` of an episode side by side, one row per step, float32."""
        t = len(ep["action"])
        if not keys:
            return np.zeros((t, 0), np.float32)
        return np.concatenate([ep[k].reshape(t, -1).astype(np.float32) for k in keys], axis=1)

    def keys_read(self) -> list[str]:
        keys = ["action", *self.state_keys, *self.rgb.values(), *self.extrinsics.values()]
        keys += [d.key for ds in self.depth.values() for d in ds]
        return keys + (["sim_state"] if self.has_sim_state else [])

    def episodes(self, progress: bool, desc: str) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(index, arrays) of every episode in order, depth in float32 metres; a progress bar."""
        keys = self.keys_read()
        for i in tqdm(range(self.n_episodes), desc=desc, unit="episode", disable=not progress):
            yield i, self.store.episode(i, keys)

    def summary_meta(self) -> dict:
        """The store's attributes an export keeps beside the data (episodes and the MJCF left out)."""
        meta = {k: v for k, v in self.meta.items() if k not in ("episodes",)}
        if "robosuite" in meta:
            meta["robosuite"] = {k: v for k, v in meta["robosuite"].items() if k != "model_xml"}
        meta["source"] = str(self.path)
        meta["exported_cameras"] = self.cameras
        meta["noisy_only"] = self.noisy_only
        meta["depth_arrays"] = {c: [d.key for d in ds] for c, ds in self.depth.items()}
        return meta


def json_attr(value) -> str:
    """A dict or list as a JSON string (HDF5 and zarr attributes)."""
    return json.dumps(value, sort_keys=True)
