"""Domain randomisation: seeded, recorded per episode, each switch honoured, jittered cameras
back-project exactly with the stored extrinsics."""

import numpy as np
import pytest

from simgen.cameras import get_cameras
from simgen.env import Env, run_episode
from simgen.randomize import TABLE_TOP_Z, Randomization
from simgen.runner import RenderConfig, render_dataset
from simgen.store import Store
from tasks import get_task

ALL = Randomization.parse("all")


@pytest.fixture(scope="module")
def dr_env():
    env = Env(get_task("pick", ALL), get_cameras(["front", "wrist"], 96, 96), rgb=True, seg=True)
    yield env
    env.close()


def test_parse_and_validation():
    assert Randomization.parse("") == Randomization()
    r = Randomization.parse("lighting,camera_jitter,no_object_color")
    assert r.lighting and r.camera_jitter and not r.object_color and r.object_pose
    assert not any(getattr(Randomization.parse("none"), f) for f in ("object_pose", "lighting"))
    with pytest.raises(ValueError, match="unknown randomisation 'fog'"):
        Randomization.parse("fog")
    with pytest.raises(ValueError, match="unknown randomize setting"):
        Randomization.from_dict({"lighting": True, "gravity": 2})
    with pytest.raises(ValueError, match="true or false"):
        Randomization.from_dict({"lighting": "yes"})
    with pytest.raises(ValueError, match="at most"):
        Randomization(camera_jitter_m=0.5)


def test_seeded_recorded_and_varied(dr_env):
    a, b, c = dr_env.reset(7), dr_env.reset(7), dr_env.reset(8)
    assert a == b and a != c
    scenes = [dr_env.reset(s)["scene"] for s in range(12)]
    heights = [s["table_z"] for s in scenes]
    assert max(abs(h - TABLE_TOP_Z) for h in heights) <= ALL.table_height_m + 1e-9
    assert np.ptp(heights) > 0.02
    assert len({s["table_material"] for s in scenes}) >= 3
    assert np.ptp([s["light"]["diffuse"] for s in scenes]) > 0.2
    offsets = np.array([s["cameras"]["front"]["offset_m"] for s in scenes])
    assert np.abs(offsets).max() <= ALL.camera_jitter_m and np.ptp(offsets) > 0.01


def test_nominal_scene_when_switched_off():
    with Env(get_task("pick", Randomization()), cameras=get_cameras(["front"], 32, 32)) as env:
        s = env.reset(3)["scene"]
        assert s["table_z"] == TABLE_TOP_Z and s["table_material"] == 0
        assert s["cameras"]["front"]["offset_m"] == [0.0, 0.0, 0.0]
        assert env.data.body("cube").xpos[2] == pytest.approx(
            TABLE_TOP_Z + env.reset(3)["cube_half_size"], abs=1e-6
        )
    fixed = Randomization(object_pose=False, object_size=False, object_color=False)
    with Env(get_task("pick", fixed), cameras=[]) as env:
        p1, p2 = env.reset(1), env.reset(2)
        assert p1 == p2  # every object property at its nominal value


def test_one_switch_never_shifts_another():
    """Turning lighting on changes the light and nothing the task draws."""
    with (
        Env(get_task("pick", Randomization()), cameras=[]) as off,
        Env(get_task("pick", Randomization(lighting=True)), cameras=[]) as on,
    ):
        a, b = off.reset(5), on.reset(5)
        assert a["scene"]["light"] != b["scene"]["light"]
        a.pop("scene"), b.pop("scene")
        assert a == b


def test_table_height_moves_objects_and_table_together(dr_env):
    for seed in range(4):
        p = dr_env.reset(seed)
        top = dr_env.data.geom("table_top")
        assert top.xpos[2] + dr_env.model.geom_size[top.id][2] == pytest.approx(
            p["scene"]["table_z"], abs=1e-9
        )
        cube_bottom = dr_env.data.body("cube").xpos[2] - p["cube_half_size"]
        assert cube_bottom == pytest.approx(p["scene"]["table_z"], abs=1e-6)
        leg = dr_env.data.geom("table_leg1")
        assert leg.xpos[2] - dr_env.model.geom_size[leg.id][2] == pytest.approx(0.0, abs=1e-9)


def test_jittered_cameras_back_project_exactly(dr_env):
    """Table pixels of the front depth, back-projected with K and that frame's stored
    extrinsics, land on the episode's (randomised) table height."""
    cam = dr_env.cameras[0]
    for seed in (0, 1, 2):
        p = dr_env.reset(seed)
        obs = dr_env.observe()
        depth, seg, T = obs["front_depth"], obs["front_seg"], obs["front_extrinsics"].astype(float)
        vs, us = np.nonzero((seg == 2) & (depth > 0))
        z = depth[vs, us].astype(float)
        K = cam.K
        pw = (
            T[:3, :3] @ np.stack([(us - K[0, 2]) / K[0, 0] * z, (vs - K[1, 2]) / K[1, 1] * z, z]) + T[:3, 3:4]
        )
        on_top = np.abs(pw[2] - p["scene"]["table_z"]) < 0.01
        assert on_top.mean() > 0.8
        assert np.median(np.abs(pw[2, on_top] - p["scene"]["table_z"])) < 0.001
        # ... and the extrinsics really moved: not the nominal pose
        nominal = np.array(get_cameras(["front"])[0].pos)
        assert np.allclose(T[:3, 3], nominal + p["scene"]["cameras"]["front"]["offset_m"], atol=1e-6)


def test_texture_and_lighting_change_rgb_not_depth(dr_env):
    """Same objects and cameras, another table material and light: RGB differs, depth does not."""
    dr_env.reset(0)
    base = dr_env.observe()
    m = dr_env.model
    saved = (m.geom_matid.copy(), m.light_diffuse.copy())
    top = m.geom("table_top").id
    m.geom_matid[top] = (
        m.material("table_mat1").id
        if m.geom_matid[top] != m.material("table_mat1").id
        else m.material("table_mat4").id
    )
    m.light_diffuse[:] = 0.2
    other = dr_env.observe()
    m.geom_matid[:], m.light_diffuse[:] = saved
    assert np.array_equal(base["front_depth"], other["front_depth"])
    assert np.abs(base["front_rgb"].astype(int) - other["front_rgb"].astype(int)).mean() > 5


def test_store_records_switches_and_every_episode(tmp_path):
    cfg = RenderConfig(
        task="pick",
        episodes=2,
        cameras=("front",),
        width=32,
        height=32,
        rgb=False,
        randomize=Randomization(camera_jitter=True, table_height=True),
    )
    render_dataset(cfg, tmp_path / "s.zarr", progress=False)
    s = Store(tmp_path / "s.zarr")
    assert s.meta["config"]["randomize"]["camera_jitter"] is True
    eps = s.meta["episodes"]
    assert [e["seed"] for e in eps] == [0, 1]
    assert eps[0]["params"]["scene"]["table_z"] != eps[1]["params"]["scene"]["table_z"]
    ext = s.episode(0, ["front_extrinsics"])["front_extrinsics"]
    nominal = np.array(get_cameras(["front"])[0].pos)
    assert np.allclose(
        ext[0, :3, 3], nominal + eps[0]["params"]["scene"]["cameras"]["front"]["offset_m"], atol=1e-6
    )


def test_expert_copes_with_full_randomisation(dr_env):
    wins = sum(run_episode(dr_env, s)[1]["success"] for s in range(3))
    assert wins == 3
