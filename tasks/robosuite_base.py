"""What robosuite's own environments share as tasks: they run in simgen.robosuite_env.RobosuiteEnv
(robosuite's scene, object placement and success check), refuse simgen's scene randomisation and
follow their scripted experts' waypoints at a bounded turn rate (OSC would otherwise swing into the
joint limits)."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from simgen.cameras import get_cameras
from simgen.robosuite_env import RobosuiteEnv, check_cameras
from simgen.scene import DEFAULT_MESH_DETAIL
from tasks.base import BaseTask, Waypoints

SCENE_SWITCHES = ("table_height", "table_texture", "lighting", "camera_jitter")
OBJECT_SWITCHES = ("object_pose", "object_size", "object_color")
GRASP_DEPTH = 0.004  # m the grip site goes below a cube's centre: the finger pads centred on it
SPEED = 0.25  # m/s of the reference pose
TURN_RATE = 1.5  # rad/s of the reference pose


class RobosuiteTask(BaseTask):
    """A robosuite environment (`env_name`) as a task: the bodies recorded in object_pose, the
    robosuite objects they are, and the scripted expert."""

    env_name = ""

    @abstractmethod
    def objects(self, rs_env) -> list:
        """robosuite's MujocoObjects, in object_bodies order."""

    def check(self, cameras, width, height):
        check_cameras(cameras)
        on = [s for s in SCENE_SWITCHES if getattr(self.dr, s)]
        if on:
            raise ValueError(
                f"randomisation {', '.join(on)} is not supported for robosuite tasks "
                "(robosuite randomises its own object placement only)"
            )
        off = [s for s in OBJECT_SWITCHES if not getattr(self.dr, s)]
        if off:
            raise ValueError(
                f"randomisation {', '.join(off)} cannot be turned off for robosuite tasks "
                "(robosuite always randomises its own object placement)"
            )
        get_cameras(cameras, width, height)  # the resolution limits of simgen's cameras

    def make_env(
        self, cameras, width, height, rgb=False, seg=False, mesh_detail=DEFAULT_MESH_DETAIL
    ) -> RobosuiteEnv:
        return RobosuiteEnv(self, cameras, width, height, rgb=rgb, seg=seg)

    def describe(self, cameras, width, height):
        """As BaseTask.describe, from the environment built once without rendering."""
        with RobosuiteEnv(self, cameras, width, height, render=False) as env:
            section = env.robosuite_attrs()
            return {
                "description": self.description,
                "object_bodies": list(self.object_bodies),
                "segment_bodies": list(self.object_bodies),
                "cameras": env.camera_attrs(),
                "physics_dt": float(env.model.opt.timestep),
                "engine": {"robosuite": section["version"]},
                "extra_attrs": {"robosuite": section},
            }

    def plan(self, env: RobosuiteEnv) -> Waypoints:
        """Waypoints from the hand's current pose at the experts' speed and turn rate."""
        return Waypoints(*env.eef_pose(), SPEED, env.dt, turn_rate=TURN_RATE)

    @staticmethod
    def follow(plan: Waypoints):
        """The expert following `plan`, told where the hand is at each step."""

        def act(env) -> np.ndarray:
            p, R, g = plan.next(env.eef_pose()[0])
            return env.make_action(p, R, g)

        return act
