"""Pairing real depth with twin renders, on the committed 7-Scenes fixture (3 frames, 320x240)."""

import subprocess
import sys

import numpy as np
import pytest
import zarr

from realdiff.pairs import list_frames, read_depth_png, read_intrinsics
from simgen.render import TwinRenderer
from tests.conftest import KINECT7, make_fixture_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "pairs.zarr"
    summary = make_fixture_pairs(out)
    return out, summary


def test_pair_store_contents(pairs):
    out, summary = pairs
    g = zarr.open_group(out, mode="r")
    meta = g.attrs["realdiff_pairs"]
    assert meta["sensor"] == "kinect-v1" and meta["width"] == 320 and meta["height"] == 240
    assert np.allclose(meta["K"], read_intrinsics(KINECT7 / "camera-intrinsics.txt"))
    assert g["frame_id"][:].tolist() == [0, 300, 650]
    assert meta["split"]["train"] == [0, 1] and meta["split"]["val"] == [2]
    for k in ("clean", "real"):
        a = g[k][:]
        assert a.shape == (3, 240, 320) and a.dtype == np.float32 and a.min() >= 0
        assert np.array_equal(g[f"{k}_valid"][:], a > 0)
    assert np.allclose(g["pose"][1], np.loadtxt(KINECT7 / "frames" / "frame-000300.pose.txt"))
    real0 = read_depth_png(KINECT7 / "frames" / "frame-000000.depth.png")
    assert np.array_equal(g["real"][0], real0)
    assert 0.5 < np.median(g["clean"][0][g["clean"][0] > 0]) < 4.5  # a room seen from inside


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    R = np.eye(3)
    R[i, i] = R[j, j] = c
    R[i, j], R[j, i] = -s, s
    return R


def test_twin_aligns_with_real_depth(pairs):
    """Median |real - clean| at most 12 mm, and every frame's true pose beats the same pose moved
    2 cm along any camera axis or turned 1 degree about any: the render is aligned, not just near.
    (Error: mean |real - clean| truncated at 10 cm, which counts misplaced edges.)"""
    out, summary = pairs
    assert summary["median_abs_diff_mm"] <= 12.0
    K = read_intrinsics(KINECT7 / "camera-intrinsics.txt")
    increases = []
    with TwinRenderer(KINECT7 / "scene_mesh.ply", K, 320, 240) as twin:
        for frame in list_frames(KINECT7 / "frames"):
            real = read_depth_png(frame.depth_path)

            def err(pose, real=real):
                c = twin.render(pose)
                both = (c > 0) & (real > 0)
                return float(np.minimum(np.abs(real[both] - c[both]), 0.1).mean())

            best = err(frame.pose)
            for axis in range(3):
                for sign in (-1, 1):
                    moved = frame.pose.copy()
                    moved[:3, 3] += sign * 0.02 * frame.pose[:3, axis]
                    increases.append(err(moved) - best)
                turned = frame.pose.copy()
                turned[:3, :3] = frame.pose[:3, :3] @ _rot(axis, 1.0)
                increases.append(err(turned) - best)
    assert min(increases) > 0.0001 and np.mean(increases) > 0.003, np.round(increases, 4)


def test_pair_cli_and_bad_input(tmp_path, pairs):
    out = tmp_path / "p.zarr"
    cmd = [
        sys.executable,
        "-m",
        "realdiff",
        "pair",
        "--frames",
        str(KINECT7 / "frames"),
        "--intrinsics",
        str(KINECT7 / "camera-intrinsics.txt"),
        "--mesh",
        str(KINECT7 / "scene_mesh.ply"),
    ]
    p = subprocess.run([*cmd, "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert p.returncode == 0 and "3 pairs (2 train, 1 val)" in p.stdout, p.stderr
    again = subprocess.run([*cmd, "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "realdiff",
            "pair",
            "--frames",
            str(tmp_path / "none"),
            "--intrinsics",
            str(KINECT7 / "camera-intrinsics.txt"),
            "--mesh",
            str(KINECT7 / "scene_mesh.ply"),
            "--out",
            str(tmp_path / "q.zarr"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    assert not (tmp_path / "q.zarr").exists()
