"""`simgen export --format robomimic`: a simgen store as a robomimic HDF5 file (schema in
docs/formats/robomimic.md#export).

    data                 attrs total, env_args (JSON), simgen (JSON: the store's attributes)
    data/demo_<i>        attrs num_samples, success, seed, model_file (robosuite tasks)
        actions (T, A), rewards (T,), dones (T,), states (T, S) (robosuite tasks)
        obs/<key>, next_obs/<key> (obs shifted by one step, the last repeated)
    mask/train, mask/valid   demo names (bytes), a 90/10 split drawn with seed 0

Low-dimensional keys take robomimic's names where they mean the same thing (eef_pos ->
robot0_eef_pos, quaternions in robosuite's x, y, z, w order), others keep the store's; images and
depth are upright, depth float32 metres with 0 = no reading and K in its attributes. For
robosuite:* tasks the camera keys are robosuite's camera names and `actions` are what simgen sent
to robosuite's step() (OSC_POSE, absolute world frame: position, rotation vector, gripper -1 open
.. 1 closed).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from interop.robomimic import METRIC_ATTRS
from interop.source import Source, json_attr

VALID_FRACTION = 0.1
SPLIT_SEED = 0
RENAMED = {  # simgen store key -> robomimic (robosuite) observation key
    "eef_pos": "robot0_eef_pos",
    "eef_quat": "robot0_eef_quat",
    "gripper_qpos": "robot0_gripper_qpos",
    "robot_qpos": "robot0_joint_pos",
}  # object_pose keeps its name: robosuite's `object` observation also holds relative positions
EXTRINSICS_CONVENTION = "camera-to-world 4x4, OpenCV axes (x right, y down, z forward)"
ROBOSUITE_ACTION = (
    "robosuite OSC_POSE, absolute world frame: position xyz (m), rotation vector (3), "
    "gripper -1 open .. 1 closed"
)


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return q[..., [1, 2, 3, 0]]


def low_dim_obs(src: Source, ep: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, dict]]:
    """robomimic's low-dim observations: {key: (array (T, D), attrs)}."""
    t = len(ep["action"])
    out = {}
    for k in src.state_keys:
        v = ep[k]
        attrs = {"simgen_key": k}
        if k == "eef_quat":
            v, attrs["quat_order"] = wxyz_to_xyzw(v), "x, y, z, w"
        elif k == "object_pose":  # (T, n, 7): per object position and quaternion
            v = np.concatenate([v[..., :3], wxyz_to_xyzw(v[..., 3:7])], axis=-1)
            attrs["layout"] = "per object (object_bodies order): position xyz, quaternion x, y, z, w"
            attrs["object_bodies"] = json_attr(src.meta.get("object_bodies", []))
        out[RENAMED.get(k, k)] = (np.ascontiguousarray(v.reshape(t, -1)), attrs)
    return out


def camera_prefix(src: Source, cam: str) -> str:
    """robosuite's camera name for robosuite tasks (agentview, robot0_eye_in_hand), else ours."""
    if src.robosuite:
        return str(src.camera(cam).get("robosuite_camera", cam))
    return cam


def image_obs(src: Source, ep: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, dict]]:
    """Per camera: <p>_image (T, H, W, 3) uint8, <p>_depth[_<suffix>] (T, H, W, 1) float32 metres,
    <p>_extrinsics (T, 4, 4) float32."""
    out = {}
    for cam in src.cameras:
        p, K = camera_prefix(src, cam), src.K(cam)
        if cam in src.rgb:
            attrs = {"convention": "upright (row 0 = top)", "K": K, "camera": cam}
            out[f"{p}_image"] = (ep[src.rgb[cam]], attrs)
        for d in src.depth[cam]:
            attrs = {**METRIC_ATTRS, "K": K, "camera": cam, "simgen_key": d.key}
            if d.suffix:
                attrs["noisify"] = json_attr(d.provenance)
            out[f"{p}_{d.name}"] = (ep[d.key][..., None].astype(np.float32), attrs)
        if cam in src.extrinsics:
            out[f"{p}_extrinsics"] = (
                ep[src.extrinsics[cam]].astype(np.float32),
                {"convention": EXTRINSICS_CONVENTION, "camera": cam},
            )
    return out


def robosuite_actions(actions: np.ndarray) -> np.ndarray:
    """simgen's actions (position, 6D rotation, gripper 0..1) -> the 7 numbers RobosuiteEnv.step
    passed to robosuite (position, rotation vector, gripper -1..1), float64."""
    from simgen.controller import rot6d_to_mat, rotation_vector

    a = np.asarray(actions, np.float64)
    out = np.empty((len(a), 7))
    out[:, :3] = a[:, :3]
    out[:, 3:6] = [rotation_vector(rot6d_to_mat(r)) for r in a[:, 3:9]]
    out[:, 6] = 2.0 * np.clip(a[:, 9], 0.0, 1.0) - 1.0
    return out


