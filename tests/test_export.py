"""`simgen export`: a store read back by LeRobot's, robomimic's and zarr v2's own loaders, with the
same depth frames (metres, holes kept), actions, boundaries, success flags and task; --noisy-only;
one-line errors that leave OUT untouched."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
import zarr

from interop.export import export
from interop.source import NOISIFY_TOOL
from simgen.cli import main
from simgen.store import Store
from tests.conftest import tree_digest


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two pick episodes at 32x32 (front and wrist, RGB), with gaussian noisy depth."""
    from realdiff.noisify import TOOL, noisify_store
    from simgen.runner import RenderConfig, render_dataset

    assert TOOL == NOISIFY_TOOL
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("export") / "pick.zarr"
    render_dataset(RenderConfig(task="pick", episodes=2, width=32, height=32), str(out), progress=False)
    noisify_store(out, noiser="gaussian", seed=1, workers=1, progress=False, warn=lambda m: None)
    return out


@pytest.fixture(scope="module")
def frames(store):
    """The store's arrays over all frames, depth in metres."""
    s = Store(store)
    eps = [s.episode(i) for i in range(s.n_episodes)]
    return {k: np.concatenate([e[k] for e in eps]) for k in eps[0]}


def _ends(store) -> list[int]:
    return Store(store).episode_ends.tolist()


def test_lerobot_round_trip(store, frames, tmp_path, monkeypatch):
    import datasets.config  # LeRobot imports datasets: its arrow cache of the parquet goes to tmp_path

    from interop.lerobot import lerobot_dataset_class

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    out = tmp_path / "lerobot"
    export(store, "lerobot", out, progress=False)
    ds = lerobot_dataset_class()("simgen/pick", root=out, video_backend="pyav")
    s = Store(store)
    assert len(ds) == s.n_frames and ds.num_episodes == 2 and ds.fps == s.meta["control_hz"]
    eps = ds.meta.episodes
    assert list(eps["dataset_to_index"]) == _ends(store)
    assert list(eps["success"]) == [e["success"] for e in s.episodes]
    assert list(eps["seed"]) == [e["seed"] for e in s.episodes]
    info = ds.meta.info["features"]
    assert info["observation.depth.front"]["info"]["K"] == s.meta["cameras"]["front"]["K"]
    assert info["observation.depth.front_noisy"]["info"]["noisify"]["config"]["noiser"] == "gaussian"
    for i in range(len(ds)):
        item = ds[i]
        assert item["task"] == s.meta["task_description"]
        for cam in ("front", "wrist"):
            depth = item[f"observation.depth.{cam}"].numpy()[..., 0]
            np.testing.assert_array_equal(depth, frames[f"{cam}_depth"][i])  # metres, holes (0) kept
            np.testing.assert_array_equal(
                item[f"observation.depth.{cam}_noisy"].numpy()[..., 0], frames[f"{cam}_depth_noisy"][i]
            )
            np.testing.assert_array_equal(
                item[f"observation.extrinsics.{cam}"].numpy(), frames[f"{cam}_extrinsics"][i]
            )
            rgb = (item[f"observation.images.{cam}"].numpy() * 255).round().astype(np.uint8)
            np.testing.assert_array_equal(rgb.transpose(1, 2, 0), frames[f"{cam}_rgb"][i])
        np.testing.assert_array_equal(item["action"].numpy(), frames["action"][i])
        np.testing.assert_array_equal(item["observation.state"].numpy()[:7], frames["robot_qpos"][i])
    assert (frames["front_depth"] == 0).any()  # the store has holes, and they came back as holes
    assert json.loads((out / "meta" / "simgen.json").read_text())["task"] == "pick"


