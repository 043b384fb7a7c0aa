"""pick_clutter: lift a cube from a table cluttered with 2 to 5 distractor objects.

The scene holds the cube and five distractor slots, each with a fixed shape: a box, a cylinder
and three meshes from the robosuite wheel (can, milk carton, bread). Per episode 2 to 5 slots
are in play; the others are parked: moved below the floor, their geoms put in a group that is
never rendered, their collisions switched off and gravity compensated so they float still.

Randomised per episode: the number of distractors and which slots; cube position, yaw, half-size
(1.8 to 2.6 cm) and colour as in pick; every distractor's position, yaw and colour, and the box's
and cylinder's dimensions. Distractors are placed by rejection sampling: footprints never
overlap, none lies where the open hand comes down on the cube, and no tall one stands under the
hand's home pose. The expert rises straight up to a height that clears every distractor, moves
over the cube, aligns the fingers with its faces, descends, closes and lifts. Success: the
cube's bottom is at least LIFT_THRESHOLD above the table.
"""

from __future__ import annotations

import mujoco
import numpy as np

from simgen.scene import robosuite_assets
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
from tasks.pick import HALF_SIZE_RANGE, LIFT_THRESHOLD, XY_HIGH, XY_LOW  # the cube as in pick
from tasks.registry import register

N_SLOTS, MIN_DISTRACTORS = 5, 2
# Slot kinds: "box" and "cylinder" are primitives; others name robosuite meshes (scale).
SLOT_KINDS = ["box", "cylinder", "can", "milk", "bread"]
MESH_SCALE = {"can": 1.0, "milk": 0.9, "bread": 1.0}
MAX_MESH_FACES = 2000  # the CPU renderer's cost is triangles
BOX_HALF_LOW, BOX_HALF_HIGH, BOX_HALF_NOMINAL = [0.02, 0.02, 0.02], [0.045, 0.045, 0.07], [0.03, 0.025, 0.045]
CYL_LOW, CYL_HIGH, CYL_NOMINAL = [0.02, 0.025], [0.04, 0.07], [0.03, 0.05]  # radius, half height
DENSITY = 400.0  # kg/m^3 for the distractors

# Distractors lie within NEAR of the cube and inside TABLE_LOW..TABLE_HIGH (x, y).
TABLE_LOW, TABLE_HIGH, NEAR = np.array([-0.28, -0.28]), np.array([0.25, 0.28]), 0.24
GAP = 0.01  # m between distractor footprints
# Keep-out around the cube in its grasp frame (half-extents along / across the finger axis):
# the open hand is about 21 cm wide along the fingers and 8 cm across.
GRASP_KEEPOUT = (0.125, 0.06)
# Keep-out for tall distractors around the hand's home pose (centre x, y and half-extents).
HOME_XY, HOME_KEEPOUT, TALL = np.array([-0.112, 0.0]), (0.06, 0.125), 0.06
CLEAR_HEIGHT = 0.25  # m above the table at which the expert travels; tallest object: 0.145
PARK_Z = -1.0  # parked slots float here, below the floor
PARKED_GROUP = 5  # simgen renders geom groups 1 and 2 only

# The layout used when object_pose is off (cube at pick's nominal spot, yaw 0).
CUBE_NOMINAL_XY = [-0.025, 0.0]
NOMINAL_XY = [[0.12, 0.0], [0.04, -0.20], [-0.06, 0.21], [0.14, 0.17], [-0.16, -0.20]]
NOMINAL_YAW = [0.3, 0.0, 0.0, 0.5, -0.4]
NOMINAL_RGB = [
    [0.8, 0.2, 0.2],
    [0.2, 0.4, 0.8],
    [0.3, 0.7, 0.3],
    [0.9, 0.8, 0.3],
    [0.9, 0.9, 0.9],
    [0.7, 0.5, 0.3],
]  # cube, then the slots


