"""`simgen export --format lerobot`: a simgen store as a LeRobot v3 dataset, written with LeRobot's
own writer (`LeRobotDataset.create`, `add_frame`, `save_episode`, `finalize`); schema in
docs/formats/lerobot.md.

Depth is a numeric feature (H, W, 1) float32 in metres, 0 = no reading, stored in the parquet data
files (lossless; LeRobot's videos are lossy and would turn holes into depths). RGB are LeRobot
images (PNG, lossless). Intrinsics are in each depth and image feature's `info` in meta/info.json,
success and seed per episode are columns of the episodes metadata, and meta/simgen.json keeps the
store's attributes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from interop.robomimic import METRIC_ATTRS
from interop.robomimic_export import EXTRINSICS_CONVENTION
from interop.source import ExportError, Source

ROT6D_ACTION = ["x", "y", "z", "r00", "r10", "r20", "r01", "r11", "r21", "gripper"]
_torchvision_ops = None  # the op schemas defined for torchvision without its compiled ops (kept alive)


def _torchvision_without_ops() -> None:
    """Make torchvision importable where its compiled ops cannot load (its PyPI wheels are built
    against CUDA torch, this project uses CPU torch): torchvision then works without them except
    for registering fake kernels of two ops (pytorch/vision#9337), so their schemas are defined here
    without any kernel. LeRobot uses only torchvision's pure-Python transforms and video readers."""
    global _torchvision_ops
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # LeRobot's own import then says what is missing
    except RuntimeError as e:
        if "torchvision::nms does not exist" not in str(e):
            raise
        import torch

        _torchvision_ops = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _torchvision_ops.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401,F811


def lerobot_dataset_class():
    """LeRobot's LeRobotDataset: from `lerobot` if installed, else the standalone `lerobot-dataset`
    package (module `ledataset`). ExportError when neither imports."""
    _torchvision_without_ops()
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:
        try:
            from ledataset.datasets.lerobot_dataset import LeRobotDataset
        except ImportError as e:
            raise ExportError(f"the LeRobot export needs `pip install lerobot-dataset` ({e})") from None
    return LeRobotDataset


def depth_feature(cam: str) -> str:
    return f"observation.depth.{cam}"


def features(src: Source) -> dict[str, dict]:
    """LeRobot features of the export (see the module docstring)."""
    adim = int(src.store.array("action").shape[1])
    feats: dict[str, dict] = {
        "observation.state": {
            "dtype": "float32",
            "shape": (len(src.state_names(src.proprio)),),
            "names": src.state_names(src.proprio),
        },
        "action": {
            "dtype": "float32",
            "shape": (adim,),
            "names": ROT6D_ACTION if adim == len(ROT6D_ACTION) else [f"action_{j}" for j in range(adim)],
        },
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    if src.env_state:
        names = src.state_names(src.env_state)
        feats["observation.environment_state"] = {"dtype": "float32", "shape": (len(names),), "names": names}
    for cam in src.cameras:
        (h, w), K = src.size(cam), src.K(cam).tolist()
        if cam in src.rgb:
            feats[f"observation.images.{cam}"] = {
                "dtype": "image",
                "shape": (h, w, 3),
                "names": ["height", "width", "channels"],
                "info": {"K": K, "convention": "upright (row 0 = top)"},
            }
        for d in src.depth[cam]:
            info = {**METRIC_ATTRS, "K": K, "camera": cam, "simgen_key": d.key}
            if d.suffix:
                info["noisify"] = d.provenance
            feats[depth_feature(cam) + (f"_{d.suffix}" if d.suffix else "")] = {
                "dtype": "float32",
                "shape": (h, w, 1),
                "names": ["height", "width", "channel"],
                "info": info,
            }
        if cam in src.extrinsics:
            feats[f"observation.extrinsics.{cam}"] = {
                "dtype": "float32",
                "shape": (4, 4),
                "names": None,
                "info": {"convention": EXTRINSICS_CONVENTION},
            }
    return feats


def _frames(src: Source, i: int, ep: dict[str, np.ndarray]):
    """LeRobot frames (dicts for add_frame) of one episode."""
    t = len(ep["action"])
    state, env = src.flat(ep, src.proprio), src.flat(ep, src.env_state)
    success = src.success_steps(i, t)
    done = success.copy()
    done[-1] = True
    for s in range(t):
        frame = {
            "observation.state": state[s],
            "action": ep["action"][s].astype(np.float32),
            "next.reward": np.array([success[s]], np.float32),
            "next.done": np.array([done[s]]),
            "next.success": np.array([success[s]]),
            "task": src.task_text,
        }
        if src.env_state:
            frame["observation.environment_state"] = env[s]
        for cam in src.cameras:
            if cam in src.rgb:
                frame[f"observation.images.{cam}"] = ep[src.rgb[cam]][s]
            for d in src.depth[cam]:
                frame[depth_feature(cam) + (f"_{d.suffix}" if d.suffix else "")] = ep[d.key][s][..., None]
            if cam in src.extrinsics:
                frame[f"observation.extrinsics.{cam}"] = ep[src.extrinsics[cam]][s].astype(np.float32)
        yield frame


def add_episode_columns(root: Path, columns: dict[str, list]) -> None:
    """Add per-episode columns (indexed by episode_index) to the episodes metadata files, one
    parquet file at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for f in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        table = pq.read_table(f)
        index = table.column("episode_index").to_pylist()
        for name, values in columns.items():
            table = table.append_column(name, pa.array([values[i] for i in index]))
        tmp = f.with_name(f.name + ".tmp")
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, f)


def write_lerobot(src: Source, out: Path, progress: bool) -> dict:
    """Write the LeRobot dataset folder `out` episode by episode; returns {"features": names}."""
    import datasets

    LeRobotDataset = lerobot_dataset_class()
    feats = features(src)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # LeRobot's per-episode "Map" bars; ours counts episodes
    try:
        with warnings.catch_warnings():
            # what LeRobot's own code warns about: (1,)-shaped scalar features, stats of bool ones
            warnings.filterwarnings("ignore", "Conversion of an array with ndim > 0", DeprecationWarning)
            warnings.filterwarnings("ignore", "Converting input from bool", RuntimeWarning)
            ds = LeRobotDataset.create(
                repo_id="simgen/" + src.task.replace(":", "_"),
                fps=src.fps,
                features=feats,
                root=out,
                robot_type="panda",
                use_videos=False,
                video_backend="pyav",
            )
            for i, ep in src.episodes(progress, "lerobot"):
                for frame in _frames(src, i, ep):
                    ds.add_frame(frame)
                ds.save_episode()
            ds.finalize()
    finally:
        if bars:
            datasets.enable_progress_bars()
    n = src.n_episodes
    add_episode_columns(
        out, {"success": [src.success(i) for i in range(n)], "seed": [src.seed(i) for i in range(n)]}
    )
    (out / "meta" / "simgen.json").write_text(json.dumps(src.summary_meta(), indent=1, sort_keys=True))
    return {"features": sorted(feats)}
