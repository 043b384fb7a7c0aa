"""Behaviour pinned by digests recorded before the code was restructured: every committed noise
model's output on a fixed input, a store rendered with a fixed seed (array by array), its
noisified depth, and short training runs of RealD²iff, its distillation and a policy. Any change
to what the code computes fails here; `python tests/test_unchanged.py` prints the digests.

Torch picks its convolution (oneDNN), matrix-product (MKL) and loop kernels by the CPU's vector
instructions, so its last bits, and a sampler's holes and a short training run's weights with
them, differ from one CPU to another. The digests are therefore computed in a child process with
oneDNN off, MKL in its reproducible mode and ATen's plain kernels (PORTABLE): the same bits with
AVX-512 and AMX, and with MKL held to AVX2 or SSE4.2. Mesa's software rasteriser renders a few
RGB pixels differently on another machine; RGB is checked by a fingerprint to a tolerance."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import KINECT7, make_fixture_pairs  # noqa: E402

NOISERS = (
    "identity",
    "gaussian",
    "axial-lateral",
    "structured-light",
    "range-scaled",
    "reald2iff",
    "reald2iff-full",
    "reald2iff-2step",
    "reald2iff-texture",
    "reald2iff-texture-shift",
)

EXPECTED = {
    "lift:action": "207ad1b57a6e30ac",
    "lift:attrs": "aab3f56fd043a96d",  # robosuite section gained model_xml (replay, issue 26)
    "lift:eef_pos": "e09d8a00a745fc40",
    "lift:eef_quat": "428024b7923bda58",
    "lift:front_depth": "71ef4ecc124e2eb3",
    "lift:front_extrinsics": "b26528b9ba5fff00",
    "lift:front_rgb": "1a1dccb5d39794f5",
    "lift:front_seg": "ab63ff8ea55b9c31",
    "lift:gripper_qpos": "318f441b12b50c24",
    "lift:meta/episode_ends": "50287c298c08d34b",
    "lift:object_pose": "a2f8b6c4e24a0d0b",
    "lift:robot_qpos": "ce1671f42087795b",
    "lift:sim_state": "81b6741a44cdd861",  # per-step MjSim state for replay (issue 26)
    "lift:wrist_depth": "efb3bcea7adf8009",
    "lift:wrist_extrinsics": "476fd2b8e28a1bd3",
    "lift:wrist_rgb": "729fc534286bf256",
    "lift:wrist_seg": "d4238d98ecccb543",
    "noiser:axial-lateral": "ff9d6071922d49f9",
    "noiser:gaussian": "76ebda05ba835026",
    "noiser:identity": "3413528e0e09570e",
    "noiser:range-scaled": "b2015b605bb6cdaa",
    "noiser:reald2iff": "acbb8ffc666367fe",
    "noiser:reald2iff-2step": "338c55da4173b7cf",
    "noiser:reald2iff-full": "50f8e0a9e437db23",
    "noiser:reald2iff-texture": "e50ff533181e41f7",
    "noiser:reald2iff-texture-shift": "bfc202a0db15fdef",
    "noiser:structured-light": "c4102a8dc55bfe40",
    "pairs": "7532c70859648c29",
    "pick:action": "848b7faa1e0c0ffa",
    "pick:attrs": "c86df2ea28289203",
    "pick:eef_pos": "3bea0e71c400e2a2",
    "pick:eef_quat": "3e1c19d974cffd3c",
    "pick:front_depth": "c4705fa8dc84a985",
    "pick:front_depth_noisy": "85845ee70519fc59",
    "pick:front_extrinsics": "1998554ae6025beb",
    "pick:front_rgb": "36ecbf7963c71a0f",
    "pick:front_seg": "87567a5859a86eaf",
    "pick:gripper_qpos": "3ce311a44b0c84ed",
    "pick:meta/episode_ends": "92898224eaec34af",
    "pick:object_pose": "f0aebf270b64e3a8",
    "pick:robot_qpos": "9edbd63580b9ab15",
    "pick:wrist_depth": "6ca28469ed277e5b",
    "pick:wrist_depth_noisy": "74aabd622eb63bde",
    "pick:wrist_extrinsics": "9370ae4f01487b8f",
    "pick:wrist_rgb": "b300d5cb5904bf9a",
    "pick:wrist_seg": "4e5213310ce9b3cc",
    # Two digests changed on purpose, each checked to come from that change alone: distillation took
    # the shared warm-up + cosine learning rate (it warmed up a cosine from step 0), and the policy's
    # EMA the shared update, a lerp (it was ema * d + w * (1 - d), equal up to rounding).
    # The RealD²iff and training digests (and lift's front RGB) were recorded again under PORTABLE
    # from the code that gave the old ones (b2563dc), whose bits held only on that CPU.
    "train:distill": "5e84dbe6806da1fb",  # was a7f3311bd0e9c0c3, before that 75e17d3541683e41
    "train:policy": "5f65005cd07ccb4d",  # was e51b49f72975a18f, before that 7dcba4f2dab1634e
    "train:reald2iff": "3226bfc473ebe1be",
}


PORTABLE = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}
RENDERED_RGB = re.compile(r"^\w+:\w+_rgb$")
RGB_TOLERANCE = 1e-2  # of the values' root mean square: about every pixel one level apart
# fmt: off
RGB_FINGERPRINTS = {
    "pick:front_rgb": [113.456215, 73.000059, 204.313849, 130.489881, -85.922282,
        -131.767998, 289.325941, -159.88013, -169.881975, -141.64364],
    "pick:wrist_rgb": [174.337211, 52.125466, 171.597678, 123.672293, -243.875795,
        -274.543322, 94.257094, -81.856525, -77.988538, -216.122888],
    "lift:front_rgb": [210.752482, 62.098687, 9.221208, 104.45818, -47.983132,
        -14.216215, 226.159877, -252.84959, -264.908743, -220.95579],
    "lift:wrist_rgb": [212.36896, 73.155699, 159.926069, 247.667944, -12.353108,
        35.225781, 144.711327, -306.464529, -380.141749, -187.667283],
}
# fmt: on


def fingerprint(a: np.ndarray) -> list[float]:
    """Mean, standard deviation and eight fixed random projections of an array's values, each
    projection about the values' root mean square."""
    x = np.asarray(a, np.float64).ravel()
    r = np.random.default_rng(0).standard_normal((8, x.size))
    return [round(float(v), 6) for v in (x.mean(), x.std(), *(r @ x / np.sqrt(x.size)))]


