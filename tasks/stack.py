"""stack: put the smaller cube on top of the larger one.

Randomised per episode: both cubes' half-sizes (top 1.8 to 2.2 cm, bottom 2.4 to 3.0 cm),
positions (centres at least MIN_SEPARATION apart), yaws and colours (hues well apart).

The expert grasps the top cube from above as pick does, lifts it clear of the bottom cube and
carries it above it, turning the hand so the cubes' faces will line up. There it measures where
the cube actually sits in the hand, lowers it to just above the bottom cube, opens and withdraws.

Success: the top cube's centre is within the bottom cube's half-size of its vertical axis (in
the bottom cube's frame), its bottom rests on the bottom cube's top face, the bottom cube rests
on the table, the top cube is nearly still, and no part of the robot touches either cube.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.base import TABLE_TOP_Z, Task, body_yaw, grasp_yaws, set_box, set_free_pose, yaw_quat
from tasks.place import (
    DENSITY,
    REST_SPEED,
    REST_TOLERANCE,
    PlaceExpert,
    free_speed,
    pick_apart,
    random_colours,
    touched_by_robot,
)
from tasks.registry import register

TOP_HALF_RANGE = (0.018, 0.022)
BOTTOM_HALF_RANGE = (0.024, 0.030)
XY_LOW, XY_HIGH = np.array([-0.15, -0.16]), np.array([0.10, 0.16])
TOP_XY_NOMINAL, BOTTOM_XY_NOMINAL = [-0.025, -0.07], [-0.025, 0.07]
MIN_SEPARATION = 0.12  # m between the cubes' centres: the open fingers clear the other cube
N_CANDIDATES = 32  # placements drawn per episode; the first far enough apart is used


@register
class Stack(Task):
    name = "stack"
    description = "put the smaller randomised cube on top of the larger one"
    object_bodies = ["cube_top", "cube_bottom"]
    max_steps = 220

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        for name, xy, half, rgba in [
            ("cube_top", TOP_XY_NOMINAL, 0.02, [0.8, 0.2, 0.2, 1]),
            ("cube_bottom", BOTTOM_XY_NOMINAL, 0.027, [0.2, 0.8, 0.8, 1]),
        ]:
            body = spec.worldbody.add_body(name=name, pos=[xy[0], xy[1], TABLE_TOP_Z + half])
            body.add_freejoint(name=name)
            body.add_geom(
                name=name,
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=[half] * 3,
                rgba=rgba,
                group=2,
                friction=[1.0, 0.005, 0.0001],
                condim=4,
            )

    def randomize(self, model, data, rng):
        top_half = self.uniform(rng, "object_size", *TOP_HALF_RANGE, nominal=0.02)
        bottom_half = self.uniform(rng, "object_size", *BOTTOM_HALF_RANGE, nominal=0.027)
        top_yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)
        bottom_yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)
        n = (N_CANDIDATES, 2)
        top_c = self.uniform(rng, "object_pose", np.broadcast_to(XY_LOW, n), XY_HIGH, nominal=TOP_XY_NOMINAL)
        bottom_c = self.uniform(
            rng, "object_pose", np.broadcast_to(XY_LOW, n), XY_HIGH, nominal=BOTTOM_XY_NOMINAL
        )
        top_xy, bottom_xy = pick_apart(top_c, bottom_c, MIN_SEPARATION, TOP_XY_NOMINAL, BOTTOM_XY_NOMINAL)
        top_rgb, bottom_rgb = random_colours(self, rng, nominal_hsv=[0.0, 0.75, 0.8])
        for name, half, xy, yaw, rgb in [
            ("cube_top", top_half, top_xy, top_yaw, top_rgb),
            ("cube_bottom", bottom_half, bottom_xy, bottom_yaw, bottom_rgb),
        ]:
            geom = model.geom(name).id
            set_box(model, geom, [half] * 3, DENSITY)
            model.geom_rgba[geom] = [*rgb, 1.0]
            set_free_pose(model, data, name, [xy[0], xy[1], self.table_z + half], yaw_quat(yaw))
        return {
            "top_half_size": float(top_half),
            "top_xy": top_xy.tolist(),
            "top_yaw": float(top_yaw),
            "top_rgb": top_rgb,
            "bottom_half_size": float(bottom_half),
            "bottom_xy": bottom_xy.tolist(),
            "bottom_yaw": float(bottom_yaw),
            "bottom_rgb": bottom_rgb,
        }

    def make_expert(self, env, rng):
        model, data = env.model, env.data
        top = model.geom_size[model.geom("cube_top").id][0]
        bottom = model.geom_size[model.geom("cube_bottom").id][0]
        b = data.body("cube_bottom").xpos
        goal = [b[0], b[1], self.table_z + 2 * bottom + top + 0.004]
        carry_z = self.table_z + 2 * bottom + top + 0.07  # top cube's centre in transit
        return PlaceExpert(
            env,
            "cube_top",
            top,
            grasp_yaws(body_yaw(data, "cube_top"))[0],
            grasp_yaws(body_yaw(data, "cube_bottom"))[0],
            goal,
            carry_z,
        )

    def success(self, model, data) -> bool:
        top_half = model.geom_size[model.geom("cube_top").id][0]
        bottom_half = model.geom_size[model.geom("cube_bottom").id][0]
        top, bottom = data.body("cube_top"), data.body("cube_bottom")
        local = bottom.xmat.reshape(3, 3).T @ (top.xpos - bottom.xpos)
        centred = bool(np.all(np.abs(local[:2]) <= bottom_half))
        stacked = abs(local[2] - (bottom_half + top_half)) <= REST_TOLERANCE
        bottom_down = abs(bottom.xpos[2] - bottom_half - self.table_z) <= REST_TOLERANCE
        return (
            centred
            and stacked
            and bottom_down
            and free_speed(model, data, "cube_top") < REST_SPEED
            and not touched_by_robot(model, data, top.id)
            and not touched_by_robot(model, data, bottom.id)
        )
