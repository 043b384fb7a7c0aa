"""Item 5: the pick task, its registry entry, randomisation and scripted expert."""

import numpy as np
import pytest

from simgen.env import Env, run_episode
from tasks import REGISTRY, get_task, task_names
from tasks.pick import HALF_SIZE_RANGE, LIFT_THRESHOLD


def test_registry_finds_pick_and_rejects_unknown():
    assert "pick" in task_names()
    assert get_task("pick").name == "pick"
    assert REGISTRY["pick"].object_bodies == ["cube"]
    with pytest.raises(ValueError, match="unknown task 'lift'"):
        get_task("lift")


@pytest.fixture(scope="module")
def blind_env():
    env = Env(get_task("pick"), cameras=[])  # physics and expert only: no rendering cost
    yield env
    env.close()


def test_randomisation_is_seeded_and_varied(blind_env):
    a = blind_env.reset(3)
    b = blind_env.reset(3)
    c = blind_env.reset(4)
    assert a == b and a != c
    sizes = [blind_env.reset(s)["cube_half_size"] for s in range(20)]
    assert HALF_SIZE_RANGE[0] <= min(sizes) and max(sizes) <= HALF_SIZE_RANGE[1]
    assert np.ptp(sizes) > 0.004


def test_cube_rests_on_table_before_the_expert_moves(blind_env):
    blind_env.reset(0)
    assert not blind_env.success()
    z0 = blind_env.data.body("cube").xpos[2]
    hold = blind_env.make_action(*blind_env.controller.eef_pose(blind_env.data), 0.0)
    for _ in range(10):
        blind_env.step(hold)
    assert abs(blind_env.data.body("cube").xpos[2] - z0) < 1e-3
    assert not blind_env.success()


def test_expert_succeeds_on_at_least_95_of_100_seeds(blind_env):
    wins, lengths = 0, []
    for seed in range(100):
        arrays, info = run_episode(blind_env, seed)
        wins += info["success"]
        lengths.append(info["length"])
        if info["success"]:
            cube_z = arrays["object_pose"][-1, 0, 2]
            assert cube_z > 0.8 + LIFT_THRESHOLD
    assert wins >= 95, f"expert succeeded on {wins}/100 seeds"
    assert max(lengths) <= get_task("pick").max_steps
