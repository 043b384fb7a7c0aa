"""`realdiff noisify` on robomimic HDF5 and LeRobot datasets (and on Ray): the same noise as in a store,
next_obs following obs, resume, refusals, bad input leaving the file untouched."""

import json
import shutil

import h5py
import numpy as np
import pytest

from interop.hdf5 import Sidecar
from plumbing.backends import ray_session
from realdiff.noisify import noisify_store
from realdiff.noisify_datasets import noisify_hdf5, noisify_path
from simgen.runner import RenderConfig, render_dataset
from simgen.store import Store
from tests.conftest import assert_one_line_error, run_realdiff, tree_digest

CAMS = ("front", "wrist")


def robomimic_file(store_path, out, metric=True) -> None:
    """A robomimic-layout HDF5 dataset holding a simgen store's depth: demo_i per episode, obs and
    next_obs (obs shifted by one step, last repeated), as robomimic's own conversion lays it out."""
    s = Store(store_path)
    with h5py.File(out, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "simgen:pick", "type": 0, "env_kwargs": {}})
        for i in range(s.n_episodes):
            g = data.create_group(f"demo_{i}")
            ep = s.episode(i)
            g.create_dataset("actions", data=ep["action"])
            for c in CAMS:
                d = ep[f"{c}_depth"][..., None]
                for group, v in (("obs", d), ("next_obs", np.concatenate([d[1:], d[-1:]]))):
                    ds = g.require_group(group).create_dataset(f"{c}_depth", data=v)
                    if metric:
                        ds.attrs.update(unit="m", no_reading=0, K=np.asarray(s.meta["cameras"][c]["K"]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A pick store (2 episodes, front and wrist at 48x48) and the same depth as a robomimic file."""
    tmp = tmp_path_factory.mktemp("h5")
    cfg = RenderConfig(task="pick", episodes=2, cameras=CAMS, width=48, height=48, rgb=False, workers=1)
    render_dataset(cfg, tmp / "pick.zarr", progress=False)
    robomimic_file(tmp / "pick.zarr", tmp / "pick.hdf5")
    return tmp / "pick.zarr", tmp / "pick.hdf5"


def _demo_depth(path, key, group="obs"):
    with h5py.File(path, "r") as f:
        n = len(f["data"])
        return np.concatenate([f[f"data/demo_{i}/{group}/{key}"][..., 0] for i in range(n)])


def test_same_noise_as_the_store_and_next_obs_follows_obs(dataset, tmp_path):
    store, h5 = tmp_path / "s.zarr", tmp_path / "d.hdf5"
    shutil.copytree(dataset[0], store)
    shutil.copy(dataset[1], h5)
    noisify_store(store, noiser="front=structured-light,wrist=gaussian", workers=1, progress=False)
    s = noisify_hdf5(h5, noiser="front=structured-light,wrist=gaussian", workers=2, progress=False)
    assert s["keys"] == ["front_depth_noisy", "wrist_depth_noisy"]
    assert not (tmp_path / "d.hdf5.noisify-noisy").exists()  # the sidecar goes once committed
    st = Store(store)
    for c in CAMS:
        want = st.array(f"{c}_depth_noisy")[:]
        got = _demo_depth(h5, f"{c}_depth_noisy")
        np.testing.assert_array_equal(np.rint(got * 1000).astype(np.uint16), want)
    with h5py.File(h5, "r") as f:
        for i in range(2):
            obs = f[f"data/demo_{i}/obs/front_depth_noisy"]
            nxt = f[f"data/demo_{i}/next_obs/front_depth_noisy"][:]
            np.testing.assert_array_equal(nxt[:-1], obs[1:])  # one reading noisified once
            assert obs.dtype == np.float32 and obs.shape[1:] == (48, 48, 1)
            assert obs.attrs["unit"] == "m" and obs.attrs["source"] == "front_depth"
            prov = json.loads(obs.attrs["noisify"])
            assert prov["config"]["noiser"] == "structured-light" and prov["convention"] == "metric"
            np.testing.assert_allclose(obs.attrs["K"], st.meta["cameras"]["front"]["K"])
        assert np.any(nxt[-1] != obs[-1])  # the last next_obs is a reading of its own


def test_ray_gives_the_same_arrays_as_local_processes(dataset, tmp_path):
    store, h5 = tmp_path / "s.zarr", tmp_path / "d.hdf5"
    shutil.copytree(dataset[0], store)
    shutil.copy(dataset[1], h5)
    kw = dict(noiser="gaussian", progress=False, cameras=["front"])
    noisify_store(store, workers=2, **kw)
    noisify_hdf5(h5, workers=2, **kw)
    with ray_session(workers=2):  # one local Ray with 2 CPUs for both runs
        noisify_store(store, backend="ray", workers=2, suffix="ray", **kw)
        noisify_hdf5(h5, backend="ray", workers=2, suffix="ray", **kw)
    st = Store(store)
    np.testing.assert_array_equal(st.array("front_depth_ray")[:], st.array("front_depth_noisy")[:])
    for group in ("obs", "next_obs"):
        np.testing.assert_array_equal(
            _demo_depth(h5, "front_depth_ray", group), _demo_depth(h5, "front_depth_noisy", group)
        )


def test_resumes_from_its_sidecar_and_refuses_other_settings(dataset, tmp_path):
    ref, cut = tmp_path / "ref.hdf5", tmp_path / "cut.hdf5"
    shutil.copy(dataset[1], ref)
    shutil.copy(dataset[1], cut)
    noisify_hdf5(ref, noiser="gaussian", progress=False, workers=1)
    # A run that finished its pieces but could not write (no such folder for --out) keeps them.
    with pytest.raises(FileNotFoundError):
        noisify_hdf5(cut, noiser="gaussian", progress=False, workers=1, out=tmp_path / "no" / "x.hdf5")
    side = Sidecar(f"{cut}.noisify-noisy")
    pieces = sorted(side.folder.glob("*.npy"))
    for p in pieces[::2]:  # as if killed midway
        p.unlink()
    before = tree_digest(tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        noisify_hdf5(cut, noiser="identity", progress=False)
    assert tree_digest(tmp_path) == before
    s = noisify_hdf5(cut, noiser="gaussian", progress=False, workers=1)
    assert 0 < s["frames_noisified"] < 2 * s["frames"]
    for group in ("obs", "next_obs"):
        np.testing.assert_array_equal(
            _demo_depth(cut, "front_depth_noisy", group), _demo_depth(ref, "front_depth_noisy", group)
        )


def test_bad_input_is_one_line_and_leaves_the_file_untouched(dataset, tmp_path):
    h5 = tmp_path / "d.hdf5"
    shutil.copy(dataset[1], h5)
    assert (
        run_realdiff("noisify", h5, "--noiser", "gaussian", "--cameras", "front", "--quiet").returncode == 0
    )
    before = tree_digest(tmp_path)
    assert_one_line_error(run_realdiff("noisify", h5, "--cameras", "front", "--quiet"), "exists; --overwrite")
    assert_one_line_error(
        run_realdiff("noisify", h5, "--cameras", "top", "--quiet"), "no depth obs/top_depth"
    )
    assert tree_digest(tmp_path) == before
    nan = tmp_path / "nan.hdf5"
    shutil.copy(dataset[1], nan)
    with h5py.File(nan, "r+") as f:
        f["data/demo_1/obs/wrist_depth"][3, 5, 5, 0] = np.nan
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros((2, 4, 4))
    unitless = tmp_path / "unitless.hdf5"
    shutil.copy(dataset[1], unitless)
    with h5py.File(unitless, "r+") as f:
        for i in range(2):
            del f[f"data/demo_{i}/obs/front_depth"].attrs["unit"]
    before = tree_digest(tmp_path)
    assert_one_line_error(
        run_realdiff("noisify", nan, "--noiser", "gaussian", "--workers", 1, "--quiet"), "NaN"
    )
    with pytest.raises(ValueError, match="not a robomimic HDF5 dataset"):
        noisify_path(other, progress=False)
    with pytest.raises(ValueError, match="--depth-convention metric"):
        noisify_path(unitless, progress=False)
    shutil.rmtree(
        tmp_path / "nan.hdf5.noisify-noisy", ignore_errors=True
    )  # what the failed run finished is kept for a rerun
    assert tree_digest(tmp_path) == before


def test_lerobot_dataset_gains_noisy_depth_that_lerobot_loads(dataset, tmp_path):
    from interop.export import export
    from interop.lerobot import lerobot_dataset_class

    store = tmp_path / "s.zarr"
    shutil.copytree(dataset[0], store)
    export(store, "lerobot", tmp_path / "lr", cameras=["front"], progress=False)
    noisify_store(store, noiser="gaussian", cameras=["front"], workers=1, progress=False)
    s = noisify_path(tmp_path / "lr", noiser="gaussian", workers=2, progress=False)
    assert s["keys"] == ["observation.depth.front_noisy"] and s["frames"] == Store(store).n_frames
    assert not (tmp_path / "lr.noisify-noisy").exists()
    ds = lerobot_dataset_class()("simgen/pick", root=tmp_path / "lr")
    want = Store(store).array("front_depth_noisy")[:]
    for i in (0, len(want) // 2, len(want) - 1):
        got = ds[i]["observation.depth.front_noisy"].numpy()[..., 0]
        np.testing.assert_array_equal(np.rint(got * 1000).astype(np.uint16), want[i])
    feat = ds.meta.features["observation.depth.front_noisy"]
    assert feat["info"]["noisify"]["config"]["noiser"] == "gaussian" and feat["info"]["unit"] == "m"
    with pytest.raises(ValueError, match="exists; --overwrite"):
        noisify_path(tmp_path / "lr", noiser="gaussian", progress=False)


def test_dp3_zarr_gains_noisy_depth_and_its_point_cloud(dataset, tmp_path):
    """Noisifying a DP3 export equals exporting the noisified store: depth and point clouds."""
    import zarr

    from interop.export import export

    store = tmp_path / "s.zarr"
    shutil.copytree(dataset[0], store)
    export(store, "dp3", tmp_path / "clean", cameras=["front"], progress=False)
    noisify_store(store, noiser="gaussian", cameras=["front"], workers=1, progress=False)
    export(store, "dp3", tmp_path / "noisy", cameras=["front"], noisy_only=True, progress=False)
    s = noisify_path(tmp_path / "clean", noiser="gaussian", workers=2, progress=False)
    assert s["keys"] == ["depth_noisy", "point_cloud_noisy"]
    a, b = zarr.open_group(tmp_path / "clean", mode="r"), zarr.open_group(tmp_path / "noisy", mode="r")
    assert a["data/depth_noisy"].metadata.zarr_format == 2 and a["data/depth_noisy"].attrs["complete"]
    np.testing.assert_array_equal(a["data/depth_noisy"][:], b["data/depth"][:])
    np.testing.assert_array_equal(a["data/point_cloud_noisy"][:], b["data/point_cloud"][:])
    with pytest.raises(ValueError, match="exists; --overwrite"):
        noisify_path(tmp_path / "clean", noiser="gaussian", progress=False)


@pytest.mark.slow  # test_resumes_from_its_sidecar_and_refuses_other_settings covers resuming in `make test`
def test_sigkill_then_rerun_equals_an_uninterrupted_run(dataset, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "big.hdf5"
    shutil.copy(dataset[1], big)
    with h5py.File(big, "r+") as f:  # 16 demos: long enough to be killed midway
        for i in range(2, 16):
            f.copy(f[f"data/demo_{i % 2}"], f["data"], f"demo_{i}")
    ref, cut = tmp_path / "ref.hdf5", tmp_path / "cut.hdf5"
    shutil.copy(big, ref)
    shutil.copy(big, cut)
    noisify_hdf5(ref, cameras=["front"], workers=1, progress=False)
    before = tree_digest(cut)
    p = subprocess.Popen(
        [sys.executable, "-m", "realdiff", "noisify", cut, "--cameras", "front", "--workers", "1", "--quiet"],
        stderr=subprocess.DEVNULL,
    )
    side = tmp_path / "cut.hdf5.noisify-noisy"
    deadline = time.time() + 120
    while len(list(side.glob("*.npy"))) < 3 and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    shutil.copytree(side, tmp_path / "kept")
    shutil.rmtree(side)
    assert tree_digest(cut) == before  # the killed run left the file as it was
    shutil.copytree(tmp_path / "kept", side)
    s = noisify_hdf5(cut, cameras=["front"], workers=2, progress=False)
    assert 0 < s["frames_noisified"] < s["frames"] + 16
    for group in ("obs", "next_obs"):
        np.testing.assert_array_equal(
            _demo_depth(cut, "front_depth_noisy", group), _demo_depth(ref, "front_depth_noisy", group)
        )