def load_mesh(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a robosuite object mesh, scaled, with its footprint centred on the
    origin and its bottom at z = 0; decimated above MAX_MESH_FACES faces."""
    import trimesh

    mesh = trimesh.load(robosuite_assets() / "objects" / "meshes" / f"{kind}.stl", force="mesh")
    if len(mesh.faces) > MAX_MESH_FACES:
        mesh = mesh.simplify_quadric_decimation(face_count=MAX_MESH_FACES)
    v = np.asarray(mesh.vertices, float) * MESH_SCALE[kind]
    lo, hi = v.min(0), v.max(0)
    v -= [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]
    return v, np.asarray(mesh.faces, np.int32)


@register
class PickClutter(Task):
    name = "pick_clutter"
    description = "lift a randomised cube from among 2 to 5 distractor objects"
    object_bodies = ["cube"] + [f"distractor{i}" for i in range(N_SLOTS)]
    max_steps = 150

    def __init__(self, randomize=None):
        super().__init__(randomize)
        self._meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def add_objects(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="cube", pos=[0, 0, TABLE_TOP_Z + 0.02])
        body.add_freejoint(name="cube")
        body.add_geom(
            name="cube",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.02] * 3,
            rgba=[*NOMINAL_RGB[0], 1],
            group=2,
            friction=[1.0, 0.005, 0.0001],
            condim=4,
        )
        for i, kind in enumerate(SLOT_KINDS):
            name = f"distractor{i}"
            body = spec.worldbody.add_body(name=name, pos=[i, 0, PARK_Z])
            body.add_freejoint(name=name)
            geom = {"name": name, "rgba": [*NOMINAL_RGB[i + 1], 1], "group": 2, "density": DENSITY}
            if kind == "box":
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=BOX_HALF_NOMINAL, **geom)
            elif kind == "cylinder":
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=CYL_NOMINAL, **geom)
            else:
                v, f = self._meshes.setdefault(kind, load_mesh(kind))
                spec.add_mesh(
                    name=f"clutter_{kind}",
                    uservert=v.ravel().tolist(),
                    userface=f.ravel().tolist(),
                    inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX,
                )
                body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=f"clutter_{kind}", **geom)

    def _footprint(self, model, slot: int) -> tuple[float, float]:
        """(radius of a circle holding the footprint at any yaw, height) of a slot's object."""
        size = model.geom_size[model.geom(f"distractor{slot}").id]
        kind = SLOT_KINDS[slot]
        if kind == "box":
            return float(np.hypot(size[0], size[1])), float(2 * size[2])
        if kind == "cylinder":
            return float(size[0]), float(2 * size[1])
        v = self._meshes[kind][0]
        return float(np.linalg.norm(v[:, :2], axis=1).max()), float(v[:, 2].max())

    def _layout_ok(self, xy, r, h, cube_xy, finger_axis, placed) -> bool:
        d = xy - cube_xy
        along, across = abs(d @ finger_axis), abs(d[0] * finger_axis[1] - d[1] * finger_axis[0])
        if along < GRASP_KEEPOUT[0] + r and across < GRASP_KEEPOUT[1] + r:
            return False
        dh = np.abs(xy - HOME_XY)
        if h > TALL and dh[0] < HOME_KEEPOUT[0] + r and dh[1] < HOME_KEEPOUT[1] + r:
            return False
        return all(np.linalg.norm(xy - p) >= r + q + GAP for p, q in placed)

    def randomize(self, model, data, rng):
        # Fixed-count draws first (count, slots, sizes, colours, cube pose), the rejection-sampled
        # distractor poses last, so switching object_pose never shifts the other values.
        n = int(rng.integers(MIN_DISTRACTORS, N_SLOTS + 1))
        active = sorted(int(s) for s in rng.choice(N_SLOTS, n, replace=False))
        half = self.uniform(rng, "object_size", *HALF_SIZE_RANGE, nominal=0.022)
        box_half = self.uniform(rng, "object_size", BOX_HALF_LOW, BOX_HALF_HIGH, nominal=BOX_HALF_NOMINAL)
        cyl = self.uniform(rng, "object_size", CYL_LOW, CYL_HIGH, nominal=CYL_NOMINAL)
        rgb = self.uniform(
            rng,
            "object_color",
            np.full((N_SLOTS + 1, 3), 0.1),
            np.full((N_SLOTS + 1, 3), 0.95),
            nominal=NOMINAL_RGB,
        )
        cube_xy = self.uniform(rng, "object_pose", XY_LOW, XY_HIGH, nominal=CUBE_NOMINAL_XY)
        cube_yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=0.0)

        cube = model.geom("cube").id
        set_box(model, cube, [half] * 3)
        model.geom_rgba[cube] = [*rgb[0], 1.0]
        set_free_pose(model, data, "cube", [*cube_xy, self.table_z + half], yaw_quat(cube_yaw))
        for slot, kind in enumerate(SLOT_KINDS):
            g = model.geom(f"distractor{slot}").id
            if kind == "box":
                set_box(model, g, box_half, density=DENSITY)
            elif kind == "cylinder":
                set_cylinder(model, g, *cyl, density=DENSITY)
            model.geom_rgba[g] = [*rgb[slot + 1], 1.0]

        turn = grasp_yaws(cube_yaw)[0]
        finger_axis = np.array([-np.sin(turn), np.cos(turn)])  # world y at the home pose
        lo, hi = np.maximum(cube_xy - NEAR, TABLE_LOW), np.minimum(cube_xy + NEAR, TABLE_HIGH)
        # Largest footprints first: they are the hardest to fit.
        order = sorted(active, key=lambda s: -self._footprint(model, s)[0])
        for _ in range(50):
            placed, poses = [(cube_xy, half * np.sqrt(2))], {}
            for slot in order:
                r, h = self._footprint(model, slot)
                for _ in range(100):
                    xy = self.uniform(rng, "object_pose", lo, hi, nominal=NOMINAL_XY[slot])
                    yaw = self.uniform(rng, "object_pose", -np.pi, np.pi, nominal=NOMINAL_YAW[slot])
                    if self._layout_ok(xy, r, h, cube_xy, finger_axis, placed):
                        placed.append((xy, r))
                        poses[slot] = (xy, yaw)
                        break
                else:
                    break
            if len(poses) == n:
                break
        else:
            raise RuntimeError("pick_clutter: could not place the distractors without overlap")

        distractors = []
        for slot, kind in enumerate(SLOT_KINDS):
            name = f"distractor{slot}"
            g, b = model.geom(name).id, model.body(name).id
            on = slot in poses
            model.geom_group[g] = 2 if on else PARKED_GROUP
            model.geom_contype[g] = model.geom_conaffinity[g] = int(on)
            model.body_gravcomp[b] = 0.0 if on else 1.0
            if not on:
                set_free_pose(model, data, name, [slot * 0.3, 0.0, PARK_Z], [1.0, 0.0, 0.0, 0.0])
                continue
            xy, yaw = poses[slot]
            # Boxes and cylinders have their origin at the centre, meshes at the bottom.
            z = self.table_z + {"box": model.geom_size[g][2], "cylinder": model.geom_size[g][1]}.get(
                kind, 0.0
            )
            set_free_pose(model, data, name, [*xy, z], yaw_quat(yaw))
            rec = {
                "slot": slot,
                "kind": kind,
                "xy": xy.tolist(),
                "yaw": float(yaw),
                "rgb": rgb[slot + 1].tolist(),
            }
            if kind in ("box", "cylinder"):
                rec["size"] = model.geom_size[g][: 3 if kind == "box" else 2].tolist()
            distractors.append(rec)
        return {
            "cube_half_size": float(half),
            "cube_xy": cube_xy.tolist(),
            "cube_yaw": float(cube_yaw),
            "cube_rgb": rgb[0].tolist(),
            "n_distractors": n,
            "distractors": distractors,
        }

    def make_expert(self, env, rng):
        model, data = env.model, env.data
        pos0, R0 = env.controller.eef_pose(data)
        cube = data.body("cube")
        c, half = cube.xpos.copy(), model.geom_size[model.geom("cube").id][0]
        R = rot_z(grasp_yaws(body_yaw(data, "cube"))[0]) @ R0
        clear_z = self.table_z + CLEAR_HEIGHT
        grasp = c + [0.0, 0.0, max(0.0, 0.012 - half)]
        lifted = c + [0.0, 0.0, 0.18]
        plan = (
            Waypoints(pos0, R0, speed=0.35, dt=env.dt)
            .add([pos0[0], pos0[1], clear_z], R0, 0.0)  # straight up, clear of everything
            .add([c[0], c[1], clear_z], R, 0.0, hold=2)
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