def test_robomimic_round_trip(store, frames, tmp_path):
    import robomimic.utils.dataset as rm_dataset
    import robomimic.utils.obs_utils as obs_utils

    out = tmp_path / "pick.hdf5"
    export(store, "robomimic", out, progress=False)
    depth_keys = ["front_depth", "front_depth_noisy", "wrist_depth"]
    obs_utils.initialize_obs_modality_mapping_from_dict(
        {"low_dim": ["robot0_eef_pos", "robot0_eef_quat"], "rgb": ["front_image"], "depth": depth_keys}
    )
    keys = ["robot0_eef_pos", "robot0_eef_quat", "front_image", *depth_keys]
    ds = rm_dataset.SequenceDataset(
        hdf5_path=str(out),
        obs_keys=keys,
        dataset_keys=["actions", "rewards", "dones"],
        hdf5_cache_mode=None,
        hdf5_use_swmr=False,
    )
    assert len(ds) == Store(store).n_frames
    for i in range(len(ds)):
        item = ds[i]
        for k in depth_keys:
            np.testing.assert_array_equal(item["obs"][k][0, ..., 0], frames[k][i])
        np.testing.assert_array_equal(item["obs"]["front_image"][0], frames["front_rgb"][i])
        np.testing.assert_array_equal(item["actions"][0], frames["action"][i])
        np.testing.assert_array_equal(item["obs"]["robot0_eef_quat"][0], frames["eef_quat"][i][[1, 2, 3, 0]])
    with h5py.File(out, "r") as f:
        data = f["data"]
        assert data.attrs["total"] == len(ds)
        env = json.loads(data.attrs["env_args"])
        assert env["env_name"] == "simgen:pick" and env["type"] == 0
        assert env["env_kwargs"]["camera_names"] == ["front", "wrist"]
        s = Store(store)
        for i, e in enumerate(s.episodes):
            g = data[f"demo_{i}"]
            assert g.attrs["num_samples"] == e["length"] and g.attrs["success"] == e["success"]
            assert g.attrs["seed"] == e["seed"] and g["rewards"][-1] == 1.0 and g["dones"][-1] == 1
            obs, nxt = g["obs/front_depth"], g["next_obs/front_depth"]
            np.testing.assert_array_equal(nxt[:-1], obs[1:])
            np.testing.assert_array_equal(nxt[-1], obs[-1])
            assert set(g["obs"]) >= {
                "robot0_joint_pos",
                "robot0_gripper_qpos",
                "object_pose",
                "wrist_extrinsics",
            }
        depth = data["demo_0/obs/front_depth"]
        assert depth.shape == (s.episodes[0]["length"], 32, 32, 1) and depth.dtype == np.float32
        assert depth.attrs["unit"] == "m" and depth.attrs["no_reading"] == 0 and "noisify" not in depth.attrs
        np.testing.assert_array_equal(depth.attrs["K"], s.meta["cameras"]["front"]["K"])
        noisy = data["demo_0/obs/front_depth_noisy"]
        assert json.loads(noisy.attrs["noisify"])["config"]["noiser"] == "gaussian"
        assert sorted(f["mask/train"][:].tolist() + f["mask/valid"][:].tolist()) == [b"demo_0", b"demo_1"]


def test_dp3_zarr_v2(store, frames, tmp_path):
    out = tmp_path / "pick_dp3.zarr"
    assert main(["export", str(store), "--format", "dp3", str(out), "--points", "32", "--quiet"]) == 0
    assert (out / "data" / "depth" / ".zarray").is_file() and not (out / "zarr.json").exists()
    root = zarr.open_group(out, mode="r", zarr_format=2)
    assert json.loads((out / "data" / "point_cloud" / ".zarray").read_text())["compressor"]["id"] == "blosc"
    np.testing.assert_array_equal(root["meta/episode_ends"][:], _ends(store))
    np.testing.assert_array_equal(root["data/depth"][:], frames["front_depth"])  # front: the first camera
    np.testing.assert_array_equal(root["data/depth_noisy"][:], frames["front_depth_noisy"])
    np.testing.assert_array_equal(root["data/img"][:], frames["front_rgb"])
    np.testing.assert_array_equal(root["data/action"][:], frames["action"])
    assert root["data/state"].shape == (len(frames["action"]), 16)
    pc = root["data/point_cloud"][:]
    assert pc.shape == (len(frames["action"]), 32, 6)
    box = root.attrs["simgen"]["point_cloud"]["workspace"]["box"]
    xyz = pc[..., :3].reshape(-1, 3)
    assert np.all(xyz[:, 0] >= box[0]) and np.all(xyz[:, 2] > 0.8)  # above the table top
    assert np.all((pc[..., 3:] >= 0) & (pc[..., 3:] <= 1))
    again = tmp_path / "again.zarr"
    main(["export", str(store), "--format", "dp3", str(again), "--points", "32", "--quiet"])
    np.testing.assert_array_equal(zarr.open_group(again, mode="r")["data/point_cloud"][:], pc)  # seeded


