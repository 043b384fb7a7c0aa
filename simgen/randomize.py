"""Domain randomisation: the switches (a task config section) and the scene-level draws.

Object pose, size and colour are drawn by each task (it knows its objects) through
`Task.draw`; the table, lighting and cameras are drawn here for every task alike. Every value is
recorded in the episode's record (`params` in the store), whether drawn or nominal, and the
per-frame camera extrinsics in `<camera>_extrinsics` already include any jitter, so depth
back-projects exactly.

Scene draws come from their own random stream, `default_rng([seed, 2])`, so switching a scene
randomisation on or off never changes the objects a seed gives, and vice versa.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import mujoco
import numpy as np

TABLE_TOP_Z = 0.8  # m, nominal table top height (assets/scene.xml)
TABLE_SLAB_HALF = 0.025  # half-thickness of the table top slab
N_TABLE_MATERIALS = 6  # assets/scene.xml's table_mat0..5; 0 is the nominal one


@dataclass(frozen=True)
class Randomization:
    """Which properties vary per episode, and by how much. Off = the nominal value."""

    object_pose: bool = True  # object positions and yaw within each task's ranges
    object_size: bool = True  # object dimensions within each task's ranges
    object_color: bool = True  # object colours
    table_height: bool = False  # table top moved by up to +-table_height_m
    table_texture: bool = False  # one of the table materials (texture and tint)
    lighting: bool = False  # key light direction and brightness, ambient level
    camera_jitter: bool = False  # every camera moved by up to +-camera_jitter_m and turned by
    #                              up to camera_jitter_deg about a random axis
    table_height_m: float = 0.03
    camera_jitter_m: float = 0.02
    camera_jitter_deg: float = 2.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "bool" and not isinstance(v, bool):
                raise ValueError(f"randomize.{f.name} must be true or false, got {v!r}")
            if f.type == "float" and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ValueError(f"randomize.{f.name} must be a non-negative number, got {v!r}")
        if self.table_height_m > 0.1 or self.camera_jitter_m > 0.1 or self.camera_jitter_deg > 10:
            raise ValueError(
                "randomize: table_height_m and camera_jitter_m at most 0.1, camera_jitter_deg at most 10"
            )

    @classmethod
    def from_dict(cls, d: dict | None) -> Randomization:
        """From a job file's table; unknown keys are an error naming the known ones."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown randomize setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, spec: str) -> Randomization:
        """From the command line: comma-separated switch names turned on, `no_NAME` turned off,
        `all` / `none` for every switch, applied left to right to the defaults; e.g.
        `lighting,camera_jitter,no_object_color`."""
        switches = [f.name for f in fields(cls) if f.type == "bool"]
        d = cls().to_dict()
        for item in (t.strip() for t in spec.split(",")):
            if item in ("all", "none"):
                d.update({k: item == "all" for k in switches})
            elif item in switches:
                d[item] = True
            elif item.startswith("no_") and item[3:] in switches:
                d[item[3:]] = False
            elif item:
                raise ValueError(
                    f"unknown randomisation {item!r}; known: all, none, "
                    f"{', '.join(switches)} (no_NAME turns one off)"
                )
        return cls(**d)


def _small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a turn by up to max_deg about a uniformly random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_deg, max_deg))
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


class SceneRandomizer:
    """Draws table, lighting and camera properties into a compiled model, from nominal values
    remembered at construction (so episodes never accumulate each other's changes)."""

    def __init__(self, model: mujoco.MjModel, camera_names: list[str]):
        self.model = model
        self.table_body = model.body("table").id
        self.top_geom = model.geom("table_top").id
        if np.any(model.body_pos[self.table_body]):
            raise ValueError("assets/scene.xml: the table body is expected at the world origin")
        self.legs = [model.geom(f"table_leg{i}").id for i in range(1, 5)]
        self.materials = [model.material(f"table_mat{i}").id for i in range(N_TABLE_MATERIALS)]
        self.light = model.light("top").id
        self.cams = {n: model.camera(n).id for n in camera_names}
        self.nominal = {
            "body_pos": model.body_pos.copy(),
            "geom_pos": model.geom_pos.copy(),
            "geom_size": model.geom_size.copy(),
            "geom_matid": model.geom_matid.copy(),
            "geom_aabb": model.geom_aabb.copy(),
            "light_dir": model.light_dir.copy(),
            "light_diffuse": model.light_diffuse.copy(),
            "light_ambient": model.light_ambient.copy(),
            "cam_pos": model.cam_pos.copy(),
            "cam_quat": model.cam_quat.copy(),
        }

    def apply(self, rng: np.random.Generator, dr: Randomization) -> dict:
        """Restore the nominal scene, then draw what `dr` switches on. Returns the record:
        table_z (m), table_material, light (direction, diffuse, ambient), and per camera the
        offset (m) and turn (quaternion) applied to its mount pose."""
        m, n = self.model, self.nominal
        for k, v in n.items():
            getattr(m, k)[:] = v
        # Every value is drawn whether or not its switch is on: toggling one switch never
        # shifts the others' draws.
        dz = rng.uniform(-dr.table_height_m, dr.table_height_m)
        mat = int(rng.integers(N_TABLE_MATERIALS))
        light_dir = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), -1.0])
        diffuse, ambient = rng.uniform(0.3, 0.9), rng.uniform(0.0, 0.3)
        cam_draws = {
            c: (
                rng.uniform(-dr.camera_jitter_m, dr.camera_jitter_m, size=3),
                _small_rotation(rng, dr.camera_jitter_deg),
            )
            for c in self.cams
        }

        table_z = TABLE_TOP_Z + (dz if dr.table_height else 0.0)
        self._set_table_height(table_z)
        if dr.table_texture:
            m.geom_matid[self.top_geom] = self.materials[mat]
        else:
            mat = 0
        if dr.lighting:
            m.light_dir[self.light] = light_dir / np.linalg.norm(light_dir)
            m.light_diffuse[self.light] = diffuse
            m.light_ambient[self.light] = ambient
        record = {
            "table_z": float(table_z),
            "table_material": mat,
            "light": {
                "dir": m.light_dir[self.light].round(6).tolist(),
                "diffuse": float(m.light_diffuse[self.light][0]),
                "ambient": float(m.light_ambient[self.light][0]),
            },
            "cameras": {},
        }
        for name, cid in self.cams.items():
            offset, turn = cam_draws[name]
            if not dr.camera_jitter:
                offset, turn = np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0])
            m.cam_pos[cid] = n["cam_pos"][cid] + offset
            q = np.zeros(4)
            mujoco.mju_mulQuat(q, turn, n["cam_quat"][cid])  # turn expressed in the parent frame
            m.cam_quat[cid] = q
            record["cameras"][name] = {
                "offset_m": offset.round(6).tolist(),
                "turn_quat": turn.round(6).tolist(),
            }
        return record

    def _set_table_height(self, top_z: float) -> None:
        """Raise or lower the whole table so its top surface is at top_z; the legs are
        lengthened or shortened to keep reaching the floor."""
        m = self.model
        dz = top_z - TABLE_TOP_Z
        m.body_pos[self.table_body, 2] = self.nominal["body_pos"][self.table_body, 2] + dz
        leg_half = (TABLE_TOP_Z - 2 * TABLE_SLAB_HALF + dz) / 2
        for g in self.legs:
            m.geom_pos[g, 2] = leg_half - dz  # in the table body's frame
            m.geom_size[g, 2] = leg_half
            m.geom_aabb[g, 5] = leg_half
