"""The push and drawer tasks: registry, seeded randomisation and its switches, resting scenes,
scripted experts and success checks (real MuJoCo, physics only)."""

from contextlib import contextmanager

import mujoco
import numpy as np
import pytest

from simgen.env import Env, run_episode
from simgen.randomize import TABLE_TOP_Z, Randomization
from tasks import REGISTRY, get_task, task_names
from tasks.base import set_free_pose
from tasks.drawer import DRAWER_TRAVEL, OPEN_THRESHOLD
from tasks.push import DIST_RANGE, GOAL_RADIUS, HALF_HIGH, HALF_LOW, LIFT_TOLERANCE

OBJECTS_OFF = Randomization(object_pose=False, object_size=False, object_color=False)


@pytest.fixture(scope="module")
def push_env():
    env = Env(get_task("push"), cameras=[])
    yield env
    env.close()


@pytest.fixture(scope="module")
def drawer_env():
    env = Env(get_task("drawer"), cameras=[])
    yield env
    env.close()


@contextmanager
def _switches(env, dr):
    """Run `env` under randomisation switches `dr` (the task reads them at each reset)."""
    env.task.dr = dr
    try:
        yield env
    finally:
        env.task.dr = Randomization()


def _records(env, dr, seeds):
    with _switches(env, dr):
        return [env.reset(s) for s in seeds]


def _hold(env, steps):
    """Keep the arm where it is, gripper closed, for `steps` control steps."""
    action = env.make_action(*env.controller.eef_pose(env.data), 1.0)
    for _ in range(steps):
        env.step(action)


def test_registry_finds_push_and_drawer():
    assert {"push", "drawer"} <= set(task_names())
    assert get_task("push").name == "push" and get_task("drawer").name == "drawer"
    assert REGISTRY["push"].object_bodies == ["box"]
    assert REGISTRY["drawer"].object_bodies == []  # static cabinet, slide joint: no free body
    assert 150 <= REGISTRY["push"].max_steps <= 250 and 150 <= REGISTRY["drawer"].max_steps <= 250


def test_push_randomisation_is_seeded_ranged_and_switchable(push_env):
    a, b, c = push_env.reset(3), push_env.reset(3), push_env.reset(4)
    assert a == b and a != c
    recs = _records(push_env, Randomization(), range(20))
    halves = np.array([r["box_half_size"] for r in recs])
    assert np.all(halves >= HALF_LOW - 1e-12) and np.all(halves <= HALF_HIGH + 1e-12)
    dists = [np.linalg.norm(np.subtract(r["goal_xy"], r["box_xy"])) for r in recs]
    assert DIST_RANGE[0] - 1e-9 <= min(dists) and max(dists) <= DIST_RANGE[1] + 1e-9
    assert np.ptp([r["goal_xy"] for r in recs], axis=0).min() > 0.05
    nominal = _records(push_env, OBJECTS_OFF, [5, 6])
    assert nominal[0] == nominal[1]
    assert nominal[0]["box_yaw"] == 0.0 and nominal[0]["box_half_size"] == [0.025, 0.025, 0.018]
    # One switch off changes only its own values: every draw is made either way.
    no_colour = _records(push_env, Randomization(object_color=False), [5])[0]
    full = _records(push_env, Randomization(), [5])[0]
    assert no_colour["box_rgb"] == [0.2, 0.4, 0.85] != full["box_rgb"]
    assert {k: v for k, v in no_colour.items() if k != "box_rgb"} == {
        k: v for k, v in full.items() if k != "box_rgb"
    }


def test_drawer_randomisation_is_seeded_and_switchable(drawer_env):
    a, b, c = drawer_env.reset(3), drawer_env.reset(3), drawer_env.reset(4)
    assert a == b and a != c
    recs = _records(drawer_env, Randomization(), range(20))
    assert {r["cabinet_side"] for r in recs} == {-1.0, 1.0}
    for r in recs:  # the cabinet's front faces the table's centre line
        assert np.sign(r["cabinet_xy"][1]) == r["cabinet_side"]
        assert abs(r["cabinet_yaw"] - r["cabinet_side"] * np.pi / 2) <= 0.35 + 1e-9
    nominal = _records(drawer_env, OBJECTS_OFF, [5])[0]
    assert nominal["cabinet_xy"] == [0.09, 0.17]
    assert nominal["cabinet_yaw"] == pytest.approx(np.pi / 2)
    assert nominal["cabinet_rgb"] == [0.35, 0.45, 0.6]
    no_pose = _records(drawer_env, Randomization(object_pose=False), [5])[0]
    assert no_pose["cabinet_xy"] == nominal["cabinet_xy"]
    assert no_pose["cabinet_rgb"] == recs[5]["cabinet_rgb"]  # colours drawn as with pose on
    cab = drawer_env.model.body("cabinet").id
    assert drawer_env.model.geom_rgba[drawer_env.model.geom("cabinet_top").id, :3] == pytest.approx(
        no_pose["cabinet_rgb"]
    )
    np.testing.assert_allclose(drawer_env.data.xpos[cab][:2], nominal["cabinet_xy"])


