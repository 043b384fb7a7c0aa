"""robosuite:Stack: robosuite's Stack environment (two randomly placed cubes; its own success
check). The expert grasps cubeA, carries it over cubeB, sets it down there and lets go."""

from __future__ import annotations

import numpy as np

from tasks.base import R_DOWN, body_yaw, grasp_yaws, rot_z
from tasks.registry import register
from tasks.robosuite_base import GRASP_DEPTH, RobosuiteTask


@register
class RobosuiteStack(RobosuiteTask):
    env_name, name = "Stack", "robosuite:Stack"
    description = (
        "robosuite Stack: grasp cubeA and place it on cubeB, then let go (robosuite's own "
        "scene and success check)"
    )
    object_bodies = ["cubeA_main", "cubeB_main"]
    max_steps = 250

    def objects(self, rs_env):
        return [rs_env.cubeA, rs_env.cubeB]

    def make_expert(self, env, rng):
        d = env.data
        ca, cb = (d.body(n).xpos.copy() for n in self.object_bodies)
        half_a, half_b = (obj.size[2] for obj in self.objects(env.rs))
        # Of the two grasps, the one whose fingers (closing along the hand's x axis) close across
        # the line to cubeB, so neither finger comes down on it.
        to_b = (cb - ca)[:2] / max(np.linalg.norm((cb - ca)[:2]), 1e-9)
        yaw = min(
            grasp_yaws(body_yaw(d, self.object_bodies[0])),
            key=lambda y: abs((rot_z(y) @ R_DOWN)[:2, 0] @ to_b),
        )
        R = rot_z(yaw) @ R_DOWN
        grasp = ca - [0.0, 0.0, GRASP_DEPTH]
        # Carried, cubeA's centre sits GRASP_DEPTH above the grip site.
        top_b = cb[2] + half_b
        place = np.array([cb[0], cb[1], top_b + half_a + 0.008 - GRASP_DEPTH])
        carry_z = top_b + half_a + 0.08
        plan = (
            self.plan(env)
            .add(ca + [0.0, 0.0, 0.10], R, 0.0, tol=0.02)
            .add(grasp, R, 0.0, tol=0.006)
            .add(grasp, R, 1.0, hold=12)
            .add([ca[0], ca[1], carry_z], R, 1.0, tol=0.02)
            .add([cb[0], cb[1], carry_z], R, 1.0, tol=0.01)
            .add(place, R, 1.0, tol=0.005)
            .add(place, R, 0.0, hold=10)
            .add(place + [0.0, 0.0, 0.08], R, 0.0, hold=100)
        )
        return self.follow(plan)
