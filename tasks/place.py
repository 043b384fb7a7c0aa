"""place: put an object (a cube or an upright cylinder) into an open bin on the table.

Randomised per episode: the object's shape (cube or cylinder, drawn under the `object_size`
switch; nominal a cube), its size (cube half-size 1.8 to 2.6 cm; cylinder radius 1.8 to 2.4 cm,
half-height 1.8 to 2.8 cm), position, yaw and colour; the bin's position and yaw (its centre at
least MIN_SEPARATION from the object's) and colour (a hue well apart from the object's). The bin
is a static body of fixed size: a thin floor plate and four low walls, visible in depth. The
object is one free body ("object") whose single geom is switched between box and cylinder in
the compiled model (set_box / set_cylinder also update mass, inertia and bounding volumes).

The expert grasps the object from above as pick does (fingers lined up with a cube's faces; a
cylinder's yaw is invisible, so the hand is not turned for it), lifts it over the walls and
carries it above the bin. There it measures where the object actually sits in the hand, lowers
it to just above the bin floor, opens and withdraws.

Success: the object's centre is over the bin's inner area, its lowest point rests on the bin
floor, it is nearly still, and no part of the robot touches it.
"""

from __future__ import annotations

import colorsys

import mujoco
import numpy as np

from simgen.scene import ROBOT_PREFIX
from tasks.base import (
    TABLE_TOP_Z,
    Task,
    Waypoints,
    body_yaw,
    grasp_yaws,
    rot_z,
    set_box,
    set_cylinder,
    set_free_pose,
    yaw_quat,
)
from tasks.registry import register

CUBE_HALF_RANGE = (0.018, 0.026)
CYL_RADIUS_RANGE = (0.018, 0.024)
CYL_HALF_HEIGHT_RANGE = (0.018, 0.028)
OBJ_XY_LOW, OBJ_XY_HIGH = np.array([-0.15, -0.18]), np.array([0.10, 0.18])
BIN_XY_LOW, BIN_XY_HIGH = np.array([-0.12, -0.18]), np.array([0.08, 0.18])
OBJ_XY_NOMINAL, BIN_XY_NOMINAL = [-0.025, -0.10], [-0.025, 0.12]
MIN_SEPARATION = 0.20  # m between object and bin centres: the open fingers clear the walls
N_CANDIDATES = 32  # placements drawn per episode; the first far enough apart is used

BIN_INNER_HALF = 0.07  # m, half the inner width of the (square) bin
BIN_WALL_HALF_T = 0.005  # half-thickness of the walls
BIN_WALL_HEIGHT = 0.035  # walls' top above the table
BIN_FLOOR_HALF_T = 0.003  # half-thickness of the floor plate
BIN_FLOOR_TOP = 2 * BIN_FLOOR_HALF_T  # floor plate top above the table

REST_TOLERANCE = 0.01  # m between the object's lowest point and the surface it should rest on
REST_SPEED = 0.05  # m/s: slower than this counts as resting
DENSITY = 500.0  # kg/m^3


def random_colours(task: Task, rng: np.random.Generator, nominal_hsv) -> tuple[list, list]:
    """Two clearly different RGB colours (hues a quarter to three quarters of the wheel apart),
    drawn under the `object_color` switch; `nominal_hsv` is the first colour when it is off and
    the second then has the hue half a turn away."""
    h, s, v = task.uniform(rng, "object_color", [0.0, 0.5, 0.5], [1.0, 0.9, 0.95], nominal=nominal_hsv)
    dh, s2, v2 = task.uniform(
        rng,
        "object_color",
        [0.25, 0.5, 0.5],
        [0.75, 0.9, 0.95],
        nominal=[0.5, nominal_hsv[1], nominal_hsv[2]],
    )
    first = colorsys.hsv_to_rgb(float(h), float(s), float(v))
    second = colorsys.hsv_to_rgb(float((h + dh) % 1.0), float(s2), float(v2))
    return list(first), list(second)


def pick_apart(a: np.ndarray, b: np.ndarray, min_dist: float, nominal_a, nominal_b):
    """First row pair of candidates a, b (N x 2 each) at least min_dist apart; the nominal pair
    if none is (drawing a fixed number keeps every later draw where it was)."""
    ok = np.linalg.norm(a - b, axis=1) >= min_dist
    if not ok.any():
        return np.array(nominal_a, float), np.array(nominal_b, float)
    i = int(np.argmax(ok))
    return a[i], b[i]


