"""`realdiff noisify` on real simgen stores: output, determinism, resume, refusals, bad input."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr

from realdiff.noisify import noisify_store
from realdiff.sensors import DEFAULT_NOISER
from simgen.store import Store, shard_frames
from tests.conftest import (
    assert_one_line_error,
    assert_workers_exit,
    run_cli,
    run_realdiff,
    spawned_workers,
    tree_digest,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two pick episodes at 320x240 (front camera): about 80 frames, so 2 shards."""
    out = tmp_path_factory.mktemp("nz") / "pick.zarr"
    run_cli(
        "render",
        "--task",
        "pick",
        "--episodes",
        2,
        "--out",
        out,
        "--cameras",
        "front",
        "--resolution",
        "320x240",
        "--no-rgb",
        "--quiet",
        check=True,
    )
    return out


def _noisy(path, key="front_depth_noisy"):
    return zarr.open_group(path, mode="r")["data"][key][:]


def test_noisify_writes_derived_depth_deterministically(store, tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    shutil.copytree(store, a)
    shutil.copytree(store, b)
    s = noisify_store(a, noiser="gaussian", seed=3, workers=1, progress=False)
    noisify_store(b, noiser="gaussian", seed=3, workers=2, progress=False)
    n = Store(a).n_frames
    assert s["frames"] == n and s["keys"] == ["front_depth_noisy"]
    out = _noisy(a)
    np.testing.assert_array_equal(out, _noisy(b))  # whatever the number of workers
    arr = zarr.open_group(a)["data/front_depth_noisy"]
    assert arr.shape == (n, 240, 320) and arr.dtype == np.uint16 and arr.shards[0] < n
    meta = arr.attrs["noisify"]
    assert meta["complete"] and meta["config"]["noiser"] == "gaussian" and meta["config"]["seed"] == 3
    assert meta["config"]["params"]["sigma"] > 0 and arr.attrs["derived"]
    clean = zarr.open_group(a)["data/front_depth"][:]
    valid = (clean > 0) & (out > 0)
    diff = out[valid].astype(float) - clean[valid]
    assert 3 < diff.std() < 30 and abs(diff.mean()) < 1  # millimetres: noise, not a shift
    assert np.all(out[clean == 0] == 0)
    # The store still reads as a simgen store, and episodes include the noisy depth in metres.
    ep = Store(a).episode(0, ["front_depth", "front_depth_noisy"])
    assert ep["front_depth_noisy"].dtype == np.float32
    c = noisify_store(
        tmp_path / "a.zarr", noiser="gaussian", seed=4, workers=1, progress=False, suffix="seed4"
    )
    assert c["keys"] == ["front_depth_seed4"] and not np.array_equal(_noisy(a, "front_depth_seed4"), out)


def test_range_scale_gives_a_camera_the_sensor_built_smaller(store, tmp_path):
    a = tmp_path / "a.zarr"
    shutil.copytree(store, a)
    noisify_store(a, noiser="gaussian", seed=3, workers=1, progress=False, suffix="full")
    noisify_store(
        a, noiser="gaussian", seed=3, workers=1, progress=False, suffix="half", range_scale={"front": 0.5}
    )
    clean = zarr.open_group(a)["data/front_depth"][:].astype(float)
    full, half = _noisy(a, "front_depth_full").astype(float), _noisy(a, "front_depth_half").astype(float)
    both = (full > 0) & (half > 0)
    # z' = 0.5 * (z / 0.5 + sigma n): the same draws, half the error (up to the stored 1 mm steps)
    assert np.abs((half - clean)[both] - 0.5 * (full - clean)[both]).max() <= 1.0
    assert (full - clean)[both].std() > 5
    arr = zarr.open_group(a)["data/front_depth_half"]
    assert arr.attrs["noisify"]["config"]["range_scale"] == 0.5
    assert "range_scale" not in zarr.open_group(a)["data/front_depth_full"].attrs["noisify"]["config"]
    with pytest.raises(ValueError, match="--range-scale names wrist"):
        noisify_store(a, noiser="gaussian", progress=False, suffix="x", range_scale={"wrist": 0.5})


def test_killed_run_resumes_to_the_same_result(store, tmp_path):
    ref, cut = tmp_path / "ref.zarr", tmp_path / "cut.zarr"
    shutil.copytree(store, ref)
    shutil.copytree(store, cut)
    noisify_store(ref, noiser="structured-light", workers=1, progress=False)
    noisify_store(cut, noiser="structured-light", workers=1, progress=False)
    # State of a run killed after its first shard: later shards unrecorded (and unwritten).
    arr = zarr.open_group(cut)["data/front_depth_noisy"]
    meta = dict(arr.attrs["noisify"])
    first = meta["done"][0]
    meta["done"], meta["complete"] = [first], False
    arr.attrs["noisify"] = meta
    arr[first[1] :] = 0
    s = noisify_store(cut, noiser="structured-light", workers=2, progress=False)
    assert s["frames_noisified"] == Store(cut).n_frames - first[1]
    np.testing.assert_array_equal(_noisy(cut), _noisy(ref))


def test_refuses_to_overwrite_and_rejects_bad_input(store, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(store, path)
    p = run_realdiff("noisify", path, "--noiser", "gaussian", "--quiet")
    assert p.returncode == 0, p.stderr
    before = tree_digest(path)
    assert_one_line_error(
        run_realdiff("noisify", path, "--noiser", "gaussian", "--quiet"), "exists and is complete"
    )
    assert_one_line_error(run_realdiff("noisify", path, "--noiser", "identity", "--quiet"), "other settings")
    assert_one_line_error(run_realdiff("noisify", path, "--noiser", "perlin", "--quiet"), "perlin")
    assert_one_line_error(run_realdiff("noisify", path, "--cameras", "top", "--quiet"), "no camera 'top'")
    assert tree_digest(path) == before
    assert run_realdiff("noisify", path, "--noiser", "identity", "--overwrite", "--quiet").returncode == 0
    np.testing.assert_array_equal(_noisy(path), zarr.open_group(path)["data/front_depth"][:])
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").attrs["x"] = 1
    assert_one_line_error(run_realdiff("noisify", other, "--quiet"), "not a simgen store")
    # A store whose depth is float with a NaN: refused before anything is written.
    bad = tmp_path / "nan.zarr"
    shutil.copytree(store, bad)
    g = zarr.open_group(bad, mode="r+")
    depth = g["data/front_depth"][:].astype(np.float32) / 1000
    depth[5, 10, 10] = np.nan
    del g["data/front_depth"]
    g["data"].create_array("front_depth", data=depth, chunks=(1, 240, 320))
    before = tree_digest(bad)
    assert_one_line_error(run_realdiff("noisify", bad, "--quiet"), "NaN")
    assert tree_digest(bad) == before


def test_render_can_extend_a_noisified_store(store, tmp_path):
    path = tmp_path / "grow.zarr"
    shutil.copytree(store, path)
    noisify_store(path, noiser="gaussian", workers=1, progress=False)
    n = Store(path).n_frames
    run_cli(
        "render",
        "--task",
        "pick",
        "--episodes",
        3,
        "--out",
        path,
        "--cameras",
        "front",
        "--resolution",
        "320x240",
        "--no-rgb",
        "--quiet",
        check=True,
    )
    s = Store(path)
    assert s.n_episodes == 3 and s.n_frames > n
    r = noisify_store(path, noiser="gaussian", workers=1, progress=False)
    per_shard = shard_frames(320 * 240 * 2)
    assert r["frames_noisified"] == s.n_frames - (n // per_shard) * per_shard  # unfinished shard redone
    assert _noisy(path).shape[0] == s.n_frames


@pytest.mark.slow  # test_killed_run_resumes_to_the_same_result covers resuming in `make test`
def test_sigkill_then_rerun_equals_an_uninterrupted_run(store, tmp_path):
    import signal
    import time

    ref, path = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    shutil.copytree(store, ref)
    shutil.copytree(store, path)
    args = ["noisify", "--noiser", "structured-light", "--seed", "5", "--workers", "1", "--quiet"]
    assert run_realdiff(*args[:1], ref, *args[1:]).returncode == 0
    rng = np.random.default_rng(1)
    for _ in range(4):
        p = subprocess.Popen(
            [sys.executable, "-m", "realdiff", args[0], str(path), *args[1:]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(float(rng.uniform(0.5, 3.0)))
        workers = spawned_workers(p.pid)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert_workers_exit(workers)  # no orphan goes on writing the store
        Store(path)  # still opens as a simgen store
        if p.returncode == 0:
            break
    arr = zarr.open_group(path)["data"]
    if "front_depth_noisy" in arr and arr["front_depth_noisy"].attrs["noisify"]["complete"]:
        np.testing.assert_array_equal(_noisy(path), _noisy(ref))
    else:
        assert run_realdiff(*args[:1], path, *args[1:]).returncode == 0
        np.testing.assert_array_equal(_noisy(path), _noisy(ref))


def test_default_noiser_is_reald2iff_and_independent_of_workers(store, tmp_path):
    """`realdiff noisify store.zarr` with no flag: the committed RealD²iff Kinect model, same result
    for 1 and 2 worker processes, readings only where the clean depth has one, realistic size."""
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    shutil.copytree(store, a)
    shutil.copytree(store, b)
    p = run_realdiff("noisify", a, "--quiet", "--workers", "1")
    assert p.returncode == 0, p.stderr
    assert DEFAULT_NOISER in p.stdout
    run_realdiff("noisify", b, "--quiet", "--workers", "2", check=True)
    out, clean = _noisy(a), zarr.open_group(a)["data/front_depth"][:]
    np.testing.assert_array_equal(out, _noisy(b))
    meta = zarr.open_group(a)["data/front_depth_noisy"].attrs["noisify"]
    assert meta["config"]["noiser"] == DEFAULT_NOISER and meta["complete"]
    assert np.all(out[clean == 0] == 0)
    valid = (clean > 0) & (out > 0)
    holes = np.mean(~(out[clean > 0] > 0))
    diff = np.abs(out[valid].astype(float) - clean[valid])
    assert 0.005 < holes < 0.3 and 0.5 < np.median(diff) < 20  # some holes; mm-scale noise


def test_other_weights_at_the_same_path_are_other_settings(store, tmp_path):
    """A model file replaced between runs (retrained in place) is another model: the output made
    with the first is not resumed or skipped with the second (the weights' SHA-1 is recorded)."""
    import torch

    from realdiff.reald2iff.checkpoint import save_model
    from realdiff.reald2iff.config import make_config
    from realdiff.reald2iff.model import RealD2iff
    from tests.conftest import TINY_PRESET

    path, weights = tmp_path / "s.zarr", tmp_path / "m.pt"
    shutil.copytree(store, path)
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_model(RealD2iff(make_config(TINY_PRESET).model), weights)
        if seed == 0:
            noisify_store(path, noiser=str(weights), workers=1, progress=False)
            meta = zarr.open_group(path)["data/front_depth_noisy"].attrs["noisify"]
            assert len(meta["config"]["fingerprint"]) == 12
    before = tree_digest(path)
    assert_one_line_error(run_realdiff("noisify", path, "--noiser", weights, "--quiet"), "other settings")
    assert tree_digest(path) == before


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory):
    """One pick episode at 64x64 with both cameras: the front camera sees the table at about 1 m,
    the wrist camera the gripper's surroundings at 4-30 cm."""
    out = tmp_path_factory.mktemp("nz2") / "pick.zarr"
    run_cli(
        "render",
        "--task",
        "pick",
        "--episodes",
        1,
        "--out",
        out,
        "--resolution",
        "64x64",
        "--no-rgb",
        "--quiet",
        check=True,
    )
    return out


def _warnings(stderr):
    return [line for line in stderr.splitlines() if "warning" in line]


def test_warns_for_a_camera_outside_the_sensors_working_range(two_cameras, tmp_path):
    """The default noiser imitates a Kinect v1 (0.8-4.0 m): the wrist camera's depth lies nearly all
    nearer, the front camera's mostly within. One warning line for the wrist, the run goes on, and
    the check is recorded in each output's provenance."""
    path = tmp_path / "s.zarr"
    shutil.copytree(two_cameras, path)
    p = run_realdiff("noisify", path, "--quiet", "--workers", "1")
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines == _warnings(p.stderr), p.stderr
    assert "wrist: " in lines[0] and "front" not in lines[0]
    assert f"of depth readings lie outside {DEFAULT_NOISER}'s working range 0.8-4.0 m" in lines[0]
    assert "(Microsoft Kinect v1)" in lines[0] and "--range-scale wrist=S" in lines[0]
    data = zarr.open_group(path)["data"]
    wrist, front = (data[f"{c}_depth_noisy"].attrs["noisify"] for c in ("wrist", "front"))
    assert wrist["complete"] and front["complete"]  # the run went on
    assert wrist["range_check"]["outside"] > 0.5 and wrist["range_check"]["warning"] in lines[0]
    assert wrist["range_check"]["range_m"] == [0.8, 4.0] and wrist["range_check"]["frames_sampled"] > 0
    assert front["range_check"]["outside"] < 0.5 and "warning" not in front["range_check"]
    # The sensor built 10 times smaller (0.08-0.4 m) fits the wrist camera: no warning, and the
    # provenance records the scaled range.
    p = run_realdiff(
        "noisify",
        path,
        "--noiser",
        "gaussian",
        "--range-scale",
        "wrist=0.1",
        "--quiet",
        "--workers",
        "1",
        "--overwrite",
    )
    assert p.returncode == 0 and not _warnings(p.stderr), p.stderr
    check = zarr.open_group(path)["data/wrist_depth_noisy"].attrs["noisify"]["range_check"]
    assert check["range_m"] == [0.08, 0.4] and check["outside"] < 0.5 and "warning" not in check
    # A noiser without a sensor (identity) has no range to check.
    p = run_realdiff("noisify", path, "--noiser", "identity", "--quiet", "--overwrite")
    assert p.returncode == 0 and not _warnings(p.stderr), p.stderr
    assert "range_check" not in zarr.open_group(path)["data/wrist_depth_noisy"].attrs["noisify"]


def test_range_check_counts_the_range_scale(two_cameras, tmp_path):
    from realdiff.noisify import range_check

    store = Store(two_cameras)
    full = range_check(store, "wrist", "structured-light")
    small = range_check(store, "wrist", "structured-light", 0.1)
    assert full["outside"] > 0.9 and "warning" in full
    assert small["outside"] < 0.5 and "warning" not in small
    assert "at --range-scale wrist=0.1" not in full["warning"]
    half = range_check(store, "wrist", "gaussian", 0.5)
    assert "0.4-2.0 m at --range-scale wrist=0.5" in half["warning"] and "2 times smaller" in half["warning"]
    assert range_check(store, "wrist", "identity") is None


def test_per_camera_noisers(two_cameras, tmp_path):
    """`--noiser front=A,wrist=B`: each camera its own noiser, recorded in its output's provenance;
    each camera's frames are seeded as with one noiser, so front=gaussian gives the front camera
    exactly what --noiser gaussian does."""
    path = tmp_path / "s.zarr"
    shutil.copytree(two_cameras, path)
    one = noisify_store(path, noiser="gaussian", seed=2, workers=1, progress=False, suffix="one")
    assert one["noiser"] == "gaussian" and one["noisers"] == {"front": "gaussian", "wrist": "gaussian"}
    warned = []
    both = noisify_store(
        path,
        noiser="front=gaussian,wrist=identity",
        seed=2,
        workers=1,
        progress=False,
        suffix="two",
        warn=warned.append,
    )
    assert both["noiser"] == "front=gaussian,wrist=identity" and not warned  # identity: no sensor
    assert both["noisers"] == {"front": "gaussian", "wrist": "identity"}
    data = zarr.open_group(path)["data"]
    np.testing.assert_array_equal(data["front_depth_two"][:], data["front_depth_one"][:])
    np.testing.assert_array_equal(data["wrist_depth_two"][:], data["wrist_depth"][:])
    assert (
        data["front_depth_two"].attrs["noisify"]["config"]
        == data["front_depth_one"].attrs["noisify"]["config"]
    )
    assert data["wrist_depth_two"].attrs["noisify"]["config"]["noiser"] == "identity"
    # One item without a camera: the noiser of the cameras not named; a dict works as well.
    s = noisify_store(
        path, noiser="identity,front=gaussian", seed=2, workers=1, progress=False, suffix="three"
    )
    assert s["noisers"] == {"front": "gaussian", "wrist": "identity"}
    np.testing.assert_array_equal(data["front_depth_three"][:], data["front_depth_one"][:])
    s = noisify_store(
        path,
        noiser={"wrist": "gaussian"},
        cameras=["wrist"],
        seed=2,
        workers=1,
        progress=False,
        suffix="four",
        warn=warned.append,
    )
    assert s["noisers"] == {"wrist": "gaussian"} and len(warned) == 1 and warned[0].startswith("wrist: ")
    np.testing.assert_array_equal(data["wrist_depth_four"][:], data["wrist_depth_one"][:])
    # Bad forms: one error line, the store unchanged.
    before = tree_digest(path)
    for spec, fragment in [
        ("top=gaussian", "--noiser names top, not among the cameras (front, wrist)"),
        ("front=gaussian,front=identity", "--noiser names front more than once"),
        ("front=,wrist=gaussian", "use CAMERA=NOISER"),
        ("gaussian,identity,wrist=gaussian", "2 noisers without a camera"),
        ("front=perlin", "unknown noise model 'perlin'"),
    ]:
        assert_one_line_error(
            run_realdiff("noisify", path, "--noiser", spec, "--quiet", "--out-key", "x"), fragment
        )
    assert tree_digest(path) == before
