"""`realdiff capture` and `realdiff pair --refine`: tracking, TSDF fusion, registration refinement,
the pair store they write, resuming after a kill, and sequences that cannot be tracked."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import zarr
from conftest import KINECT7, assert_one_line_error, make_fixture_pairs, run_realdiff

from realdiff.capture.geometry import ate_rmse, relative_motion, se3_exp
from realdiff.capture.global_refine import GlobalRefineConfig, refine_trajectory
from realdiff.capture.icp import refine_pose
from realdiff.capture.pipeline import capture
from realdiff.capture.track import TrackingLost
from realdiff.capture.tsdf import TSDFVolume
from realdiff.frames import default_depth_scale, list_frames, read_depth_png, read_intrinsics
from realdiff.pairs import load_split
from simgen.render import TwinRenderer

SEQ = Path(__file__).parent / "fixtures" / "kinect7-seq"  # 16 real 7-Scenes frames, 160x120, posed
ARRAYS = ("clean", "real", "pose", "pose_estimate", "abs_diff_mm_before", "abs_diff_mm")


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    out = tmp_path_factory.mktemp("capture") / "seq.zarr"
    summary = capture(SEQ / "frames", SEQ / "camera-intrinsics.txt", out, sensor="kinect-v1", progress=False)
    return out, summary


def test_capture_writes_a_pair_store_mesh_and_report(captured):
    out, s = captured
    assert s["frames"] == 16 and (s["train"], s["val"]) == (13, 3)
    clean, real, K, ids = load_split(out, "train")
    assert clean.shape == real.shape == (13, 120, 160) and np.allclose(
        K, read_intrinsics(SEQ / "camera-intrinsics.txt")
    )
    g = zarr.open_group(out, mode="r")
    meta = g.attrs["realdiff_pairs"]
    assert meta["captured"] and meta["refined"] and meta["sensor"] == "kinect-v1"
    assert "done" not in g and not out.with_name(out.name + ".capture").exists()  # work files gone
    # The twin explains the real frames: most pixels read in both, to a few millimetres.
    both = (clean > 0) & (real > 0)
    assert both.mean() > 0.7
    assert s["median_abs_diff_mm"] < 8.0, s
    # The trajectory matches the given poses (7-Scenes' own) to about a centimetre.
    assert s["ate_m"]["tracked"] < 0.02 and s["ate_m"]["refined"] < 0.02, s["ate_m"]
    # Refinement never made a frame's alignment worse.
    assert np.all(g["abs_diff_mm"][:] <= g["abs_diff_mm_before"][:] + 1e-6)
    mesh = Path(s["mesh"])
    assert mesh.name == "seq.twin.ply" and mesh.stat().st_size > 10_000
    report = imageio.imread(s["report"])
    assert report.ndim == 3 and report.shape[0] > 500


def test_tsdf_fuses_and_raycasts_a_plane():
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    depth = np.full((96, 128), 1.5, np.float32)  # a wall 1.5 m in front of the first camera
    vol = TSDFVolume([-2, -2, -1], 4.0, 0.02)
    for dx in (-0.1, 0.0, 0.1):  # three cameras slid sideways see the same wall
        pose = np.eye(4)
        pose[0, 3] = dx
        vol.integrate(depth, K, pose, max_depth=4.0)
    pose = np.eye(4)
    pose[0, 3] = 0.05
    z = vol.raycast(K, pose, 96, 128, near=0.2, far=4.0)
    inner = z[20:-20, 30:-30]
    assert np.all(inner > 0) and np.abs(inner - 1.5).max() < 0.002
    verts, faces = vol.mesh()
    assert len(faces) > 100 and np.abs(verts[:, 2] - 1.5).max() < 0.005


def test_refine_recovers_a_perturbed_pose():
    K = read_intrinsics(KINECT7 / "camera-intrinsics.txt")
    pose = list_frames(KINECT7 / "frames")[0].pose
    with TwinRenderer(KINECT7 / "scene_mesh.ply", K, 320, 240) as twin:
        real = twin.render(pose)
        off = se3_exp(np.array([0.01, -0.008, 0.006, 0.015, -0.01, 0.012])) @ pose  # ~1 deg, 2 cm
        r = refine_pose(twin.render, real, K, off)
    assert r.after_mm < 0.5 < r.before_mm
    assert np.abs(r.pose[:3, 3] - pose[:3, 3]).max() < 0.002
    assert np.abs(r.pose[:3, :3] - pose[:3, :3]).max() < 0.002


def test_ate_is_zero_for_a_moved_copy_and_sees_noise():
    rng = np.random.default_rng(0)
    ref = np.stack([se3_exp(rng.normal(0, 0.3, 6)) for _ in range(30)])
    moved = np.stack([se3_exp(np.array([0.2, -0.1, 0.3, 1.0, 2.0, -0.5])) @ p for p in ref])
    assert ate_rmse(moved, ref)[0] < 1e-9
    noisy = ref.copy()
    noisy[:, :3, 3] += rng.normal(0, 0.01, (30, 3))
    assert 0.01 < ate_rmse(noisy, ref)[0] < 0.02


def test_global_refinement_takes_out_drift():
    frames = list_frames(SEQ / "frames")
    K = read_intrinsics(SEQ / "camera-intrinsics.txt")
    given = np.stack([f.pose for f in frames])
    # a tracker's drift: an error about the first camera that grows frame by frame (4 cm, 1.7 deg)
    step = np.array([0.001, 0.0015, -0.0008, 0.002, -0.0015, 0.0012])
    about_first = [given[0] @ se3_exp(i * step) @ np.linalg.inv(given[0]) for i in range(len(given))]
    drifted = np.stack([d @ p for d, p in zip(about_first, given)])
    read = lambda i: read_depth_png(frames[i].depth_path, default_depth_scale(SEQ / "frames"))  # noqa: E731
    cfg = GlobalRefineConfig(every=3)
    poses, n_keys, n_pairs = refine_trajectory(read, drifted, K, cfg)
    assert n_keys == 6 and n_pairs >= 10
    # the first frame holds the gauge in both, so the poses compare as they are
    before, after = (
        np.array([relative_motion(a, b) for a, b in zip(p, given)]).max(0) for p in (drifted, poses)
    )
    assert before[0] > 0.03 and before[1] > 1.5, before  # metres, degrees
    assert after[0] < 0.35 * before[0] and after[1] < 0.35 * before[1], (before, after)
    assert np.allclose(poses[0], drifted[0])  # the first keyframe holds the gauge
    # fewer than three keyframes: nothing to register, the poses come back as they were
    same, n_keys, n_pairs = refine_trajectory(read, drifted[:5], K, GlobalRefineConfig(every=10))
    assert (n_keys, n_pairs) == (2, 0) and np.array_equal(same, drifted[:5])


def test_pair_refine_keeps_the_better_pose(tmp_path):
    s = make_fixture_pairs(tmp_path / "p.zarr", refine=True)
    g = zarr.open_group(tmp_path / "p.zarr", mode="r")
    before, after = g["abs_diff_mm_before"][:], g["abs_diff_mm"][:]
    assert np.all(after <= before) and after.mean() < before.mean(), (before, after)
    assert g.attrs["realdiff_pairs"]["refined"]
    plain = make_fixture_pairs(tmp_path / "q.zarr")
    assert s["median_abs_diff_mm"] < plain["median_abs_diff_mm"]
    assert "pose_estimate" not in zarr.open_group(tmp_path / "q.zarr", mode="r")  # unrefined: as before


def test_given_poses_are_refined_unless_kept(tmp_path):
    """--given-poses starts from the frames' own poses and refines them as a tracked trajectory;
    with --keyframe-every 0 --no-refine the store holds them exactly as given."""
    K = SEQ / "camera-intrinsics.txt"
    given = np.stack([f.pose for f in list_frames(SEQ / "frames")])
    kept = run_realdiff(
        "capture", SEQ / "frames", "--intrinsics", K, "--out", tmp_path / "kept.zarr", "--given-poses",
        "--keyframe-every", 0, "--no-refine", "--quiet", check=True,
    )  # fmt: skip
    g = zarr.open_group(tmp_path / "kept.zarr", mode="r")
    assert np.array_equal(g["pose"][:], given) and "moved 0.0 cm per frame" in kept.stdout
    refined = run_realdiff(
        "capture", SEQ / "frames", "--intrinsics", K, "--out", tmp_path / "refined.zarr", "--given-poses",
        "--keyframe-every", 3, "--quiet", check=True,
    )  # fmt: skip
    g2 = zarr.open_group(tmp_path / "refined.zarr", mode="r")
    moved = g2.attrs["realdiff_pairs"]["moved_from_given_m"]
    assert 0 < moved["global"] < 0.02 and 0 < moved["refined"] < 0.02, moved
    assert "cm globally" in refined.stdout
    # Refined, the twin explains the frames better than at the given poses.
    assert np.median(g2["abs_diff_mm"][:]) < np.median(g["abs_diff_mm"][:])


def _sequence_copy(dst: Path, replace: dict | None = None) -> Path:
    """The fixture's frames copied to dst/frames, some depth files replaced by others."""
    frames = dst / "frames"
    shutil.copytree(SEQ / "frames", frames)
    for name, src in (replace or {}).items():
        shutil.copy(src, frames / name)
    return frames


