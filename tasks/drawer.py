"""drawer: pull a drawer open by its handle.

The fixture is a static cabinet (five box walls) standing on the table beside the table's centre
line, its front toward the line, holding a drawer on a slide joint ("drawer": 0 shut, positive
open, DRAWER_TRAVEL of travel) with a bar handle standing off its front; the drawer slides out
across the front camera's view. Randomised per episode: the cabinet's side (left or right),
position and yaw (+-20 degrees about facing the centre line), the cabinet's and the drawer's
colours. The expert rises, turns the closed fingers' flat side toward the pull, lowers them into
the gap between the handle bar and the drawer front (a hook: the fingers stay closed), waits
until they are down, pulls straight out along the slide axis and holds. Success: the drawer is
open at least OPEN_THRESHOLD.

The cabinet is not a free body, so `object_bodies` is empty: its pose is in the episode's record
(`cabinet_xy`, `cabinet_yaw`) and the opening, the "drawer" joint, is recorded every step in
`fixture_qpos`. The cabinet (with drawer and handle) is a segmentation class of its own.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.base import FINGER_HALF_DEPTH, R_DOWN, TABLE_TOP_Z, Task, Waypoints, rot_z, yaw_quat
from tasks.registry import register

OPEN_THRESHOLD = 0.10  # m of drawer opening for success
DRAWER_TRAVEL = 0.16  # m, the slide joint's range
PULL_TO = 0.14  # m of opening the expert aims for
# Cabinet, in its own frame: origin at the bottom of its centre, front face at x = -DEPTH / 2.
DEPTH, WIDTH, HEIGHT, WALL, GAP = 0.18, 0.24, 0.13, 0.01, 0.003
HANDLE_STANDOFF, HANDLE_RADIUS, HANDLE_HALF_LEN, HANDLE_Z = 0.075, 0.006, 0.06, 0.065
# The cabinet's centre: x and |y| (its side of the centre line is drawn separately). It never
# reaches under the hand's start (x < -0.07, |y| < 0.105), which is lower than its top.
XY_LOW, XY_HIGH = np.array([0.05, 0.15]), np.array([0.13, 0.19])
YAW_RANGE = (-0.35, 0.35)  # rad about facing the centre line
CABINET_RGB, DRAWER_RGB = [0.35, 0.45, 0.6], [0.8, 0.72, 0.55]  # nominal colours
# The hooking fingers' centre sits this far behind the bar's axis: 1.3 cm clear of the bar, and
# far enough from the drawer front that the hand (3.2 cm deep) does not overhang the cabinet.
HOOK_BEHIND_BAR = 0.03


def _box(body, name, pos, half, rgba, **kw):
    body.add_geom(
        name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(pos), size=list(half), rgba=rgba, group=2, **kw
    )


@register
class Drawer(Task):
    name = "drawer"
    description = "pull a drawer in a randomly placed cabinet open by its handle"
    object_bodies: list[str] = []  # the cabinet is static and the drawer slides: no free joints
    fixture_bodies = ["cabinet"]  # segmented with its drawer and handle
    fixture_joints = ["drawer"]  # the opening (m), recorded per step in fixture_qpos
    max_steps = 200

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        grey, wood, metal = [*CABINET_RGB, 1], [*DRAWER_RGB, 1], [0.7, 0.7, 0.72, 1]
        d, w, h, t = DEPTH / 2, WIDTH / 2, HEIGHT / 2, WALL / 2
        cab = spec.worldbody.add_body(
            name="cabinet", pos=[0.09, 0.17, TABLE_TOP_Z], quat=yaw_quat(np.pi / 2).tolist()
        )
        _box(cab, "cabinet_bottom", [0, 0, t], [d, w, t], grey)
        _box(cab, "cabinet_top", [0, 0, HEIGHT - t], [d, w, t], grey)
        for side, s in (("left", 1), ("right", -1)):
            _box(cab, f"cabinet_{side}", [0, s * (w - t), h], [d, t, h - 2 * t], grey)
        _box(cab, "cabinet_back", [d - t, 0, h], [t, w - 2 * t, h - 2 * t], grey)

        drawer = cab.add_body(name="drawer")
        drawer.add_joint(
            name="drawer",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[-1, 0, 0],
            range=[0, DRAWER_TRAVEL],
            damping=5.0,
            frictionloss=0.3,
            armature=0.05,
        )
        iw = w - 2 * t - GAP  # the drawer's half-width, inside the cabinet's walls
        low = WALL + GAP  # the drawer's bottom, just above the cabinet's
        box_half_d = (DEPTH - 2 * WALL - GAP) / 2  # the drawer box behind its front panel
        box_x = -d + WALL + box_half_d
        side_h = (HEIGHT / 2 + 0.02 - low) / 2
        _box(drawer, "drawer_front", [-d + t, 0, h], [t, iw, h - WALL - GAP], wood, density=500)
        _box(drawer, "drawer_bottom", [box_x, 0, low + t], [box_half_d, iw, t], wood, density=500)
        for side, s in (("left", 1), ("right", -1)):
            _box(
                drawer,
                f"drawer_{side}",
                [box_x, s * (iw - t), low + side_h],
                [box_half_d, t, side_h],
                wood,
                density=500,
            )
        _box(
            drawer,
            "drawer_back",
            [d - WALL - GAP - t, 0, low + side_h],
            [t, iw - WALL, side_h],
            wood,
            density=500,
        )
        bar_x = -d - HANDLE_STANDOFF
        for side, s in (("left", 1), ("right", -1)):
            _box(
                drawer,
                f"handle_post_{side}",
                [-d - HANDLE_STANDOFF / 2, s * (HANDLE_HALF_LEN - 0.01), HANDLE_Z],
                [HANDLE_STANDOFF / 2, 0.005, 0.005],
                metal,
            )
        drawer.add_geom(
            name="handle_bar",
            type=mujoco.mjtGeom.mjGEOM_CAPSULE,
            fromto=[bar_x, -HANDLE_HALF_LEN, HANDLE_Z, bar_x, HANDLE_HALF_LEN, HANDLE_Z],
            size=[HANDLE_RADIUS, 0, 0],
            rgba=metal,
            group=2,
        )

    def randomize(self, model, data, rng):
        side = 1.0 if self.uniform(rng, "object_pose", -1.0, 1.0, nominal=1.0) >= 0 else -1.0
        x, y = self.uniform(rng, "object_pose", XY_LOW, XY_HIGH, nominal=[0.09, 0.17])
        yaw = side * np.pi / 2 + self.uniform(rng, "object_pose", *YAW_RANGE, nominal=0.0)
        xy = np.array([x, side * y])
        cab_rgb = self.uniform(rng, "object_color", [0.1] * 3, [0.95] * 3, nominal=CABINET_RGB)
        front_rgb = self.uniform(rng, "object_color", [0.1] * 3, [0.95] * 3, nominal=DRAWER_RGB)
        cab = model.body("cabinet").id
        model.body_pos[cab] = [*xy, self.table_z]
        model.body_quat[cab] = yaw_quat(yaw)
        for g in range(model.ngeom):
            if model.geom_bodyid[g] == cab:
                model.geom_rgba[g, :3] = cab_rgb
        for part in ("front", "bottom", "left", "right", "back"):
            model.geom_rgba[model.geom(f"drawer_{part}").id, :3] = front_rgb
        return {
            "cabinet_side": side,
            "cabinet_xy": xy.tolist(),
            "cabinet_yaw": float(yaw),
            "cabinet_rgb": cab_rgb.tolist(),
            "drawer_rgb": front_rgb.tolist(),
        }

    def make_expert(self, env, rng):
        data = env.data
        bar = data.geom("handle_bar").xpos.copy()
        cab_R = data.body("cabinet").xmat.reshape(3, 3)
        out = -cab_R[:, 0]  # the pull direction: out of the cabinet's front, on the table plane
        turn = (np.arctan2(out[1], out[0]) + np.pi / 2) % np.pi - np.pi / 2  # fingers are symmetric
        R = rot_z(turn) @ R_DOWN  # the fingers' flat side toward the pull
        hook = bar - out * HOOK_BEHIND_BAR + [0.0, 0.0, -0.003]  # fingertips 1.5 cm below the bar
        above = np.array([*hook[:2], self.table_z + HEIGHT + 0.06])  # fingertips clear the top
        pulled = hook + out * (PULL_TO + HOOK_BEHIND_BAR - HANDLE_RADIUS - FINGER_HALF_DEPTH)
        pos0, R0 = env.controller.eef_pose(data)
        reach = Waypoints(pos0, R0, speed=0.35, dt=env.dt)
        # Up first, unturned: the hand (20 cm wide) may start lower than the cabinet's top.
        reach.add([*pos0[:2], above[2]], R0, 1.0).add(above, R, 1.0, hold=4)
        lower = Waypoints(above, R, speed=0.15, dt=env.dt)  # slowly: the fingers must not lag
        lower.add(hook, R, 1.0, hold=2)
        pull = Waypoints(hook, R, speed=0.1, dt=env.dt)
        pull.add(pulled, R, 1.0, hold=20)
        plans, stage = [reach, lower, pull], {"i": 0, "waited": 0}

        def act(env) -> np.ndarray:
            i = stage["i"]
            if i == 0 and not reach.goals:
                stage["i"] = 1
            elif i == 1 and not lower.goals:
                # Pull once the fingers are down behind the bar (or after a second anyway).
                stage["waited"] += 1
                down = np.linalg.norm(env.controller.eef_pose(env.data)[0] - hook) < 0.005
                if down or stage["waited"] > 20:
                    stage["i"] = 2
            p, Rt, g = plans[stage["i"]].next()
            return env.make_action(p, Rt, g)

        return act

    def success(self, model, data) -> bool:
        return bool(data.joint("drawer").qpos[0] >= OPEN_THRESHOLD)
