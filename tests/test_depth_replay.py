"""`simgen depth`: a robosuite:Lift store exported to robomimic HDF5 (`simgen export`), its depth
dropped, gets the very same depth, K and extrinsics back by replaying its stored MuJoCo states; bad
input is one line and exit code 2 with the file untouched; a run stopped midway resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import h5py
import numpy as np
import pytest

from interop import depth_replay
from interop.depth_replay import add_depth, sidecar_path
from interop.robosuite_replay import remap_asset_paths, resolve_assets
from simgen.cli import main
from simgen.runner import RenderConfig, render_dataset
from simgen.store import Store

W = H = 48
CAMS = {"front": "agentview", "wrist": "robot0_eye_in_hand"}  # the store's -> robosuite's
RS_CAMS = ",".join(CAMS.values())


def without_depth(path) -> None:
    """Drop every depth and extrinsics dataset of a robomimic file."""
    with h5py.File(path, "r+") as f:
        for demo in f["data"].values():
            for group in ("obs", "next_obs"):
                for key in [k for k in demo[group] if k.endswith("_extrinsics") or "_depth" in k]:
                    del demo[group][key]


def with_copies(dataset, path, n: int) -> None:
    """`dataset` with demo_0 copied to demo_1 .. demo_{n-1}, as `path`."""
    shutil.copyfile(dataset, path)
    with h5py.File(path, "r+") as f:
        for i in range(1, n):
            f.copy(f["data/demo_0"], f["data"], f"demo_{i}")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("lift") / "lift.zarr"
    cfg = RenderConfig(
        task="robosuite:Lift", episodes=1, seed=3, cameras=tuple(CAMS), width=W, height=H, rgb=False
    )
    render_dataset(cfg, str(out), progress=False)
    return Store(out)


@pytest.fixture(scope="module")
def dataset(store, tmp_path_factory):
    """The store exported to robomimic HDF5, its depth dropped (do not change it: copy it)."""
    path = tmp_path_factory.mktemp("rm") / "lift.hdf5"
    assert main(["export", str(store.path), "--format", "robomimic", str(path), "--quiet"]) == 0
    without_depth(path)
    return path


@pytest.fixture(scope="module")
def replayed(dataset, tmp_path_factory):
    path = tmp_path_factory.mktemp("replayed") / "lift.hdf5"
    shutil.copyfile(dataset, path)
    assert main(["depth", str(path), "--cameras", RS_CAMS, "--quiet"]) == 0
    return path


def check_same_as_store(path, store: Store, demos=1, cams=CAMS) -> None:
    ep = store.episode(0)
    for i in range(demos):
        with h5py.File(path, "r") as f:
            g = f[f"data/demo_{i}"]
            for cam, rs in cams.items():
                depth = ep[f"{cam}_depth"][..., None]  # metres, as the store gives them
                extrinsics = ep[f"{cam}_extrinsics"]
                d, e = g[f"obs/{rs}_depth"], g[f"obs/{rs}_extrinsics"]
                assert d.dtype == np.float32 and d.shape == depth.shape
                assert np.array_equal(d[:], depth), cam  # bit for bit
                assert np.array_equal(e[:], extrinsics) and e.dtype == np.float32, cam
                assert np.array_equal(np.asarray(d.attrs["K"]), store.meta["cameras"][cam]["K"]), cam
                assert d.attrs["unit"] == "m" and d.attrs["no_reading"] == 0
                assert d.attrs["convention"] == "z-depth, upright (row 0 = top)"
                n_d, n_e = g[f"next_obs/{rs}_depth"][:], g[f"next_obs/{rs}_extrinsics"][:]
                assert np.array_equal(n_d[:-1], depth[1:]) and np.array_equal(n_d[-1], depth[-1])
                assert np.array_equal(n_e[:-1], extrinsics[1:]) and np.array_equal(n_e[-1], extrinsics[-1])
    assert not sidecar_path(path).exists()


def test_replay_gives_the_stores_depth_k_and_extrinsics(store, replayed):
    assert store.array("sim_state").dtype == np.float64
    check_same_as_store(replayed, store)
    with h5py.File(replayed, "r") as f:  # what was there is kept
        assert np.array_equal(f["data/demo_0/states"][:], store.episode(0)["sim_state"])


def test_existing_depth_is_refused_then_overwritten(store, replayed, tmp_path, capsys):
    path = tmp_path / "again.hdf5"
    shutil.copyfile(replayed, path)
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["depth", str(path), "--cameras", "agentview", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "agentview_depth exists; pass --overwrite" in err
    assert path.read_bytes() == before
    assert main(["depth", str(path), "--cameras", RS_CAMS, "--overwrite", "--quiet"]) == 0
    check_same_as_store(path, store)


def _drop_states(path):
    with h5py.File(path, "r+") as f:
        del f["data/demo_0/states"]


def _not_robomimic(path):
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)


def _not_hdf5(path):
    path.write_text("not hdf5\n")


def _foreign_assets(path):
    with h5py.File(path, "r+") as f:
        g = f["data/demo_0"]
        g.attrs["model_file"] = g.attrs["model_file"].replace(
            'file="robosuite/', 'file="/nowhere/robosuite_x/'
        )


def test_asset_paths_of_another_machine_point_at_this_ones():
    home = str(Path(find_spec("robosuite").origin).parent)
    xml = (
        '<mujoco><asset><mesh file="/home/u/robosuite/robosuite/models/assets/a.stl"/>'
        '<texture file="robosuite/models/assets/t.png"/>'
        '<mesh file="/opt/mimicgen_envs/models/robosuite/assets/m.stl"/></asset></mujoco>'
    )
    out = remap_asset_paths(xml)
    assert f'file="{home}/models/assets/a.stl"' in out and f'file="{home}/models/assets/t.png"' in out
    assert 'file="/opt/mimicgen_envs/models/robosuite/assets/m.stl"' in out  # MimicGen: not installed here
    with pytest.raises(ValueError, match="model asset not found: .*a.stl; the dataset was made with other"):
        resolve_assets(xml)
    with pytest.raises(ValueError, match="m.stl; install mimicgen"):
        resolve_assets(xml.replace("/home/u/robosuite/robosuite/models/assets/a.stl", f"{home}/__init__.py"))


@pytest.mark.parametrize(
    "damage,args,message",
    [
        (None, ["--cameras", "agentview,frontview_x"], "unknown camera 'frontview_x'"),
        (_drop_states, ["--cameras", "agentview"], "data/demo_0 has no states to replay"),
        (_not_robomimic, ["--cameras", "agentview"], "not a robomimic dataset"),
        (_not_hdf5, ["--cameras", "agentview"], "not an HDF5 file"),
        (_foreign_assets, ["--cameras", "agentview"], "model asset not found: /nowhere/"),
        (None, ["--cameras", "agentview", "--width", "32"], "give both --width and --height"),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_file_untouched(
    dataset, tmp_path, capsys, damage, args, message
):
    path = tmp_path / "bad.hdf5"
    shutil.copyfile(dataset, path)
    if damage is not None:
        damage(path)
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["depth", str(path), *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert path.read_bytes() == before and not sidecar_path(path).exists()


def test_a_stopped_run_resumes_where_it_stopped(store, dataset, tmp_path, monkeypatch):
    """Two demos, one camera; the run stops on the second demo: the file is untouched, the first
    demo's result kept beside it, and the next run renders only the second."""
    path = tmp_path / "two.hdf5"
    with_copies(dataset, path, 2)
    before = path.read_bytes()
    render = depth_replay.render_demo

    def stop_on_second(folder, demo, *a):
        if demo == "demo_1":
            raise KeyboardInterrupt
        return render(folder, demo, *a)

    monkeypatch.setattr(depth_replay, "render_demo", stop_on_second)
    with pytest.raises(KeyboardInterrupt):
        add_depth(path, ["agentview"], workers=1, progress=False)
    assert path.read_bytes() == before and sidecar_path(path).is_dir()
    monkeypatch.setattr(depth_replay, "render_demo", render)
    assert add_depth(path, ["agentview"], workers=1, progress=False)["rendered"] == 1
    check_same_as_store(path, store, demos=2, cams={"front": "agentview"})


