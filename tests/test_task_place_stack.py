"""The place and stack tasks: registry, seeded randomisation and its switches, resting objects,
the scripted experts and the success checks (real MuJoCo, physics only)."""

import json

import mujoco
import numpy as np
import pytest

from simgen.env import Env, run_episode
from simgen.randomize import Randomization
from tasks import REGISTRY, get_task, task_names
from tasks import place as place_mod
from tasks import stack as stack_mod
from tasks.base import set_free_pose, yaw_quat

TASKS = ["place", "stack"]


def blind_env(task: str, dr: Randomization | None = None) -> Env:
    return Env(get_task(task, dr), cameras=[])  # no rendering cost


@pytest.fixture(scope="module")
def envs():
    out = {t: blind_env(t) for t in TASKS}
    yield out
    for e in out.values():
        e.close()


def hold_still(env: Env, steps: int) -> None:
    """Command the current hand pose with the gripper open for `steps` control steps."""
    action = env.make_action(*env.controller.eef_pose(env.data), 0.0)
    for _ in range(steps):
        env.step(action)


def test_registry_finds_place_and_stack():
    assert {"place", "stack"} <= set(task_names())
    assert get_task("place").name == "place" and get_task("stack").name == "stack"
    assert REGISTRY["place"].object_bodies == ["object"]
    assert REGISTRY["stack"].object_bodies == ["cube_top", "cube_bottom"]


@pytest.mark.parametrize("task", TASKS)
def test_randomisation_is_seeded_varied_and_serialisable(envs, task):
    env = envs[task]
    a, b, c = env.reset(3), env.reset(3), env.reset(4)
    assert a == b and a != c
    json.dumps(a)
    records = [env.reset(s) for s in range(20)]
    if task == "place":
        assert {r["object_shape"] for r in records} == {"cube", "cylinder"}
        halves = [r["cube_half_size"] for r in records if r["object_shape"] == "cube"]
        assert place_mod.CUBE_HALF_RANGE[0] <= min(halves) <= max(halves) <= place_mod.CUBE_HALF_RANGE[1]
        for r in records:
            assert np.linalg.norm(np.subtract(r["object_xy"], r["bin_xy"])) >= place_mod.MIN_SEPARATION
    else:
        for r in records:
            assert stack_mod.TOP_HALF_RANGE[0] <= r["top_half_size"] <= stack_mod.TOP_HALF_RANGE[1]
            assert stack_mod.BOTTOM_HALF_RANGE[0] <= r["bottom_half_size"] <= stack_mod.BOTTOM_HALF_RANGE[1]
            assert np.linalg.norm(np.subtract(r["top_xy"], r["bottom_xy"])) >= stack_mod.MIN_SEPARATION
            assert r["top_rgb"] != r["bottom_rgb"]
        assert np.ptp([r["top_xy"][1] for r in records]) > 0.1


def test_switches_give_nominal_values_and_leave_other_draws_alone():
    with blind_env("place", Randomization(object_pose=False)) as env:
        r = env.reset(5)
        assert r["object_xy"] == place_mod.OBJ_XY_NOMINAL and r["bin_xy"] == place_mod.BIN_XY_NOMINAL
        assert r["object_yaw"] == 0.0 and r["bin_yaw"] == 0.0
        assert np.allclose(env.data.body("bin").xpos[:2], place_mod.BIN_XY_NOMINAL)
    with blind_env("place", Randomization(object_pose=True)) as env:
        full = env.reset(5)
    assert full["object_xy"] != r["object_xy"]
    assert full["object_rgb"] == r["object_rgb"] and full["object_shape"] == r["object_shape"]
    with blind_env("place", Randomization(object_size=False, object_color=False)) as env:
        shapes = {env.reset(s)["object_shape"] for s in range(6)}
        r = env.reset(0)
        assert shapes == {"cube"} and r["cube_half_size"] == 0.022
        assert r["object_rgb"] == pytest.approx([0.8, 0.2, 0.2])
    with blind_env("stack", Randomization(object_pose=False)) as env:
        r = env.reset(7)
        assert r["top_xy"] == stack_mod.TOP_XY_NOMINAL and r["bottom_xy"] == stack_mod.BOTTOM_XY_NOMINAL
        assert r["top_yaw"] == 0.0 and r["bottom_yaw"] == 0.0


