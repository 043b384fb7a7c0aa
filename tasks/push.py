"""push: slide a box into a goal region on the table without grasping it.

Randomised per episode: the push (the midpoint between box and goal on the table, direction and
distance 10 to 18 cm, drawn together so both ends stay reachable), the box's yaw, half-extents
(2 to 3 cm across, 1.5 to 2.2 cm high) and colour. The goal is a flat green disc of radius
GOAL_RADIUS, 3 mm high, that collides with nothing (visible in RGB and depth, never in the way).
The expert closes the gripper into a pusher, turns the fingers' flat side toward the push,
comes down behind the box on the line box -> goal, pushes along it until the box's centre
reaches the goal, backs off and, if the box drifted sideways, pushes again from the new side.
Success: the box's centre is within GOAL_RADIUS of the goal's centre, it rests on the table (its
centre within LIFT_TOLERANCE of resting height) and it has stopped moving.
"""

from __future__ import annotations

import mujoco
import numpy as np

from tasks.base import (
    FINGER_HALF_DEPTH,
    R_DOWN,
    TABLE_TOP_Z,
    Task,
    Waypoints,
    body_yaw,
    rot_z,
    set_box,
    set_free_pose,
    yaw_quat,
)
from tasks.registry import register

GOAL_RADIUS = 0.05  # m, radius of the goal pad and of the success region
GOAL_PAD_HALF_HEIGHT = 0.0015
LIFT_TOLERANCE = 0.004  # m the box's centre may sit above its resting height
REST_SPEED = 0.02  # m/s: the box counts as stopped below this speed
HALF_LOW, HALF_HIGH = np.array([0.02, 0.02, 0.015]), np.array([0.03, 0.03, 0.022])
MID_LOW, MID_HIGH = np.array([-0.10, -0.10]), np.array([0.05, 0.10])
DIST_RANGE = (0.10, 0.18)


def _support(half: np.ndarray, box_yaw: float, u: np.ndarray) -> float:
    """How far a box of half-extents `half` and yaw `box_yaw` reaches from its centre along u."""
    a = np.arctan2(u[1], u[0]) - box_yaw
    return float(half[0] * abs(np.cos(a)) + half[1] * abs(np.sin(a)))


