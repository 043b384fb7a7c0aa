"""Items 6, 7 and 10: store layout, crash safety and resume, determinism across workers."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from simgen.store import (
    DEPTH_UNIT_M,
    SCHEMA,
    SCHEMA_VERSION,
    Store,
    Writer,
    depth_from_stored,
    depth_to_stored,
)
from tests.conftest import assert_workers_exit, run_cli, spawned_workers

RENDER = ["render", "--task", "pick", "--cameras", "front,wrist", "--resolution", "64x48", "--quiet"]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "pick.zarr"
    run_cli(*RENDER, "--episodes", 3, "--seed", 7, "--out", out, "--seg", check=True)
    return out


def test_layout_and_attributes(small_store):
    root = zarr.open_group(small_store, mode="r")
    assert root.metadata.zarr_format == 3
    meta = root.attrs[SCHEMA]
    assert meta["schema_version"] == SCHEMA_VERSION and meta["task"] == "pick"
    assert meta["control_hz"] == 20 and meta["engine"]["mujoco"] == "3.9.0"
    assert meta["depth"]["unit_m"] == DEPTH_UNIT_M and meta["depth"]["dtype"] == "uint16"
    assert [e["seed"] for e in meta["episodes"]] == [7, 8, 9]
    front, wrist = meta["cameras"]["front"], meta["cameras"]["wrist"]
    assert front["width"] == 64 and front["height"] == 48 and np.array(front["K"]).shape == (3, 3)
    assert np.array(front["extrinsics"]).shape == (4, 4) and wrist["extrinsics"] is None
    ends = root["meta/episode_ends"][:]
    assert ends.dtype == np.int64 and len(ends) == 3 and np.all(np.diff(ends) > 0)
    n = ends[-1]
    data = root["data"]
    expect = {
        "action": (10,),
        "robot_qpos": (7,),
        "gripper_qpos": (2,),
        "eef_pos": (3,),
        "eef_quat": (4,),
        "object_pose": (1, 7),
        "front_extrinsics": (4, 4),
        "wrist_extrinsics": (4, 4),
        "front_depth": (48, 64),
        "wrist_depth": (48, 64),
        "front_rgb": (48, 64, 3),
        "wrist_rgb": (48, 64, 3),
        "front_seg": (48, 64),
        "wrist_seg": (48, 64),
    }
    assert sorted(k for k, _ in data.arrays()) == sorted(expect)
    for k, shape in expect.items():
        a = data[k]
        assert a.shape == (n, *shape), k
        if k.endswith(("_depth", "_rgb", "_seg")):
            assert a.chunks == (1, *shape), k  # one frame per chunk
            assert type(a.compressors[0]).__name__ == "BloscCodec"
    assert data["front_depth"].dtype == np.uint16
    # Fixed camera: the per-frame extrinsics equal the nominal ones in the attributes.
    assert np.allclose(data["front_extrinsics"][0], front["extrinsics"], atol=1e-5)
    # The wrist camera moves with the hand.
    assert np.ptp(data["wrist_extrinsics"][:, :3, 3], axis=0).max() > 0.05
    assert set(np.unique(data["front_seg"][:]).tolist()) >= {2, 3, 5}  # table, robot, cube


def test_reader_gives_metric_depth(small_store):
    s = Store(small_store)
    ep = s.episode(1)
    assert ep["front_depth"].dtype == np.float32
    valid = ep["front_depth"][ep["front_depth"] > 0]
    assert 0.5 < np.median(valid) < 2.5  # metres from the front camera to the table
    assert len(ep["action"]) == s.episodes[1]["length"]


def test_depth_codec_round_trip():
    d = np.array([[0.0, 0.0004, 0.0006, 1.2344], [65.5, 3.0, 70.0, 0.0]], np.float32)
    mm = depth_to_stored(d)
    assert mm.dtype == np.uint16 and mm.tolist() == [[0, 0, 1, 1234], [65500, 3000, 0, 0]]
    assert np.allclose(depth_from_stored(mm)[0, 3], 1.234)
    for bad in (np.array([np.nan]), np.array([-0.1])):
        with pytest.raises(ValueError):
            depth_to_stored(bad)


def _arrays(path):
    root = zarr.open_group(path, mode="r")
    out = {k: a[:] for k, a in root["data"].arrays()}
    out["episode_ends"] = root["meta/episode_ends"][:]
    return out, root.attrs[SCHEMA]["episodes"]


def _assert_same(a, b):
    (xa, ea), (xb, eb) = a, b
    assert sorted(xa) == sorted(xb)
    for k in xa:
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)
    assert ea == eb


def test_same_seed_same_arrays_whatever_workers(tmp_path):
    one, two = tmp_path / "w1.zarr", tmp_path / "w2.zarr"
    run_cli(*RENDER, "--episodes", 4, "--seed", 3, "--out", one, "--workers", 1, check=True)
    run_cli(*RENDER, "--episodes", 4, "--seed", 3, "--out", two, "--workers", 2, check=True)
    _assert_same(_arrays(one), _arrays(two))


def test_half_committed_episode_is_invisible_and_repaired(tmp_path, small_store):
    """The narrowest crash window: data rows and episode_ends grown, the last end not written."""
    import shutil

    path = tmp_path / "crashed.zarr"
    shutil.copytree(small_store, path)
    root = zarr.open_group(path, mode="r+")
    ends = root["meta/episode_ends"]
    for _, a in root["data"].arrays():
        a.resize((a.shape[0] + 5, *a.shape[1:]))
    ends.resize((4,))  # fill value 0 where the new end would be
    s = Store(path)
    assert s.n_episodes == 3 and s.n_frames == int(ends[2])
    with Writer(path, {}, zarr.open_group(path).attrs[SCHEMA]["config"]) as w:
        assert w.n_episodes == 3
    root = zarr.open_group(path, mode="r")
    assert root["meta/episode_ends"].shape == (3,)
    assert all(a.shape[0] == s.n_frames for _, a in root["data"].arrays())


@pytest.mark.parametrize("stage", ["lock", "root", "skeleton", "skeleton without root"])
def test_killed_while_creating_the_store_is_rebuilt(tmp_path, stage):
    """A run killed between creating the folder and writing the schema attributes (written last)
    leaves a lock file and a zarr skeleton without attributes; the next Writer rebuilds it."""
    from simgen.store import LOCK_FILE, StoreError

    path = tmp_path / "new.zarr"
    path.mkdir()
    (path / LOCK_FILE).touch()
    if stage != "lock":
        root = zarr.open_group(path, mode="a")
        if stage.startswith("skeleton"):
            root.create_group("data")
            root.create_group("meta").create_array("episode_ends", shape=(0,), dtype="int64")
        if stage == "skeleton without root":  # its metadata files are written concurrently
            (path / "zarr.json").unlink()
    with Writer(path, {"task": "x"}, {"seed": 1}) as w:
        w.append_many([({"action": np.zeros((3, 2), np.float32)}, {"seed": 1, "length": 3})])
    s = Store(path)
    assert s.n_episodes == 1 and s.meta["task"] == "x" and (path / LOCK_FILE).exists()
    # A folder with anything more than that skeleton is someone else's data: refused, untouched.
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").create_group("data").create_array("x", shape=(2,), dtype="f4")
    with pytest.raises(StoreError, match="not a simgen store"):
        Writer(other, {}, {})
    assert "x" in zarr.open_group(other, mode="r")["data"]
    (other / "zarr.json").unlink()  # holding data, it is not a skeleton even without its root
    with pytest.raises(StoreError, match="not a zarr store"):
        Writer(other, {}, {})
    assert (other / "data" / "x" / "zarr.json").is_file()


def _committed(path) -> int:
    try:
        return Store(path).n_episodes
    except Exception:  # not created yet, or being written right now
        return 0


@pytest.mark.slow  # in `make test`: a half-committed episode repaired (here), a killed batch job (test_batch)
def test_sigkill_at_any_moment_then_rerun_completes(tmp_path):
    """Kill `simgen render` with SIGKILL at several moments; each time the store opens with only
    whole episodes, and re-running the same command finishes it identical to a clean run."""
    ref, path = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    args = [*RENDER, "--episodes", 6, "--seed", 11, "--rgb", "--commit-frames", 1]
    run_cli(*args, "--out", ref, check=True)
    cmd = [sys.executable, "-m", "simgen", *map(str, args), "--out", str(path)]
    rng = np.random.default_rng(0)
    seen_partial = False
    for _attempt in range(6):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill at a random moment once this run has committed an episode (however loaded the
        # machine is, so the kill lands mid-run).
        start = _committed(path)
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 120 and _committed(path) <= start:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 1.0)))
        workers = spawned_workers(p.pid)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert_workers_exit(workers)  # even one blocked on the full result queue
        if not path.exists():
            continue
        s = Store(path)  # opens
        n = s.n_episodes
        seen_partial |= 0 < n < 6
        assert [e["seed"] for e in s.episodes] == list(range(11, 11 + n))
        for i in range(n):
            ep = s.episode(i, ["action", "front_depth"])
            assert len(ep["action"]) == s.episodes[i]["length"] == len(ep["front_depth"])
        if n == 6:
            break
    assert seen_partial, "no kill landed mid-run; the test did not exercise resume"
    run_cli(*args, "--out", path, check=True)
    _assert_same(_arrays(ref), _arrays(path))
    # A further re-run has nothing to do and changes nothing.
    p = run_cli(*args, "--out", path, check=True)
    assert "wrote 0 episodes" in p.stdout
    _assert_same(_arrays(ref), _arrays(path))


def test_extending_a_store_appends_the_next_seeds(tmp_path):
    path = tmp_path / "grow.zarr"
    run_cli(*RENDER, "--episodes", 1, "--seed", 5, "--out", path, "--no-rgb", check=True)
    run_cli(*RENDER, "--episodes", 2, "--seed", 5, "--out", path, "--no-rgb", check=True)
    assert [e["seed"] for e in Store(path).episodes] == [5, 6]


def test_a_dead_render_worker_is_reported_not_waited_for():
    import multiprocessing as mp

    from simgen.runner import RenderConfig, render_episodes

    # 10 seeds per worker: with at most 4 results queued, worker 0 cannot have finished its share
    # (and exited normally) by the time it is killed
    cfg = RenderConfig(
        task="pick", episodes=20, cameras=("front",), width=32, height=32, rgb=False, workers=2
    )
    gen = render_episodes(cfg, list(range(20)))
    arrays, info = next(gen)
    assert info["seed"] == 0 and arrays["front_depth"].dtype == np.uint16
    workers = mp.active_children()
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="worker died"):
        for _ in gen:
            pass
    assert not any(p.is_alive() for p in workers)