def env_args(src: Source) -> dict:
    """robomimic's env metadata: robosuite's environment (type 1) for robosuite tasks, else a
    simgen task (type 0: not an environment robomimic can create)."""
    sizes = [src.size(c) for c in src.cameras]
    heights = [h for h, _ in sizes]
    widths = [w for _, w in sizes]
    one = len(set(sizes)) == 1
    cams = {
        "camera_heights": heights[0] if one else heights,
        "camera_widths": widths[0] if one else widths,
        "camera_depths": True,
        "control_freq": src.fps,
    }
    rs = src.robosuite
    if not rs:
        return {
            "env_name": f"simgen:{src.task}",
            "type": 0,
            "env_kwargs": {"camera_names": src.cameras, **cams},
            "note": "a simgen task, not a robomimic environment: roll out with simgen",
        }
    from simgen.robosuite_env import _controller_config, import_robosuite

    return {
        "env_name": rs["env"],
        "env_version": rs.get("version"),
        "type": 1,
        "env_kwargs": {
            "robots": [rs.get("robot", "Panda")],
            "controller_configs": _controller_config(import_robosuite()),
            "camera_names": [camera_prefix(src, c) for c in src.cameras],
            **cams,
            "has_renderer": False,
            "has_offscreen_renderer": True,
            "use_object_obs": True,
            "use_camera_obs": True,
            "ignore_done": True,
            "reward_shaping": False,
            "hard_reset": False,
        },
    }


def _put(group: h5py.Group, name: str, value: np.ndarray, attrs: dict | None = None) -> None:
    """A dataset; images and depth are chunked a frame each and gzip-compressed (lossless)."""
    kw = {}
    if value.ndim >= 3 and value.shape[1] > 4:  # (T, H, W[, C]): a frame per chunk
        kw = {"chunks": (1, *value.shape[1:]), "compression": "gzip", "compression_opts": 1, "shuffle": True}
    ds = group.create_dataset(name, data=value, **kw)
    for k, v in (attrs or {}).items():
        ds.attrs[k] = v


def split(n: int) -> tuple[list[int], list[int]]:
    """(train, valid) demo indices: robomimic's int(0.1 n) validation demos, drawn with seed 0."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    valid = sorted(int(i) for i in order[: int(VALID_FRACTION * n)])
    return [i for i in range(n) if i not in set(valid)], valid


def _names(indices: list[int]) -> np.ndarray:
    return np.array([f"demo_{i}".encode() for i in indices], dtype="S")


def write_robomimic(src: Source, out: Path, progress: bool) -> dict:
    """Write the robomimic file `out` episode by episode; returns {"keys": obs keys}."""
    env = env_args(src)
    xml = (src.robosuite or {}).get("model_xml")
    obs_keys: list[str] = []
    with h5py.File(out, "w") as f:
        data = f.create_group("data")
        for i, ep in src.episodes(progress, "robomimic"):
            t = len(ep["action"])
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = t
            g.attrs["success"] = src.success(i)
            g.attrs["seed"] = src.seed(i)
            if xml is not None:
                g.attrs["model_file"] = xml
            actions = robosuite_actions(ep["action"]) if src.robosuite else ep["action"]
            layout = ROBOSUITE_ACTION if src.robosuite else src.meta["action"]["layout"]
            _put(g, "actions", actions, {"layout": layout})
            done_steps = src.success_steps(i, t)
            _put(g, "rewards", done_steps.astype(np.float64))
            dones = done_steps.copy()
            dones[-1] = True
            _put(g, "dones", dones.astype(np.int64))
            if src.has_sim_state:
                _put(g, "states", ep["sim_state"], {"layout": "MjSim flattened state: time, qpos, qvel"})
            obs = {**low_dim_obs(src, ep), **image_obs(src, ep)}
            obs_keys = list(obs)
            for name, (value, attrs) in obs.items():
                _put(g, f"obs/{name}", value, attrs)
                _put(g, f"next_obs/{name}", np.concatenate([value[1:], value[-1:]]), attrs)
        data.attrs["total"] = src.n_frames
        data.attrs["env_args"] = json_attr(env)
        data.attrs["simgen"] = json_attr(src.summary_meta())
        train, valid = split(src.n_episodes)
        f.create_dataset("mask/train", data=_names(train))
        f.create_dataset("mask/valid", data=_names(valid))
    return {"keys": obs_keys}