def test_fixtures_stand_on_a_randomised_table(push_env, drawer_env):
    with _switches(push_env, Randomization(table_height=True)):
        z = push_env.reset(0)["scene"]["table_z"]
    assert abs(z - TABLE_TOP_Z) > 1e-3  # seed 0 moves the table
    m, d = push_env.model, push_env.data
    assert d.body("box").xpos[2] == pytest.approx(z + m.geom_size[m.geom("box").id][2])
    assert d.geom("goal").xpos[2] - m.geom_size[m.geom("goal").id][1] == pytest.approx(z)
    p0 = d.body("box").xpos.copy()
    _hold(push_env, 10)
    np.testing.assert_allclose(d.body("box").xpos, p0, atol=1e-3)

    with _switches(drawer_env, Randomization(table_height=True)):
        assert drawer_env.reset(0)["scene"]["table_z"] == z
    assert drawer_env.data.body("cabinet").xpos[2] == pytest.approx(z)


def test_box_and_drawer_rest_before_the_expert_moves(push_env, drawer_env):
    for seed in (0, 1):
        push_env.reset(seed)
        p0 = push_env.data.body("box").xpos.copy()
        assert not push_env.success()
        _hold(push_env, 10)
        np.testing.assert_allclose(push_env.data.body("box").xpos, p0, atol=1e-3)
        assert not push_env.success()

        drawer_env.reset(seed)
        assert not drawer_env.success()
        _hold(drawer_env, 10)
        assert abs(drawer_env.data.joint("drawer").qpos[0]) < 1e-3
        assert not drawer_env.success()


def test_push_expert_succeeds_without_lifting_or_opening_the_gripper(push_env):
    for seed in range(4):
        arrays, info = run_episode(push_env, seed)
        assert info["success"], f"seed {seed}"
        z = arrays["object_pose"][:, 0, 2]
        assert z.max() - z[0] < LIFT_TOLERANCE / 2  # slid, never lifted
        assert np.all(arrays["action"][:, 9] == 1.0)  # the gripper is always commanded shut
        assert np.abs(arrays["gripper_qpos"][15:]).max() < 0.003  # and is shut before contact
        goal = np.array(info["params"]["goal_xy"])
        assert np.linalg.norm(push_env.data.body("box").xpos[:2] - goal) <= GOAL_RADIUS


def test_push_success_needs_the_box_in_the_goal_and_on_the_table(push_env):
    push_env.reset(0)
    m, d = push_env.model, push_env.data
    goal = d.body("goal").xpos[:2].copy()
    half_z = m.geom_size[m.geom("box").id][2]
    quat = d.body("box").xquat.copy()
    for offset, lift, ok in [
        ((0, 0), 0.0, True),
        ((0.8 * GOAL_RADIUS, 0), 0.0, True),
        ((1.2 * GOAL_RADIUS, 0), 0.0, False),
        ((0, 0), 0.02, False),
    ]:
        set_free_pose(m, d, "box", [*(goal + offset), push_env.task.table_z + half_z + lift], quat)
        mujoco.mj_forward(m, d)
        assert push_env.success() == ok, (offset, lift)


def test_drawer_expert_opens_the_drawer(drawer_env):
    for seed in range(3):
        _, info = run_episode(drawer_env, seed)
        assert info["success"], f"seed {seed}"
        assert drawer_env.data.joint("drawer").qpos[0] >= OPEN_THRESHOLD


def test_drawer_success_needs_a_wide_enough_opening(drawer_env):
    drawer_env.reset(0)
    m, d = drawer_env.model, drawer_env.data
    q = m.joint("drawer").qposadr[0]
    for opening, ok in [
        (0.0, False),
        (0.03, False),
        (OPEN_THRESHOLD - 0.005, False),
        (OPEN_THRESHOLD + 0.005, True),
        (DRAWER_TRAVEL, True),
    ]:
        d.qpos[q] = opening
        mujoco.mj_forward(m, d)
        assert drawer_env.success() == ok, opening


def test_experts_succeed_with_every_randomisation_on(push_env, drawer_env):
    for env in (push_env, drawer_env):
        with _switches(env, Randomization.parse("all")):
            for seed in (7, 8):
                assert run_episode(env, seed)[1]["success"], (env.task.name, seed)