@register
class Push(Task):
    name = "push"
    description = "push a randomised box into a goal region on the table without grasping"
    object_bodies = ["box"]
    fixture_bodies = ["goal"]
    max_steps = 220

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="box", pos=[0, 0, TABLE_TOP_Z + 0.02])
        body.add_freejoint(name="box")
        body.add_geom(
            name="box",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.025, 0.025, 0.018],
            rgba=[0.2, 0.4, 0.85, 1],
            group=2,
            friction=[0.8, 0.005, 0.0001],
            condim=4,
        )
        goal = spec.worldbody.add_body(name="goal", pos=[0, 0, TABLE_TOP_Z + GOAL_PAD_HALF_HEIGHT])
        goal.add_geom(
            name="goal",
            type=mujoco.mjtGeom.mjGEOM_CYLINDER,
            size=[GOAL_RADIUS, GOAL_PAD_HALF_HEIGHT, 0],
            rgba=[0.2, 0.75, 0.3, 1],
            group=2,
            contype=0,
            conaffinity=0,
        )

    def randomize(self, model, data, rng):
        mid = self.uniform(rng, "object_pose", MID_LOW, MID_HIGH, nominal=[-0.03, 0.0])
        angle = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=np.pi / 2)
        dist = self.uniform(rng, "object_pose", *DIST_RANGE, nominal=0.14)
        yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)
        half = self.uniform(rng, "object_size", HALF_LOW, HALF_HIGH, nominal=[0.025, 0.025, 0.018])
        rgb = self.uniform(rng, "object_color", [0.1] * 3, [0.95] * 3, nominal=[0.2, 0.4, 0.85])
        u = np.array([np.cos(angle), np.sin(angle)])
        box_xy, goal_xy = mid - u * dist / 2, mid + u * dist / 2
        geom = model.geom("box").id
        set_box(model, geom, half)
        model.geom_rgba[geom] = [*rgb, 1.0]
        set_free_pose(model, data, "box", [*box_xy, self.table_z + half[2]], yaw_quat(yaw))
        model.body_pos[model.body("goal").id] = [*goal_xy, self.table_z + GOAL_PAD_HALF_HEIGHT]
        return {
            "box_half_size": half.tolist(),
            "box_xy": box_xy.tolist(),
            "box_yaw": float(yaw),
            "box_rgb": rgb.tolist(),
            "goal_xy": goal_xy.tolist(),
            "push_angle": float(angle),
            "push_distance": float(dist),
        }

    def make_expert(self, env, rng):
        model, data = env.model, env.data
        half = model.geom_size[model.geom("box").id].copy()
        box, goal = data.body("box"), data.body("goal").xpos[:2].copy()
        push_z = self.table_z + max(half[2], 0.016)  # grip site at the box's mid-height
        safe_z = self.table_z + 2 * half[2] + 0.06  # fingertips 5 cm over the box's top
        pos0, R0 = env.controller.eef_pose(data)
        st = {"phase": "", "plan": None, "u": None, "pushes": 0}

        def follow(phase: str, speed: float, *goals) -> None:
            """Switch to a plan from the current reference through goals (position, R, hold)."""
            plan = Waypoints(
                *((st["plan"].pos, st["plan"].R) if st["plan"] else (pos0, R0)), speed=speed, dt=env.dt
            )
            for pos, R, hold in goals:
                plan.add(pos, R, 1.0, hold)  # the gripper stays shut: it is the pusher
            st.update(phase=phase, plan=plan)

        def approach() -> None:
            """Over the point behind the box on the line box -> goal, then down to push height."""
            c = box.xpos[:2].copy()
            u = (goal - c) / max(np.linalg.norm(goal - c), 1e-9)
            turn = (np.arctan2(u[1], u[0]) + np.pi / 2) % np.pi - np.pi / 2  # fingers are symmetric
            R = rot_z(turn) @ R_DOWN  # the fingers' flat side toward the push
            yaw = body_yaw(data, "box")
            behind = c - u * (_support(half, yaw, u) + FINGER_HALF_DEPTH + 0.03)
            st["u"] = u
            follow("approach", 0.35, ([*behind, safe_z], R, 0), ([*behind, push_z], R, 2))

        approach()

        def act(env) -> np.ndarray:
            c, u, R = box.xpos[:2], st["u"], st["plan"].R
            if st["phase"] == "approach" and not st["plan"].goals:
                st["pushes"] += 1  # steadily along u toward a point past the goal, stopped below
                follow("push", 0.08, ([*(goal + u * 0.1), push_z], R, 0))
            elif st["phase"] == "push" and (c - goal) @ u > -0.006:  # the box slides on a little
                back = st["plan"].pos[:2] - u * 0.02
                follow("retreat", 0.2, ([*back, push_z], R, 0), ([*back, safe_z], R, 3))
            elif st["phase"] == "retreat" and not st["plan"].goals:
                if np.linalg.norm(goal - c) > 0.015 and st["pushes"] < 3:
                    approach()  # it drifted sideways: push again, from behind it as it is now
                else:
                    st["phase"] = "done"
            p, Rt, g = st["plan"].next()
            return env.make_action(p, Rt, g)

        return act

    def success(self, model, data) -> bool:
        half_z = model.geom_size[model.geom("box").id][2]
        box = data.body("box")
        j = model.joint("box").dofadr[0]
        return bool(
            np.linalg.norm(box.xpos[:2] - data.body("goal").xpos[:2]) <= GOAL_RADIUS
            and abs(box.xpos[2] - self.table_z - half_z) <= LIFT_TOLERANCE
            and np.linalg.norm(data.qvel[j : j + 3]) < REST_SPEED
        )
