"""pick: lift a cube from the table above a height threshold.

Randomised per episode: cube position (x, y on the table), yaw, half-size (1.8 to 2.6 cm) and
colour. The expert moves above the cube, aligns the fingers with its faces, descends, closes the
gripper and lifts. Success: the cube's bottom is at least LIFT_THRESHOLD above the table.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.base import (
    TABLE_TOP_Z,
    Task,
    Waypoints,
    body_yaw,
    grasp_yaws,
    rot_z,
    set_box,
    set_free_pose,
    yaw_quat,
)
from tasks.registry import register

LIFT_THRESHOLD = 0.08  # m between the cube's bottom and the table top
HALF_SIZE_RANGE = (0.018, 0.026)
XY_LOW, XY_HIGH = np.array([-0.15, -0.15]), np.array([0.10, 0.15])


@register
class Pick(Task):
    name = "pick"
    description = "lift a randomised cube above a height threshold"
    object_bodies = ["cube"]
    max_steps = 150

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="cube", pos=[0, 0, TABLE_TOP_Z + 0.02])
        body.add_freejoint(name="cube")
        body.add_geom(
            name="cube",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.02] * 3,
            rgba=[0.8, 0.2, 0.2, 1],
            group=2,
            friction=[1.0, 0.005, 0.0001],
            condim=4,
        )

    def randomize(self, model, data, rng):
        half = self.uniform(rng, "object_size", *HALF_SIZE_RANGE, nominal=0.022)
        xy = self.uniform(rng, "object_pose", XY_LOW, XY_HIGH, nominal=[-0.025, 0.0])
        yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)
        rgb = self.uniform(rng, "object_color", [0.1] * 3, [0.95] * 3, nominal=[0.8, 0.2, 0.2])
        geom = model.geom("cube").id
        set_box(model, geom, [half] * 3)
        model.geom_rgba[geom] = [*rgb, 1.0]
        set_free_pose(model, data, "cube", [xy[0], xy[1], self.table_z + half], yaw_quat(yaw))
        return {
            "cube_half_size": float(half),
            "cube_xy": xy.tolist(),
            "cube_yaw": float(yaw),
            "cube_rgb": rgb.tolist(),
        }

    def make_expert(self, env, rng):
        model, data = env.model, env.data
        pos0, R0 = env.controller.eef_pose(data)
        cube = data.body("cube")
        c, half = cube.xpos.copy(), model.geom_size[model.geom("cube").id][0]
        # Rotate the hand about z by the cube's yaw folded into [-45, 45) degrees: the smallest
        # turn that lines the fingers up with a pair of faces.
        turn = grasp_yaws(body_yaw(data, "cube"))[0]
        R = rot_z(turn) @ R0
        grasp = c + [0.0, 0.0, max(0.0, 0.012 - half)]
        above = c + [0.0, 0.0, 0.10]
        lifted = c + [0.0, 0.0, 0.18]
        plan = (
            Waypoints(pos0, R0, speed=0.35, dt=env.dt)
            .add(above, R, 0.0, hold=2)
            .add(grasp, R, 0.0, hold=2)
            .add(grasp, R, 1.0, hold=8)
            .add(lifted, R, 1.0, hold=40)
        )

        def act(env) -> np.ndarray:
            p, Rt, g = plan.next()
            return env.make_action(p, Rt, g)

        return act

    def success(self, model, data) -> bool:
        half = model.geom_size[model.geom("cube").id][2]
        return bool(data.body("cube").xpos[2] - half - self.table_z >= LIFT_THRESHOLD)