@pytest.mark.slow
def test_killed_worker_run_resumes_with_the_same_result(store, dataset, tmp_path):
    """`simgen depth --workers 2` killed once a demo is done, then re-run: the same arrays."""
    path = tmp_path / "many.hdf5"
    with_copies(dataset, path, 6)
    cmd = [
        sys.executable,
        "-m",
        "simgen",
        "depth",
        str(path),
        "--cameras",
        RS_CAMS,
        "--workers",
        "2",
        "--quiet",
    ]
    p = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 120
    while not list(sidecar_path(path).glob("demo_*__agentview_depth.npy")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    with h5py.File(path, "r") as f:
        assert "agentview_depth" not in f["data/demo_0/obs"]
    out = subprocess.run(cmd, check=True, timeout=300, capture_output=True, text=True).stdout
    rendered = int(out.split("; ")[1].split()[0])
    assert 0 < rendered < 6, out
    check_same_as_store(path, store, demos=6)


def test_noisify_reads_robosuites_normalised_upside_down_depth(replayed, store, tmp_path):
    """Depth as robomimic's own conversion writes it (robosuite's normalised buffer, upside down,
    no unit) is read as the metric depth it encodes: identity noise gives the store's depth back."""
    from interop.robomimic import demo_model
    from realdiff.noisify_datasets import noisify_hdf5

    path = tmp_path / "normalised.hdf5"
    shutil.copyfile(replayed, path)
    with h5py.File(path, "r+") as f:
        m = demo_model(f, "demo_0")
        near, far = m.vis.map.znear * m.stat.extent, m.vis.map.zfar * m.stat.extent
        for group in ("obs", "next_obs"):
            g = f[f"data/demo_0/{group}"]
            for rs in CAMS.values():
                d = g[f"{rs}_depth"][:].astype(np.float64)
                z = np.where(d > 0, (1 - near / np.maximum(d, 1e-9)) / (1 - near / far), 1.0)
                del g[f"{rs}_depth"]
                g[f"{rs}_depth"] = z[:, ::-1].astype(np.float32)  # upside down, no attributes
    s = noisify_hdf5(path, noiser="identity", progress=False, workers=1)
    assert s["cameras"] == sorted(CAMS.values())
    ep = store.episode(0)
    with h5py.File(path, "r") as f:
        for cam, rs in CAMS.items():
            got = f[f"data/demo_0/obs/{rs}_depth_noisy"]
            want = ep[f"{cam}_depth"]
            np.testing.assert_array_equal(got[..., 0] == 0, want == 0)  # holes where the store has them
            assert np.abs(got[..., 0] - want).max() <= 0.0010001  # the same millimetre, rounding aside
            assert json.loads(got.attrs["noisify"])["convention"] == "robosuite"
            np.testing.assert_allclose(got.attrs["K"], store.meta["cameras"][cam]["K"], atol=1e-6)