def digest_arrays(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def fixed_depth() -> tuple[np.ndarray, np.ndarray]:
    """Two real Kinect frames of the committed fixture (240x320, with holes) and their K."""
    frames = [imageio.imread(KINECT7 / "frames" / f"frame-{i:06d}.depth.png") for i in (0, 300)]
    depth = np.stack(frames).astype(np.float32) * np.float32(0.001)
    depth[np.stack(frames) == 65535] = 0
    return depth, np.loadtxt(KINECT7 / "camera-intrinsics.txt")


def noiser_output(name: str, tmp: Path) -> str:
    from realdiff import load_noiser

    if name == "range-scaled":
        saved = tmp / "range-scaled.json"
        base = json.loads(load_noiser("structured-light").to_json())
        saved.write_text(
            json.dumps({"name": "range-scaled", "version": "1", "params": {"base": base, "scale": 0.5}})
        )
        model = load_noiser(str(saved))
    else:
        model = load_noiser(name)
    depth, K = fixed_depth()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frames = model.noisify_frames(depth, K, [np.random.default_rng([7, i]) for i in range(len(depth))])
        batch = model.noisify(depth, K, np.random.default_rng(5))
    finally:
        torch.set_num_threads(threads)
    return digest_arrays({"frames": frames, "batch": batch})


def render_store(path: Path, task: str, episodes: int, res: str, extra=()) -> None:
    from conftest import run_cli

    run_cli(
        "render",
        "--task",
        task,
        "--episodes",
        episodes,
        "--seed",
        11,
        "--resolution",
        res,
        "--out",
        path,
        "--quiet",
        *extra,
        check=True,
    )


def store_digests(path: Path, name: str) -> dict:
    import zarr

    root = zarr.open_group(path, mode="r")
    out = {}
    for k, a in root["data"].arrays():
        a = a[:]
        out[f"{name}:{k}"] = digest_arrays({k: a})
        if k.endswith("_rgb"):
            out[f"fingerprint:{name}:{k}"] = fingerprint(a)
    out[f"{name}:meta/episode_ends"] = digest_arrays({"ends": root["meta/episode_ends"][:]})
    attrs = dict(root.attrs["simgen"])
    out[f"{name}:attrs"] = hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()[:16]
    return out


def state_digest(path: Path, key: str = "state_dict") -> str:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    return digest_arrays({k: v.float().numpy() for k, v in ck[key].items()})


def train_reald2iff(pairs: Path, out: Path) -> None:
    from realdiff.reald2iff.config import make_config
    from realdiff.reald2iff.train import train

    train(
        pairs,
        out,
        make_config(str(Path(__file__).parent / "fixtures" / "realdiff-tiny.toml")),
        progress=False,
    )


def distill_reald2iff(pairs: Path, teacher: Path, out: Path) -> None:
    from realdiff.reald2iff.config import DistillConfig
    from realdiff.reald2iff.distill import distill

    distill(
        pairs,
        teacher,
        out,
        DistillConfig(steps=1, iters=6, batch=2, val_every=3, val_frames=1, ckpt_every=3),
        progress=False,
    )


def train_policy(store: Path, out: Path) -> None:
    from policies.model import PolicyConfig
    from policies.train import TrainConfig, train

    small = PolicyConfig(crop=0.875, enc_widths=(8, 16), feat_dim=16, down_dims=(32, 64))
    train(
        str(store),
        str(out),
        "front_depth_noisy",
        ["front", "wrist"],
        "pick",
        small,
        TrainConfig(steps=4, batch=4, ckpt_every=2),
        progress=False,
    )


def compute_all(tmp: Path) -> dict:
    """Every digest, with torch on 2 threads (as recorded; a training run's floating-point sums
    depend on it) and oneDNN off. Run it under PORTABLE's environment for the same bits on any CPU."""
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(2)
    torch.backends.mkldnn.enabled = False
    try:
        return _compute_all(tmp)
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


def _compute_all(tmp: Path) -> dict:
    from realdiff.noisify import noisify_store

    got = {f"noiser:{n}": noiser_output(n, tmp) for n in NOISERS}
    store = tmp / "pick.zarr"
    render_store(store, "pick", 2, "64x64", ("--seg", "--randomize", "all"))
    noisify_store(store, noiser="structured-light", workers=1, progress=False)
    got.update(store_digests(store, "pick"))
    lift = tmp / "lift.zarr"
    render_store(lift, "robosuite:Lift", 1, "64x48", ("--seg",))
    got.update(store_digests(lift, "lift"))
    pairs = tmp / "pairs.zarr"
    make_fixture_pairs(pairs, val_from=650)
    got["pairs"] = digest_arrays(
        {k: np.asarray(a[:]) for k, a in __import__("zarr").open_group(pairs, mode="r").arrays()}
    )
    train_reald2iff(pairs, tmp / "tiny.pt")
    got["train:reald2iff"] = state_digest(tmp / "tiny.pt")
    distill_reald2iff(pairs, tmp / "tiny.pt", tmp / "student.pt")
    got["train:distill"] = state_digest(tmp / "student.pt")
    train_policy(store, tmp / "run")
    got["train:policy"] = state_digest(tmp / "run" / "policy.pt")
    return got


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """compute_all in a child process under PORTABLE's environment (read when torch loads)."""
    p = subprocess.run(
        [sys.executable, __file__, str(tmp_path_factory.mktemp("unchanged"))],
        env={**os.environ, **PORTABLE},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_output_is_what_it_was_before_the_restructuring(computed, key):
    if RENDERED_RGB.match(key) and computed[key] != EXPECTED[key]:
        ref = np.asarray(RGB_FINGERPRINTS[key])
        atol = RGB_TOLERANCE * np.hypot(ref[0], ref[1])
        np.testing.assert_allclose(computed[f"fingerprint:{key}"], ref, rtol=0, atol=atol, err_msg=key)
    else:
        assert computed[key] == EXPECTED[key], key


def test_every_recorded_digest_is_checked(computed):
    assert sorted(k for k in computed if not k.startswith("fingerprint:")) == sorted(EXPECTED)
    assert sorted(RGB_FINGERPRINTS) == sorted(k for k in EXPECTED if RENDERED_RGB.match(k))


if __name__ == "__main__":
    import tempfile

    if len(sys.argv) > 1:  # the test's child process
        print(json.dumps(compute_all(Path(sys.argv[1]))))
    else:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(compute_all(Path(d)), indent=4))