def test_a_sequence_that_cannot_be_tracked_writes_nothing(tmp_path):
    # Frame 30 replaced by a view from the far side of the room (7-Scenes frame 650, 4x smaller).
    far = tmp_path / "far.depth.png"
    imageio.imwrite(far, imageio.imread(KINECT7 / "frames" / "frame-000650.depth.png")[::2, ::2])
    frames = _sequence_copy(tmp_path, {"frame-000030.depth.png": far})
    with pytest.raises(TrackingLost, match="frame-000030.depth.png: tracking lost"):
        capture(frames, SEQ / "camera-intrinsics.txt", tmp_path / "x.zarr", progress=False)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.twin.ply").exists()
    p = run_realdiff(
        "capture",
        frames,
        "--intrinsics",
        SEQ / "camera-intrinsics.txt",
        "--out",
        tmp_path / "y.zarr",
        "--quiet",
    )
    assert_one_line_error(p, "tracking lost")
    assert not (tmp_path / "y.zarr").exists()


def test_bad_input_gives_one_line(tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted((SEQ / "frames").glob("*.depth.png"))[:4]:
        shutil.copy(f, few / f.name)
    K = SEQ / "camera-intrinsics.txt"
    assert_one_line_error(
        run_realdiff("capture", few, "--intrinsics", K, "--out", tmp_path / "a.zarr"), "at least 10"
    )
    with pytest.raises(ValueError, match="no such folder"):
        capture(tmp_path / "none", K, tmp_path / "b.zarr", progress=False)
    bad_k = tmp_path / "k.txt"
    bad_k.write_text("1 2 3\n")
    with pytest.raises(ValueError, match="camera matrix"):
        capture(SEQ / "frames", bad_k, tmp_path / "c.zarr", progress=False)
    assert not any(tmp_path.glob("[abc].*"))


def test_tum_layout_reads_the_same_depth(tmp_path):
    (tmp_path / "depth").mkdir()
    lines = []
    for k, f in enumerate(list_frames(SEQ / "frames")):
        mm = imageio.imread(f.depth_path).astype(np.uint32)
        imageio.imwrite(tmp_path / "depth" / f"{k}.png", np.where(mm < 13000, mm * 5, 0).astype(np.uint16))
        lines.append(f"{k}.0 rgb/{k}.png {k}.0 depth/{k}.png")
    (tmp_path / "associations.txt").write_text("\n".join(lines) + "\n")
    tum = list_frames(tmp_path, poses="optional")
    assert len(tum) == 16 and tum[3].pose is None and default_depth_scale(tmp_path) == pytest.approx(1 / 5000)
    ours = list_frames(SEQ / "frames")
    a = read_depth_png(tum[5].depth_path, default_depth_scale(tmp_path))
    assert np.allclose(a, read_depth_png(ours[5].depth_path), atol=1e-6)


@pytest.mark.slow
def test_killed_capture_resumes_to_the_same_store(tmp_path, captured):
    out = tmp_path / "seq.zarr"
    cmd = [sys.executable, "-m", "realdiff", "capture", str(SEQ / "frames")]
    cmd += [
        "--intrinsics",
        str(SEQ / "camera-intrinsics.txt"),
        "--out",
        str(out),
        "--sensor",
        "kinect-v1",
        "--quiet",
    ]
    ckpt = out.with_name(out.name + ".capture") / "track.pt"
    for wait_for in (ckpt, out.with_name(out.name + ".partial") / "done"):  # kill mid-track, then mid-pair
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while not wait_for.exists() and p.poll() is None and time.time() - t0 < 120:
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not out.exists(), "the run finished before it could be killed"
    assert torch.load(ckpt, weights_only=False)["finished"]  # the second kill came after tracking
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    a, b = zarr.open_group(out, mode="r"), zarr.open_group(captured[0], mode="r")
    for k in ARRAYS:
        assert np.array_equal(a[k][:], b[k][:], equal_nan=True), k
