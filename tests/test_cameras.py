"""Item 4: camera intrinsics/extrinsics conventions and metric depth, checked against poses."""

import mujoco
import numpy as np
import pytest

from simgen.cameras import CAMERAS, get_cameras, look_at, parse_resolution
from simgen.scene import FIRST_OBJECT_SEGMENT
from tasks.base import TABLE_TOP_Z, set_box, set_free_pose, yaw_quat


def project(K, T_cam_to_world, p_world):
    """World point -> (u, v) pixel and z-depth, OpenCV conventions."""
    T = np.linalg.inv(T_cam_to_world)
    pc = T[:3, :3] @ p_world + T[:3, 3]
    uv = K @ (pc / pc[2])
    return uv[0], uv[1], pc[2]


def place_cube(env, xy, half, yaw=0.3):
    m, d = env.model, env.data
    env.reset(0)
    set_box(m, m.geom("cube").id, [half] * 3)
    mujoco.mj_setConst(m, mujoco.MjData(m))
    set_free_pose(m, d, "cube", [xy[0], xy[1], TABLE_TOP_Z + half], yaw_quat(yaw))
    mujoco.mj_forward(m, d)
    return np.array([xy[0], xy[1], TABLE_TOP_Z + 2 * half])  # centre of the top face


@pytest.mark.parametrize("xy", [(0.0, 0.0), (0.08, -0.1), (-0.12, 0.12)])
def test_front_depth_at_cube_top_matches_pose(pick_env, xy):
    env = pick_env
    top = place_cube(env, xy, half=0.03)
    obs = env.observe()
    cam = env.cameras[0]
    assert cam.name == "front"
    depth = obs["front_depth"]
    assert depth.shape == (cam.height, cam.width) and depth.dtype == np.float32
    u, v, z = project(cam.K, obs["front_extrinsics"].astype(float), top)
    # The top face's centre: a flat patch, so the pixel holding it sees the same plane. The depth
    # there must be the point's z in camera coordinates (the plane may tilt across the pixel, so
    # sample the exact projected location by bilinear interpolation of the 2x2 neighbourhood).
    u0, v0 = int(np.floor(u)), int(np.floor(v))
    a, b = u - u0, v - v0
    patch = depth[v0 : v0 + 2, u0 : u0 + 2].astype(float)
    interp = (
        patch[0, 0] * (1 - a) * (1 - b)
        + patch[0, 1] * a * (1 - b)
        + patch[1, 0] * (1 - a) * b
        + patch[1, 1] * a * b
    )
    assert abs(interp - z) < 0.002, (interp, z)
    # Orientation: the cube's top is nearer than the table just beyond it, in the same column.
    assert obs["front_seg"][int(round(v)), int(round(u))] == FIRST_OBJECT_SEGMENT


def test_wrist_camera_sees_cube_below_at_right_depth(pick_env):
    env = pick_env
    # Put the cube right under the hand at home and look at it with the wrist camera.
    env.reset(0)
    eef, _ = env.controller.eef_pose(env.data)
    top = place_cube(env, eef[:2] + [0.0, 0.03], half=0.025)
    obs = env.observe()
    cam = env.cameras[1]
    T = obs["wrist_extrinsics"].astype(float)
    u, v, z = project(cam.K, T, top)
    assert 0 <= u < cam.width and 0 <= v < cam.height
    d = obs["wrist_depth"][int(round(v)), int(round(u))]
    assert abs(d - z) < 0.002, (d, z)
    assert obs["wrist_seg"][int(round(v)), int(round(u))] == FIRST_OBJECT_SEGMENT


def test_depth_is_z_depth_not_ray_length(pick_env):
    """A horizontal table seen obliquely: back-projecting every table pixel with K and the
    extrinsics must land on the plane z = TABLE_TOP_Z (true only for z-depth)."""
    env = pick_env
    place_cube(env, (0.3, 0.3), half=0.02)  # out of the way
    obs = env.observe()
    cam = env.cameras[0]
    depth, seg = obs["front_depth"], obs["front_seg"]
    vs, us = np.nonzero((seg == 2) & (depth > 0))
    z = depth[vs, us].astype(float)
    K, T = cam.K, obs["front_extrinsics"].astype(float)
    pc = np.stack([(us - K[0, 2]) / K[0, 0] * z, (vs - K[1, 2]) / K[1, 1] * z, z])
    pw = T[:3, :3] @ pc + T[:3, 3:4]
    on_top = np.abs(pw[2] - TABLE_TOP_Z) < 0.01
    assert on_top.mean() > 0.9  # the rest are table sides and legs
    assert np.median(np.abs(pw[2, on_top] - TABLE_TOP_Z)) < 0.001


def test_outputs_and_background(pick_env):
    obs = pick_env.observe()
    for c in ("front", "wrist"):
        assert obs[f"{c}_rgb"].shape == (96, 128, 3) and obs[f"{c}_rgb"].dtype == np.uint8
        assert obs[f"{c}_seg"].dtype == np.uint8
        assert np.all(np.isfinite(obs[f"{c}_depth"])) and obs[f"{c}_depth"].min() >= 0
    # The front camera sees above the floor's horizon: no surface there, depth 0 (no reading).
    assert (obs["front_depth"][0] == 0).any()


def test_intrinsics_and_lookat():
    cam = CAMERAS["front"].with_resolution(640, 480)
    K = cam.K
    assert K[0, 0] == K[1, 1] and K[0, 2] == 319.5 and K[1, 2] == 239.5
    assert np.isclose(2 * np.degrees(np.arctan(240 / K[1, 1])), cam.fovy_deg)
    R = look_at((1, 0, 1), (0, 0, 1))
    assert np.allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.allclose(-R[:, 2], [-1, 0, 0])  # looks down -z toward the target
    assert parse_resolution("128x96") == (128, 96)
    for bad in ("128", "x", "0x10", "128x96x3", "-4x4"):
        with pytest.raises(ValueError):
            parse_resolution(bad)
    with pytest.raises(ValueError, match="unknown camera"):
        get_cameras(["front", "top"])
