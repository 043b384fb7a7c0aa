"""policies: the sequence sampler, training, saved runs, closed-loop evaluation and bad input."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli

from policies.data import PolicyData, crop, crop_size, quat_to_rot6d, window_indices
from policies.evaluate import Policy, evaluate, load_run, wilson_interval
from policies.model import DiffusionPolicy, PolicyConfig
from policies.train import TrainConfig, train
from simgen.store import StoreError, depth_from_stored

# A small network so tests train in seconds; images are 64x64 here.
SMALL = PolicyConfig(crop=0.875, enc_widths=(8, 16), feat_dim=16, down_dims=(32, 64))  # 56 of 64 px


def run_policies(*args, **kw):
    return run_cli(*args, prog="policies", **kw)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """3 pick demonstrations at 64x64 with gaussian-noisified depth as *_depth_noisy."""
    from realdiff.noisify import noisify_store
    from simgen.runner import RenderConfig, render_dataset

    path = tmp_path_factory.mktemp("pol") / "tiny.zarr"
    render_dataset(
        RenderConfig(task="pick", episodes=3, width=64, height=64, rgb=False), str(path), progress=False
    )
    noisify_store(path, noiser="gaussian", workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("pol") / "run"
    train(
        str(tiny_store),
        str(out),
        "front_depth_noisy",
        ["front", "wrist"],
        "pick",
        SMALL,
        TrainConfig(steps=4, batch=4, ckpt_every=2),
        progress=False,
    )
    return out


# --- the sequence sampler -----------------------------------------------------------------------


def test_windows_stay_in_their_episode_and_pad_with_its_edge_steps():
    # episodes of 5 and 3 steps; horizon 4, obs horizon 2 (pad 1 before), action horizon 3 (pad 2 after)
    w = window_indices(np.array([5, 8]), horizon=4, pad_before=1, pad_after=2)
    first = w[w[:, -1] < 5]
    second = w[w[:, 0] >= 5]
    assert len(first) + len(second) == len(w)  # no window crosses an episode boundary
    # episode 0: starts -1..3 (5 - 4 + 2 = 3): first row repeats step 0, the last repeats step 4
    assert first.tolist() == [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 4], [3, 4, 4, 4]]
    # episode 1 (rows 5..7), shorter than the horizon: starts -1..1
    assert second.tolist() == [[5, 5, 6, 7], [5, 6, 7, 7], [6, 7, 7, 7]]


def test_every_step_is_an_observation_of_some_window():
    ends = np.array([7, 19, 20])
    w = window_indices(ends, horizon=16, pad_before=1, pad_after=14)  # as PolicyData samples them
    assert sorted(w[:, 1].tolist()) == list(range(20))  # each step is the current observation once


def test_rot6d_of_quaternion_is_the_rotation_matrix():
    from scipy.spatial.transform import Rotation

    q = np.array([[0.9, 0.1, -0.3, 0.2], [0.0, 1.0, 0.0, 0.0]])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    R = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(quat_to_rot6d(q), np.concatenate([R[:, :, 0], R[:, :, 1]], 1), atol=1e-6)
    np.testing.assert_allclose(quat_to_rot6d(-q), quat_to_rot6d(q), atol=1e-6)  # sign-free


def test_batches_are_normalised_and_marked_where_depth_has_no_reading(tiny_store, capsys):
    data = PolicyData(tiny_store, "front_depth_noisy", ["front", "wrist"], 2, 16, cache_mb=1)
    assert "more than the 1 MB frame cache" in capsys.readouterr().err  # told it will be slow
    PolicyData(tiny_store, "front_depth_noisy", ["front", "wrist"], 2, 16)
    assert "frame cache" not in capsys.readouterr().err
    b = data.batch(np.arange(6), 0.875, np.random.default_rng(0))
    assert b["depth"]["front"].shape == (6, 2, 2, 56, 56)
    assert b["proprio"].shape == (6, 2, 11) and b["action"].shape == (6, 16, 10)
    assert b["action"].abs().max() <= 1.0 + 1e-5
    depth, valid = b["depth"]["wrist"][:, :, 0], b["depth"]["wrist"][:, :, 1]
    assert set(valid.unique().tolist()) <= {0.0, 1.0} and (depth[valid == 0] == 0).all()
    # a 1 MB cache holds fewer frames than the store: reads still match the store's frames
    raw = data.store.array("front_depth_noisy")
    rows = data.windows[[0, 40, 80], 1]
    np.testing.assert_array_equal(data.frames["front"].get(rows), raw.get_orthogonal_selection((rows,)))


def test_several_depth_copies_each_sequence_reads_one_for_all_its_cameras(tiny_store):
    data = PolicyData(tiny_store, "front_depth,front_depth_noisy", ["front", "wrist"], 2, 16)
    assert data.copies == [
        {"front": "front_depth", "wrist": "wrist_depth"},
        {"front": "front_depth_noisy", "wrist": "wrist_depth_noisy"},
    ]
    idx = np.arange(0, len(data), 3)
    b = data.batch(idx, 1.0, np.random.default_rng(0))  # a full-size crop: the frames as stored
    rows = data.windows[idx][:, :2]
    seen = []
    for c in ("front", "wrist"):
        as_copy = [
            data.normalizer.depth(
                c, depth_from_stored(data.store.array(keys[c]).get_orthogonal_selection((rows.ravel(),)))
            ).reshape(b["depth"][c].shape)
            for keys in data.copies
        ]
        got = b["depth"][c].numpy()
        match = np.array([[np.array_equal(got[i], a[i]) for a in as_copy] for i in range(len(idx))])
        assert match.any(1).all()  # every sample is one copy's frames, not a blend
        seen.append(match[:, 1])
    assert np.array_equal(seen[0], seen[1])  # the same copy for both cameras
    assert 0 < seen[0].mean() < 1  # both copies are drawn
    # without rng (the centre crop, for checks), the first copy
    b = data.batch(idx, 1.0, None)
    assert np.array_equal(
        b["depth"]["front"].numpy()[:, :, 1] > 0,
        depth_from_stored(data.store.array("front_depth").get_orthogonal_selection((rows.ravel(),))).reshape(
            len(idx), 2, 64, 64
        )
        > 0,
    )
    with pytest.raises(StoreError, match="no depth array 'front_depth_x'"):
        PolicyData(tiny_store, "front_depth,front_depth_x", ["front"], 2, 16)


# --- training, saving, reloading ------------------------------------------------------------------


def test_training_steps_lower_the_loss(tiny_store):
    torch.manual_seed(0)
    data = PolicyData(tiny_store, "front_depth", None, 2, 16)
    model = DiffusionPolicy(PolicyConfig(**{**SMALL.to_dict(), "cameras": ("front",)}))
    b = data.batch(np.arange(0, len(data), max(1, len(data) // 16)), 0.875, np.random.default_rng(0))

    def loss():
        return model.loss(b["depth"], b["proprio"], b["action"], torch.Generator().manual_seed(1))

    before = loss().item()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(15):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.7 * before


def test_saved_run_reloads_and_acts_identically_for_a_seed(tiny_run):
    bundle = load_run(tiny_run)
    assert bundle["task"] == "pick" and bundle["depth_keys"] == {
        "front": "front_depth_noisy",
        "wrist": "wrist_depth_noisy",
    }
    conf = json.loads((tiny_run / "config.json").read_text())
    assert conf["train"]["steps"] == 4 and conf["policy"]["crop"] == 0.875
    rng = np.random.default_rng(3)
    depth = {c: rng.uniform(0.3, 1.5, (64, 64)).astype(np.float32) for c in ("front", "wrist")}
    state = {
        "eef_pos": np.array([0.0, 0.1, 1.0]),
        "eef_quat": np.array([0.0, 1.0, 0.0, 0.0]),
        "gripper_qpos": np.array([0.04, -0.04]),
    }

    def actions(policy):
        return np.stack([policy.act(depth, state, np.random.default_rng(7)) for _ in range(3)])

    a, b = actions(Policy(load_run(tiny_run))), actions(Policy(load_run(tiny_run)))
    np.testing.assert_array_equal(a, b)
    # the file holds the EMA weights of the last checkpoint
    ema = torch.load(tiny_run / "checkpoint.pt", weights_only=True)["ema"]
    policy = Policy(bundle)
    policy.model.load_state_dict(ema)
    np.testing.assert_array_equal(actions(policy), a)
    assert a.shape == (3, 10) and np.isfinite(a).all()


def test_the_crop_is_a_fraction_of_any_image():
    assert crop_size(128, 128, 0.97) == (124, 124)  # the default keeps 124 px of simgen's 128
    assert crop_size(64, 64, 0.97) == (62, 62) and crop_size(84, 84, 0.97) == (81, 81)
    assert crop_size(96, 160, 0.875) == (84, 140)
    images = np.arange(2 * 3 * 96 * 160, dtype=np.float32).reshape(2, 3, 96, 160)
    assert crop(images, 0.875, None).shape == (2, 3, 84, 140)
    assert crop(images, 0.875, np.random.default_rng(0)).shape == (2, 3, 84, 140)
    assert np.array_equal(crop(images, 1.0, np.random.default_rng(0)), images)
    with pytest.raises(ValueError, match="fraction of each image side"):
        PolicyConfig(crop=124)


@pytest.mark.parametrize("resolution", ["84x84", "96x96", "96x64"])
def test_train_and_eval_at_diffusion_policy_resolutions(resolution, tmp_path):
    """Stores rendered at the resolutions diffusion-policy users render at, square or not, train
    with the default crop and act in closed loop."""
    from simgen.runner import RenderConfig, render_dataset

    w, h = map(int, resolution.split("x"))
    store = tmp_path / "s.zarr"
    render_dataset(
        RenderConfig(task="pick", episodes=1, cameras=("front",), width=w, height=h, rgb=False),
        str(store),
        progress=False,
    )
    small = PolicyConfig(enc_widths=(8, 16), feat_dim=16, down_dims=(32, 64))  # the default crop, 0.97
    data = PolicyData(store, "front_depth", None, 2, 16)
    assert data.batch(np.arange(2), small.crop, np.random.default_rng(0))["depth"]["front"].shape[-2:] == (
        round(0.97 * h),
        round(0.97 * w),
    )
    train(
        str(store),
        str(tmp_path / "run"),
        "front_depth",
        None,
        "pick",
        small,
        TrainConfig(steps=2, batch=2),
        progress=False,
    )
    r = evaluate(tmp_path / "run", "pick", episodes=1, workers=1, videos=0, max_steps=3, progress=False)
    assert r["episodes_detail"][0]["steps"] == 3


def test_a_policy_saved_with_its_crop_in_pixels_loads_with_the_same_crop(tiny_run, tmp_path):
    bundle = torch.load(tiny_run / "policy.pt", weights_only=True)
    bundle["version"] = "policy-1"
    bundle["config"]["policy"]["crop"] = 56  # pixels of the 64x64 training images
    (tmp_path / "old").mkdir()
    torch.save(bundle, tmp_path / "old" / "policy.pt")
    old = load_run(tmp_path / "old")
    assert old["config"]["policy"]["crop"] == 0.875 and Policy(old).cfg.crop == 0.875


def test_killed_training_resumes_to_the_same_weights(tiny_store, tmp_path):
    cfg = dict(steps=60, batch=4, ckpt_every=2, threads=1)
    straight = tmp_path / "straight"
    train(
        str(tiny_store), str(straight), "front_depth", None, "pick", SMALL, TrainConfig(**cfg), progress=False
    )
    killed = tmp_path / "killed"
    code = (
        "import sys; sys.path.insert(0, 'tests'); from test_policies import SMALL; "
        "from policies.train import train, TrainConfig; "
        f"train({str(tiny_store)!r}, {str(killed)!r}, 'front_depth', None, 'pick', SMALL, "
        f"TrainConfig(**{cfg!r}), progress=False); import time; time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    step = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert step < 60 and not (killed / "policy.pt").exists()  # killed part-way
    # resumed with a smaller frame cache (a speed setting, not part of the run's identity)
    train(
        str(tiny_store),
        str(killed),
        "front_depth",
        None,
        "pick",
        SMALL,
        TrainConfig(**cfg, cache_mb=1),
        progress=False,
    )
    a, b = load_run(straight)["state_dict"], load_run(killed)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [[json.loads(line)["step"] for line in open(r / "log.jsonl")] for r in (straight, killed)]
    assert logged[0] == logged[1]  # steps logged after the last checkpoint are redone, not repeated


# --- evaluation --------------------------------------------------------------------------------


def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(45, 50)
    assert abs(lo - 0.7864) < 1e-3 and abs(hi - 0.9565) < 1e-3
    assert wilson_interval(0, 10)[0] == 0.0 and abs(wilson_interval(10, 10)[1] - 1.0) < 1e-12


def test_eval_calls_a_module_function_sensor_with_the_documented_arguments(tiny_run, tmp_path, monkeypatch):
    (tmp_path / "my_sensor.py").write_text(
        "import numpy as np\n"
        "CALLS = []\n"
        "def drop_half(depth, K, rng):\n"
        "    CALLS.append((depth.shape, str(depth.dtype), np.asarray(K).tolist(), type(rng).__name__,\n"
        "                  float(depth.max())))\n"
        "    out = depth.copy()\n"
        "    out[:, :, : depth.shape[2] // 2] = 0\n"
        "    return out\n"
    )
    monkeypatch.chdir(tmp_path)
    r = evaluate(
        tiny_run,
        "pick",
        episodes=1,
        sensor="my_sensor:drop_half",
        workers=1,
        videos=1,
        out=tmp_path / "ev",
        max_steps=12,
        progress=False,
    )
    import my_sensor

    K = load_run(tiny_run)["cameras"]
    assert len(my_sensor.CALLS) == 2 * 12  # two cameras, every step
    for shape, dtype, k, rng_type, dmax in my_sensor.CALLS:
        assert shape == (1, 64, 64) and dtype == "float32" and rng_type == "Generator" and dmax > 0.1
        assert k in (K["front"]["K"], K["wrist"]["K"])
    assert r["episodes"] == 1 and r["successes"] in (0, 1) and len(r["ci95"]) == 2
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert saved["sensor"] == "my_sensor:drop_half" and saved["episodes_detail"][0]["steps"] == 12
    # what the sensor's output depends on is recorded, so that another version's results are not reused
    assert saved["sensor_model"] == {"noiser": "callable:drop_half", "version": "0", "params": {}}
    assert (tmp_path / "ev" / "episode_100000.mp4").stat().st_size > 1000


def test_eval_range_scale_gives_a_camera_the_sensor_built_smaller(tiny_run, tmp_path, monkeypatch):
    (tmp_path / "scale_probe.py").write_text(
        "import numpy as np\n"
        "CALLS = []\n"
        "def record(depth, K, rng):\n"
        "    CALLS.append(float(depth.max()))\n"
        "    return depth.copy()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import scale_probe

    maxima = []
    for scale in (None, {"wrist": 0.5}):
        scale_probe.CALLS.clear()
        evaluate(
            tiny_run,
            "pick",
            episodes=1,
            sensor="scale_probe:record",
            workers=1,
            videos=0,
            out=tmp_path / str(scale),
            max_steps=4,
            progress=False,
            range_scale=scale,
        )
        maxima.append(list(scale_probe.CALLS))
        assert json.loads((tmp_path / str(scale) / "results.json").read_text())["range_scale"] == (
            scale or {}
        )
    cams = load_run(tiny_run)["config"]["policy"]["cameras"]
    assert len(maxima[0]) == len(maxima[1]) == 4 * len(cams)
    for i, (m0, m1) in enumerate(zip(*maxima)):
        # the sensor sees the front depth unchanged and the wrist's at twice the range (z / 0.5);
        # its output is scaled back, so the policy sees the same depth and acts the same
        assert m1 == pytest.approx(m0 * (2 if cams[i % len(cams)] == "wrist" else 1), rel=1e-6)
    with pytest.raises(ValueError, match="--range-scale names side"):
        evaluate(
            tiny_run,
            "pick",
            episodes=1,
            sensor="clean",
            workers=1,
            out=tmp_path / "x",
            range_scale={"side": 0.5},
            progress=False,
        )


def test_eval_is_reproducible_whatever_the_worker_count(tiny_run, tmp_path):
    runs = [
        evaluate(
            tiny_run,
            "pick",
            episodes=2,
            sensor="noiser:gaussian",
            workers=w,
            videos=0,
            out=tmp_path / str(w),
            max_steps=10,
            progress=False,
        )
        for w in (1, 2)
    ]
    assert runs[0]["episodes_detail"] == runs[1]["episodes_detail"]
    assert [e["steps"] for e in runs[0]["episodes_detail"]] == [10, 10]
    # the two episodes differ (seeds 100000 and 100001): the rollouts are not all the same
    assert runs[0]["episodes_detail"][0]["final_eef_pos"] != runs[0]["episodes_detail"][1]["final_eef_pos"]


# --- bad input: one clear line, exit code 2 -------------------------------------------------------


def test_bad_depth_key_and_cameras(tiny_store, tmp_path):
    p = run_policies(
        "train", tiny_store, "--task", "pick", "--depth-key", "front_depth_sl", "--out", tmp_path / "r"
    )
    assert_one_line_error(p, "no depth array 'front_depth_sl'")
    assert "front_depth_noisy" in p.stderr  # says what there is
    p = run_policies(
        "train",
        tiny_store,
        "--task",
        "pick",
        "--depth-key",
        "front_depth",
        "--cameras",
        "front,side",
        "--out",
        tmp_path / "r",
    )
    assert_one_line_error(p, "no camera 'side'")
    p = run_policies(
        "train", tiny_store, "--task", "stack", "--depth-key", "front_depth", "--out", tmp_path / "r"
    )
    assert_one_line_error(p, "holds task 'pick', not 'stack'")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_stores_missing_arrays_or_of_another_schema(tiny_store, tmp_path):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(tiny_store, broken)
    shutil.rmtree(broken / "data" / "eef_quat")
    p = run_policies("train", broken, "--task", "pick", "--depth-key", "front_depth", "--out", tmp_path / "r")
    assert_one_line_error(p, "missing arrays eef_quat")
    from conftest import make_fixture_pairs

    make_fixture_pairs(tmp_path / "pairs.zarr")
    p = run_policies(
        "train",
        tmp_path / "pairs.zarr",
        "--task",
        "pick",
        "--depth-key",
        "front_depth",
        "--out",
        tmp_path / "r",
    )
    assert_one_line_error(p, "not a simgen store")


def test_eval_refuses_a_run_of_another_task_and_bad_sensors(tiny_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    bundle = load_run(tiny_run)
    bundle["task"] = "stack"
    torch.save(bundle, other / "policy.pt")
    p = run_policies("eval", other, "--task", "pick", "--episodes", "1")
    assert_one_line_error(p, "is a policy for task 'stack', not 'pick'")
    p = run_policies("eval", tiny_run, "--task", "pick", "--sensor", "noiser:nope")
    assert_one_line_error(p, "unknown noise model 'nope'")
    p = run_policies("eval", tiny_run, "--task", "pick", "--sensor", "no_such_module:f")
    assert_one_line_error(p, "cannot import 'no_such_module'")
    p = run_policies("eval", tmp_path, "--task", "pick")
    assert_one_line_error(p, "no trained policy")


def test_is_noisified_tells_finished_arrays(tiny_store, tmp_path):
    from realdiff.noisify import is_noisified

    assert is_noisified(tiny_store, "front_depth_noisy") and is_noisified(tiny_store, "wrist_depth_noisy")
    assert not is_noisified(tiny_store, "front_depth_other")
    assert not is_noisified(tiny_store, "front_depth")  # rendered, not noisified
    assert not is_noisified(tmp_path / "nothing.zarr", "front_depth_noisy")
