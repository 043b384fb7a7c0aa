"""The pick_clutter task: registry entry, seeded clutter layouts, parked slots and the expert."""

import numpy as np
import pytest

from simgen.cameras import get_cameras
from simgen.env import Env, run_episode
from simgen.randomize import Randomization
from simgen.scene import FIRST_OBJECT_SEGMENT
from tasks import REGISTRY, get_task, task_names
from tasks.pick_clutter import LIFT_THRESHOLD, N_SLOTS, NOMINAL_XY, SLOT_KINDS

SLOTS = [f"distractor{i}" for i in range(N_SLOTS)]


@pytest.fixture(scope="module")
def blind_env():
    env = Env(get_task("pick_clutter"), cameras=[])  # physics and expert only: no rendering cost
    yield env
    env.close()


def active_slots(params) -> list[int]:
    return [d["slot"] for d in params["distractors"]]


def object_contacts(env) -> list[tuple[str, str]]:
    """Body-name pairs of the current contacts that involve a task object."""
    m, d = env.model, env.data
    pairs = [
        (m.body(m.geom_bodyid[c.geom1]).name, m.body(m.geom_bodyid[c.geom2]).name)
        for c in d.contact[: d.ncon]
    ]
    return [p for p in pairs if set(p) & set(env.task.object_bodies)]


def test_registry_finds_pick_clutter():
    assert "pick_clutter" in task_names()
    task = get_task("pick_clutter")
    assert task.name == "pick_clutter"
    assert REGISTRY["pick_clutter"].object_bodies == ["cube", *SLOTS]


def test_randomisation_is_seeded_and_draws_2_to_5_distractors(blind_env):
    a, b, c = blind_env.reset(3), blind_env.reset(3), blind_env.reset(4)
    assert a == b and a != c
    counts = []
    for seed in range(20):
        p = blind_env.reset(seed)
        counts.append(p["n_distractors"])
        assert len(p["distractors"]) == p["n_distractors"]
        assert all(d["kind"] == SLOT_KINDS[d["slot"]] for d in p["distractors"])
    assert min(counts) == 2 and max(counts) == 5, counts


@pytest.mark.parametrize("spec", ["", "all", "no_object_pose"])
def test_objects_do_not_overlap_and_rest_still(spec):
    with Env(get_task("pick_clutter", Randomization.parse(spec)), cameras=[]) as env:
        for seed in range(15):
            p = env.reset(seed)
            if spec == "no_object_pose":
                assert [d["xy"] for d in p["distractors"]] == [NOMINAL_XY[s] for s in active_slots(p)]
            # At reset every object touches the table only, never another object.
            assert all("table" in pair for pair in object_contacts(env)), object_contacts(env)
            names = ["cube"] + [SLOTS[s] for s in active_slots(p)]
            xy = np.array([env.data.body(n).xpos[:2] for n in names])
            gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(names))
            assert gaps.min() > 0.04
            pos0 = np.array([env.data.body(n).xpos for n in names])
            hold = env.make_action(*env.controller.eef_pose(env.data), 0.0)
            for _ in range(10):
                env.step(hold)
            assert np.abs(np.array([env.data.body(n).xpos for n in names]) - pos0).max() < 1e-3
            assert min(env.data.body(n).xmat[8] for n in names) > 0.999  # all still upright
            assert not env.success()


def test_parked_distractors_are_hidden_and_out_of_play():
    env = Env(get_task("pick_clutter"), cameras=get_cameras(["front", "wrist"]), seg=True)
    with env:
        seed = next(s for s in range(20) if env.reset(s)["n_distractors"] < N_SLOTS)
        p = env.reset(seed)
        parked = [i for i in range(N_SLOTS) if i not in active_slots(p)]
        pos0 = {i: env.data.body(SLOTS[i]).xpos.copy() for i in parked}
        hold = env.make_action(*env.controller.eef_pose(env.data), 0.0)
        for _ in range(5):
            env.step(hold)
        obs = env.observe()
        for i in parked:
            g = env.model.geom(SLOTS[i]).id
            assert env.model.geom_group[g] not in (1, 2)  # the renderer draws groups 1 and 2
            assert env.model.geom_contype[g] == env.model.geom_conaffinity[g] == 0
            assert env.data.body(SLOTS[i]).xpos[2] < 0  # below the floor
            np.testing.assert_allclose(env.data.body(SLOTS[i]).xpos, pos0[i], atol=1e-9)
            assert all(SLOTS[i] not in pair for pair in object_contacts(env))
            for cam in ("front", "wrist"):
                assert not np.any(obs[f"{cam}_seg"] == FIRST_OBJECT_SEGMENT + 1 + i)
        visible = np.unique(obs["front_seg"])
        assert FIRST_OBJECT_SEGMENT in visible  # the cube
        assert any(FIRST_OBJECT_SEGMENT + 1 + s in visible for s in active_slots(p))


@pytest.mark.parametrize("spec,seeds", [("", [0, 1, 2, 3]), ("all", [4, 5, 6, 7])])
def test_expert_lifts_the_cube_without_disturbing_the_clutter(spec, seeds):
    with Env(get_task("pick_clutter", Randomization.parse(spec)), cameras=[]) as env:
        for seed in seeds:
            arrays, info = run_episode(env, seed)
            assert info["success"], f"seed {seed}"
            assert info["length"] <= env.task.max_steps
            poses = arrays["object_pose"]
            table_z = info["params"]["scene"]["table_z"]
            assert poses[-1, 0, 2] - info["params"]["cube_half_size"] - table_z >= LIFT_THRESHOLD
            active = [1 + s for s in active_slots(info["params"])]
            moved = np.linalg.norm(poses[-1, active, :3] - poses[0, active, :3], axis=-1)
            assert moved.max() < 2e-3, f"seed {seed}: a distractor moved {moved.max():.4f} m"


def test_randomised_dimensions_keep_sensible_masses(blind_env):
    m = blind_env.model
    for seed in range(5):
        blind_env.reset(seed)
        for name in ["cube", *SLOTS]:
            body = m.body(name).id
            assert 0.01 < m.body_mass[body] < 1.0
            inertia = m.body_inertia[body]
            assert np.all(inertia > 0) and np.all(inertia <= inertia.sum() / 2 + 1e-12)  # triangle
