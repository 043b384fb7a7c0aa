"""robosuite:Lift: robosuite's Lift environment (its Panda, table and randomly placed cube; its
own success check). The expert turns the hand to the cube's faces, comes down over it, closes the
gripper and lifts."""

from __future__ import annotations

from tasks.base import R_DOWN, body_yaw, grasp_yaws, rot_z
from tasks.registry import register
from tasks.robosuite_base import GRASP_DEPTH, RobosuiteTask


@register
class RobosuiteLift(RobosuiteTask):
    env_name, name = "Lift", "robosuite:Lift"
    description = "robosuite Lift: grasp the cube and lift it (robosuite's own scene and success check)"
    object_bodies = ["cube_main"]
    max_steps = 150

    def objects(self, rs_env):
        return [rs_env.cube]

    def make_expert(self, env, rng):
        c = env.data.body(self.object_bodies[0]).xpos.copy()
        R = rot_z(grasp_yaws(body_yaw(env.data, self.object_bodies[0]))[0]) @ R_DOWN
        grasp = c - [0.0, 0.0, GRASP_DEPTH]
        plan = (
            self.plan(env)
            .add(c + [0.0, 0.0, 0.10], R, 0.0, tol=0.02)
            .add(grasp, R, 0.0, tol=0.006)
            .add(grasp, R, 1.0, hold=12)
            .add(c + [0.0, 0.0, 0.20], R, 1.0, hold=100)
        )
        return self.follow(plan)