@pytest.mark.parametrize("task", TASKS)
def test_objects_rest_before_the_expert_moves(envs, task):
    env = envs[task]
    for seed in (0, 2):  # place: a cylinder, then a cube
        env.reset(seed)
        assert not env.success()
        start = {b: env.data.body(b).xpos.copy() for b in env.task.object_bodies}
        hold_still(env, 10)
        for b, p in start.items():
            assert np.linalg.norm(env.data.body(b).xpos - p) < 1e-3, (seed, b)
        assert not env.success()


@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds(envs, task):
    env = envs[task]
    for seed in range(4):
        _, info = run_episode(env, seed)
        assert info["success"], (task, seed)
        assert info["length"] < env.task.max_steps


def test_place_success_rejects_near_misses(envs):
    env = envs["place"]
    env.reset(2)  # a cube
    half = env.model.geom_size[env.model.geom("object").id][0]
    bin_xy = env.data.body("bin").xpos[:2].copy()
    floor = env.task.table_z + place_mod.BIN_FLOOR_TOP
    outside = place_mod.BIN_INNER_HALF + 2 * place_mod.BIN_WALL_HALF_T + half + 0.01

    bin_R = env.data.body("bin").xmat.reshape(3, 3)
    bin_yaw = np.arctan2(bin_R[1, 0], bin_R[0, 0])

    def check(x, z):
        """Success with the object at x along the bin's own x axis from its centre, height z."""
        xy = bin_xy + x * bin_R[:2, 0]
        set_free_pose(env.model, env.data, "object", [xy[0], xy[1], z], yaw_quat(bin_yaw))
        mujoco.mj_forward(env.model, env.data)
        return env.success()

    assert check(0.0, floor + half)  # resting on the bin floor
    assert check(place_mod.BIN_INNER_HALF - half, floor + half)  # against a wall, still inside
    assert not check(outside, env.task.table_z + half)  # on the table beside the bin
    assert not check(0.0, floor + half + 0.03)  # above the floor
    assert not check(
        place_mod.BIN_INNER_HALF + place_mod.BIN_WALL_HALF_T,
        env.task.table_z + place_mod.BIN_WALL_HEIGHT + half,
    )  # on a wall


def test_place_success_needs_the_gripper_released(envs):
    """The expert with its release step removed presses the object onto the bin floor while
    still holding it: every other condition holds, success must not."""
    env = envs["place"]
    env.reset(2)
    expert = env.task.make_expert(env, np.random.default_rng(0))
    expert.goal[2] -= 0.006  # all the way down onto the floor
    floor = env.task.table_z + place_mod.BIN_FLOOR_TOP
    half = env.model.geom_size[env.model.geom("object").id][0]
    for _ in range(120):
        action = expert(env)
        env.step(action)
        if expert.placing and len(expert.plan.goals) <= 2:  # at the goal, about to open
            break
        assert not env.success()
    action[9] = 1.0
    for _ in range(6):
        env.step(action)
    assert abs(env.data.body("object").xpos[2] - half - floor) < place_mod.REST_TOLERANCE
    assert place_mod.touched_by_robot(env.model, env.data, env.model.body("object").id)
    assert not env.success()


def test_stack_success_rejects_near_misses(envs):
    env = envs["stack"]
    env.reset(1)
    m, d = env.model, env.data
    top = m.geom_size[m.geom("cube_top").id][0]
    bottom = m.geom_size[m.geom("cube_bottom").id][0]
    base = d.body("cube_bottom").xpos.copy()
    yaw = np.arctan2(d.body("cube_bottom").xmat[3], d.body("cube_bottom").xmat[0])
    side = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # along one of the bottom cube's faces' normals

    def check(pos):
        set_free_pose(m, d, "cube_top", pos, yaw_quat(yaw))
        mujoco.mj_forward(m, d)
        return env.success()

    on_top = base + [0.0, 0.0, bottom + top]
    assert check(on_top)
    assert check(on_top + side * (bottom - 0.003))  # overhanging, centre still over the cube
    assert not check(on_top + side * (bottom + 0.004))  # centre beyond the bottom cube's edge
    assert not check(base + side * (bottom + top + 0.005) + [0.0, 0.0, top - bottom])  # beside it
    assert not check(on_top + [0.0, 0.0, 0.03])  # above it