def test_noisy_only_drops_clean_depth(store, frames, tmp_path):
    out = tmp_path / "train.hdf5"
    assert main(["export", str(store), "--format", "robomimic", str(out), "--noisy-only", "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        obs = f["data/demo_0/obs"]
        assert "front_depth" not in obs and "wrist_depth" not in obs
        t = f["data/demo_0"].attrs["num_samples"]
        np.testing.assert_array_equal(obs["front_depth_noisy"][..., 0], frames["front_depth_noisy"][:t])
    dp3 = tmp_path / "train_dp3.zarr"
    assert (
        main(["export", str(store), "--format", "dp3", str(dp3), "--noisy-only", "--points", "8", "--quiet"])
        == 0
    )
    root = zarr.open_group(dp3, mode="r", zarr_format=2)
    np.testing.assert_array_equal(root["data/depth"][:], frames["front_depth_noisy"])
    assert "depth_noisy" not in root["data"]


def test_bad_input_is_one_line_and_leaves_out_untouched(store, tmp_path, capsys):
    def fails(args, fragment):
        capsys.readouterr()
        try:
            code = main(["export", *map(str, args), "--quiet"])
        except SystemExit as e:  # a usage mistake: argparse exits
            code = e.code
        assert code == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], lines

    out = tmp_path / "taken.hdf5"
    out.write_bytes(b"mine")
    fails([store, "--format", "robomimic", out], "exists; --overwrite")
    assert out.read_bytes() == b"mine"
    fails([tmp_path, "--format", "robomimic", tmp_path / "x.hdf5"], "not a zarr store")
    fails([store, "--format", "rlds", tmp_path / "x"], "invalid choice")
    fails(
        [store, "--format", "lerobot", tmp_path / "x", "--noisy-only", "--noisy-key", "kinect"],
        "front_depth_kinect",
    )
    fails([store, "--format", "dp3", tmp_path / "x", "--workspace", "0,1,0,1,0"], "6 numbers")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    before = tree_digest(store)
    fails([store, "--format", "dp3", store / "inside"], "inside the store")
    assert tree_digest(store) == before
    # --overwrite replaces OUT (a folder here) and a stale OUT.partial of a killed export.
    folder, stale = tmp_path / "d.zarr", tmp_path / "d.zarr.partial"
    folder.mkdir()
    (folder / "old").write_text("x")
    shutil.copytree(folder, stale)
    assert main(["export", str(store), "--format", "dp3", str(folder), "--overwrite", "--quiet"]) == 0
    assert not (folder / "old").exists() and not stale.exists() and (folder / "data").is_dir()


@pytest.mark.slow  # renders robosuite's Lift (about 10 s)
def test_robomimic_export_of_a_robosuite_task(tmp_path):
    import robomimic.utils.dataset as rm_dataset
    import robomimic.utils.obs_utils as obs_utils

    from simgen.controller import rot6d_to_mat, rotation_matrix
    from simgen.runner import RenderConfig, render_dataset

    store = tmp_path / "lift.zarr"
    render_dataset(
        RenderConfig(task="robosuite:Lift", episodes=1, width=32, height=32), str(store), progress=False
    )
    out = tmp_path / "lift.hdf5"
    export(store, "robomimic", out, progress=False)
    s = Store(store)
    ep = s.episode(0)
    with h5py.File(out, "r") as f:
        env = json.loads(f["data"].attrs["env_args"])
        assert env["env_name"] == "Lift" and env["type"] == 1
        kw = env["env_kwargs"]
        assert kw["camera_names"] == ["agentview", "robot0_eye_in_hand"] and kw["camera_depths"]
        assert kw["camera_heights"] == 32 and kw["control_freq"] == s.meta["control_hz"]
        assert kw["controller_configs"]["body_parts"]["right"]["input_type"] == "absolute"
        g = f["data/demo_0"]
        assert g.attrs["model_file"] == s.meta["robosuite"]["model_xml"]
        np.testing.assert_array_equal(g["states"][:], ep["sim_state"])
        np.testing.assert_array_equal(g["obs/agentview_depth"][..., 0], ep["front_depth"])
        np.testing.assert_array_equal(g["obs/robot0_eye_in_hand_extrinsics"][:], ep["wrist_extrinsics"])
        a = g["actions"][:]
        assert a.shape == (len(ep["action"]), 7)
        for got, sent in zip(a, ep["action"].astype(float)):  # what RobosuiteEnv.step passed to robosuite
            np.testing.assert_allclose(rotation_matrix(got[3:6]), rot6d_to_mat(sent[3:9]), atol=1e-9)
            assert got[6] == 2 * sent[9] - 1
    obs_utils.initialize_obs_modality_mapping_from_dict({"depth": ["agentview_depth"]})
    ds = rm_dataset.SequenceDataset(
        str(out), ["agentview_depth"], ["actions"], hdf5_cache_mode="all", hdf5_use_swmr=False
    )
    np.testing.assert_array_equal(ds[3]["obs"]["agentview_depth"][0, ..., 0], ep["front_depth"][3])