def touched_by_robot(model: mujoco.MjModel, data: mujoco.MjData, body: int) -> bool:
    """Whether any robot geom is in contact with a geom of `body`."""
    for c in data.contact[: data.ncon]:
        b1, b2 = model.geom_bodyid[c.geom1], model.geom_bodyid[c.geom2]
        other = b2 if b1 == body else b1 if b2 == body else None
        if other is not None and model.body(other).name.startswith(ROBOT_PREFIX):
            return True
    return False


def vertical_half_extent(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> float:
    """Distance from a box's or cylinder's centre to its lowest point, in its current pose."""
    R = data.geom_xmat[geom].reshape(3, 3)
    size = model.geom_size[geom]
    if model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX:
        return float(np.abs(R[2]) @ size)
    tilt = min(abs(R[2, 2]), 1.0)  # cosine of the cylinder axis' angle to vertical
    return float(tilt * size[1] + size[0] * np.sqrt(1.0 - tilt**2))


def free_speed(model: mujoco.MjModel, data: mujoco.MjData, joint: str) -> float:
    adr = model.joint(joint).dofadr[0]
    return float(np.linalg.norm(data.qvel[adr : adr + 3]))


class PlaceExpert:
    """Pick-and-place script in two stages: a Waypoints plan that grasps the object and carries it
    above its goal, then, from the object's measured position in the hand, a plan that lowers it
    to the goal, opens and withdraws.

    `body` is grasped at its centre (`half_height` = its centre's height above its bottom) with
    the hand turned by `turn` about z, carried with its centre at height `carry_z` while the hand
    turns to `place_turn`, and released with its centre just at `goal_center`."""

    def __init__(
        self, env, body: str, half_height: float, turn: float, place_turn: float, goal_center, carry_z: float
    ):
        data = env.data
        pos0, R0 = env.controller.eef_pose(data)
        self.body, self.goal = body, np.asarray(goal_center, float)
        c = data.body(body).xpos.copy()
        R, self.R_place = rot_z(turn) @ R0, rot_z(place_turn) @ R0
        grasp = c + [0.0, 0.0, max(0.0, 0.012 - half_height)]
        lifted = grasp + [0.0, 0.0, carry_z - c[2]]
        above_goal = np.array([self.goal[0], self.goal[1], lifted[2]])
        self.plan = (
            Waypoints(pos0, R0, speed=0.35, dt=env.dt)
            .add(c + [0.0, 0.0, 0.10], R, 0.0, hold=2)
            .add(grasp, R, 0.0, hold=2)
            .add(grasp, R, 1.0, hold=8)
            .add(lifted, R, 1.0)
            .add(above_goal, self.R_place, 1.0, hold=4)
        )
        self.placing = False

    def __call__(self, env) -> np.ndarray:
        if not self.plan.goals and not self.placing:
            self._plan_release(env)
        p, R, g = self.plan.next()
        return env.make_action(p, R, g)

    def _plan_release(self, env) -> None:
        """Shift the reference by the object's offset from its goal, so grasp slip and tracking
        error do not carry over into the placement."""
        self.placing = True
        ref = self.plan.pos
        error = self.goal - env.data.body(self.body).xpos
        over = ref + [error[0], error[1], 0.0]
        down = ref + error
        self.plan.add(over, self.R_place, 1.0, hold=1)
        self.plan.add(down, self.R_place, 1.0, hold=2)
        self.plan.add(down, self.R_place, 0.0, hold=6)
        self.plan.add(down + [0.0, 0.0, 0.10], self.R_place, 0.0, hold=100)


@register
class Place(Task):
    name = "place"
    description = "put a randomised cube or cylinder into an open bin"
    object_bodies = ["object"]
    fixture_bodies = ["bin"]
    max_steps = 220

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="object", pos=[*OBJ_XY_NOMINAL, TABLE_TOP_Z + 0.022])
        body.add_freejoint(name="object")
        body.add_geom(
            name="object",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.022] * 3,
            rgba=[0.8, 0.2, 0.2, 1],
            group=2,
            friction=[1.0, 0.005, 0.0001],
            condim=4,
        )
        bin_ = spec.worldbody.add_body(name="bin", pos=[BIN_XY_NOMINAL[0], BIN_XY_NOMINAL[1], TABLE_TOP_Z])
        outer = BIN_INNER_HALF + 2 * BIN_WALL_HALF_T
        box = mujoco.mjtGeom.mjGEOM_BOX
        bin_.add_geom(
            name="bin_floor",
            type=box,
            size=[outer, outer, BIN_FLOOR_HALF_T],
            pos=[0, 0, BIN_FLOOR_HALF_T],
            rgba=[0.2, 0.35, 0.75, 1],
            group=2,
        )
        wall_half_h = BIN_WALL_HEIGHT / 2
        for i, (sx, sy) in enumerate([(1, 0), (-1, 0), (0, 1), (0, -1)]):
            along = BIN_INNER_HALF + (2 * BIN_WALL_HALF_T if sx else 0.0)  # x walls cover corners
            size = [BIN_WALL_HALF_T, along, wall_half_h] if sx else [along, BIN_WALL_HALF_T, wall_half_h]
            off = BIN_INNER_HALF + BIN_WALL_HALF_T
            bin_.add_geom(
                name=f"bin_wall{i}",
                type=box,
                size=size,
                pos=[sx * off, sy * off, wall_half_h],
                rgba=[0.2, 0.35, 0.75, 1],
                group=2,
            )

    def randomize(self, model, data, rng):
        shape_u = self.uniform(rng, "object_size", 0.0, 1.0, nominal=0.0)
        shape = "cube" if shape_u < 0.5 else "cylinder"
        cube_half = self.uniform(rng, "object_size", *CUBE_HALF_RANGE, nominal=0.022)
        radius = self.uniform(rng, "object_size", *CYL_RADIUS_RANGE, nominal=0.021)
        half_height = self.uniform(rng, "object_size", *CYL_HALF_HEIGHT_RANGE, nominal=0.023)
        yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)
        bin_yaw = self.uniform(rng, "object_pose", -np.pi / 4, np.pi / 4, nominal=0.0)
        n = (N_CANDIDATES, 2)
        obj_c = self.uniform(
            rng, "object_pose", np.broadcast_to(OBJ_XY_LOW, n), OBJ_XY_HIGH, nominal=OBJ_XY_NOMINAL
        )
        bin_c = self.uniform(
            rng, "object_pose", np.broadcast_to(BIN_XY_LOW, n), BIN_XY_HIGH, nominal=BIN_XY_NOMINAL
        )
        xy, bin_xy = pick_apart(obj_c, bin_c, MIN_SEPARATION, OBJ_XY_NOMINAL, BIN_XY_NOMINAL)
        rgb, bin_rgb = random_colours(self, rng, nominal_hsv=[0.0, 0.75, 0.8])

        geom = model.geom("object").id
        if shape == "cube":
            model.geom_type[geom] = mujoco.mjtGeom.mjGEOM_BOX
            set_box(model, geom, [cube_half] * 3, DENSITY)
            z_half = cube_half
        else:
            set_cylinder(model, geom, radius, half_height)
            z_half = half_height
        model.geom_rgba[geom] = [*rgb, 1.0]
        set_free_pose(model, data, "object", [xy[0], xy[1], self.table_z + z_half], yaw_quat(yaw))
        b = model.body("bin").id
        model.body_pos[b] = [bin_xy[0], bin_xy[1], self.table_z]
        model.body_quat[b] = yaw_quat(bin_yaw)
        for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b]):
            model.geom_rgba[g] = [*bin_rgb, 1.0]
        record = {
            "object_shape": shape,
            "object_xy": xy.tolist(),
            "object_yaw": float(yaw),
            "object_rgb": rgb,
            "bin_xy": bin_xy.tolist(),
            "bin_yaw": float(bin_yaw),
            "bin_rgb": bin_rgb,
        }
        if shape == "cube":
            record["cube_half_size"] = float(cube_half)
        else:
            record.update(cylinder_radius=float(radius), cylinder_half_height=float(half_height))
        return record

    def make_expert(self, env, rng):
        model, data = env.model, env.data
        geom = model.geom("object").id
        is_box = model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_BOX
        half_height = model.geom_size[geom][2 if is_box else 1]
        turn = grasp_yaws(body_yaw(data, "object"))[0] if is_box else 0.0
        bin_c = data.body("bin").xpos
        goal = [bin_c[0], bin_c[1], self.table_z + BIN_FLOOR_TOP + half_height + 0.006]
        carry_z = self.table_z + BIN_WALL_HEIGHT + half_height + 0.07  # object centre in transit
        return PlaceExpert(env, "object", half_height, turn, turn, goal, carry_z)

    def success(self, model, data) -> bool:
        geom = model.geom("object").id
        obj, bin_ = data.body("object"), data.body("bin")
        local = bin_.xmat.reshape(3, 3).T @ (obj.xpos - bin_.xpos)
        inside = bool(np.all(np.abs(local[:2]) <= BIN_INNER_HALF))
        bottom = obj.xpos[2] - vertical_half_extent(model, data, geom)
        on_floor = abs(bottom - (self.table_z + BIN_FLOOR_TOP)) <= REST_TOLERANCE
        return (
            inside
            and on_floor
            and free_speed(model, data, "object") < REST_SPEED
            and not touched_by_robot(model, data, model.body("object").id)
        )
