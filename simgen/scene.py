"""Scene assembly with MjSpec: workcell (assets/scene.xml) + Panda arm and gripper from the
robosuite wheel + cameras + the task's objects.

The robot's torque motors are replaced by joint position servos with gravity compensation, so a
Cartesian controller only has to produce joint targets. Robot visual meshes can be decimated
(``mesh_detail`` = fraction of faces kept) because the CPU renderer's cost is triangles.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import mujoco
import numpy as np

import assets
from simgen.cameras import CameraConfig

ROBOT_PREFIX = "robot/"
ARM_JOINTS = [f"{ROBOT_PREFIX}joint{i}" for i in range(1, 8)]
FINGER_JOINTS = [f"{ROBOT_PREFIX}gripper/finger_joint1", f"{ROBOT_PREFIX}gripper/finger_joint2"]
EEF_SITE = f"{ROBOT_PREFIX}gripper/grip_site"
HOME_QPOS = np.array([0.0, np.pi / 16, 0.0, -np.pi / 2 - np.pi / 3, 0.0, np.pi - 0.2, np.pi / 4])
# Joint servo gains (stiffness, damping) and torque limits, as in MuJoCo Menagerie's Panda.
ARM_KP = [4500, 4500, 3500, 3500, 2000, 2000, 2000]
ARM_FORCE = [87, 87, 87, 87, 12, 12, 12]
DEFAULT_MESH_DETAIL = 0.15
DECIMATE_ABOVE = 2000  # meshes with fewer faces are kept whole
VISUAL_GROUP, SCENE_GROUP, COLLISION_GROUP = 1, 2, 3

# Segmentation classes written to <camera>_seg; task objects follow from FIRST_OBJECT_SEGMENT.
SEGMENTS = {0: "background", 1: "floor", 2: "table", 3: "robot", 4: "gripper"}
FIRST_OBJECT_SEGMENT = 5


def robosuite_assets() -> Path:
    """The model folder inside the installed robosuite wheel (found without importing it)."""
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("robosuite is not installed; it provides the Panda model files")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "assets"


def _decimated(path: Path, detail: float) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a mesh file with `detail` of its faces kept; cached on disk."""
    import trimesh

    key = hashlib.sha1(f"{path}:{path.stat().st_mtime_ns}:{detail}".encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SIMGEN_CACHE", Path.home() / ".cache" / "simgen")) / "meshes"
    file = cache / f"{path.stem}-{key}.npz"
    if file.exists():
        with np.load(file) as z:
            return z["v"], z["f"]
    mesh = trimesh.load(path, force="mesh", process=True)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)  # seams would decimate into dust
    if len(mesh.faces) > DECIMATE_ABOVE:
        target = max(DECIMATE_ABOVE // 4, int(len(mesh.faces) * detail))
        mesh = mesh.simplify_quadric_decimation(face_count=target)
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int32)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, v=v, f=f)
    os.replace(tmp, file)  # atomic: parallel workers never read half a file
    return v, f


def build_robot(mesh_detail: float = DEFAULT_MESH_DETAIL) -> mujoco.MjSpec:
    """Panda arm + Panda gripper from the robosuite wheel, with position servos and gravcomp."""
    root = robosuite_assets()
    robot = mujoco.MjSpec.from_file(str(root / "robots" / "panda" / "robot.xml"))
    gripper = mujoco.MjSpec.from_file(str(root / "grippers" / "panda_gripper.xml"))
    for part in (robot, gripper):
        _split_groups_and_decimate(part, mesh_detail)
    for cam in list(robot.cameras):
        robot.delete(cam)
    mount = robot.body("right_hand").add_site(name="gripper_mount")
    robot.attach(gripper, prefix="gripper/", site=mount)

    for act in list(robot.actuators):
        if act.name.startswith("torq_j"):
            robot.delete(act)
    for i, (kp, fmax) in enumerate(zip(ARM_KP, ARM_FORCE, strict=True), start=1):
        j = robot.joint(f"joint{i}")
        j.armature = 0.1
        a = robot.add_actuator(name=f"arm{i}", target=f"joint{i}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=kp, kv=kp / 10)
        a.forcelimited, a.forcerange = True, [-fmax, fmax]
        a.ctrlrange, a.ctrllimited = j.range, True
    for body in robot.bodies:
        body.gravcomp = 1.0
    return robot


def _split_groups_and_decimate(spec: mujoco.MjSpec, detail: float) -> None:
    """Collision geoms to a hidden group; visual meshes decimated to `detail` of their faces."""
    visual_meshes = set()
    for g in spec.geoms:
        if g.contype or g.conaffinity:
            g.group = COLLISION_GROUP  # collision hulls: simulated, never rendered
        else:
            g.group = VISUAL_GROUP
            if g.type == mujoco.mjtGeom.mjGEOM_MESH:
                visual_meshes.add(g.meshname)
    if detail >= 1.0:
        return
    folder = Path(spec.modelfiledir) / spec.meshdir
    for m in spec.meshes:
        if m.name in visual_meshes:
            v, f = _decimated(folder / m.file, detail)
            m.file = ""
            m.uservert = v.ravel().tolist()
            m.userface = f.ravel().tolist()


def add_camera(spec: mujoco.MjSpec, cam: CameraConfig) -> None:
    """Add a camera whose intrinsics match cam.K exactly (MuJoCo's fovy, square pixels)."""
    parent = spec.worldbody if cam.body is None else spec.body(cam.body)
    if parent is None:
        raise ValueError(f"camera {cam.name}: no body {cam.body!r} in the scene")
    parent.add_camera(
        name=cam.name,
        pos=list(cam.pos),
        quat=list(cam.mujoco_quat()),
        fovy=cam.fovy_deg,
        resolution=[cam.width, cam.height],
    )


def build_scene(
    cameras: list[CameraConfig], add_objects=None, mesh_detail: float = DEFAULT_MESH_DETAIL
) -> mujoco.MjSpec:
    """The workcell with the robot, `cameras` and whatever `add_objects(spec)` adds."""
    spec = mujoco.MjSpec.from_file(assets.path("scene.xml"))
    spec.attach(build_robot(mesh_detail), prefix=ROBOT_PREFIX, frame=spec.frame("robot_base"))
    if add_objects is not None:
        add_objects(spec)
    for cam in cameras:
        add_camera(spec, cam)
    return spec


def segment_lut(model: mujoco.MjModel, object_bodies: list[str]) -> np.ndarray:
    """Map geom id -> segment class (see SEGMENTS; `object_bodies`, a task's objects then its
    fixtures, numbered from FIRST_OBJECT_SEGMENT, each with the bodies below it)."""
    lut = np.zeros(model.ngeom, np.uint8)
    obj_ids = {model.body(b).id: FIRST_OBJECT_SEGMENT + i for i, b in enumerate(object_bodies)}
    for g in range(model.ngeom):
        body = model.geom_bodyid[g]
        name = model.body(body).name
        if model.geom(g).name == "floor":
            lut[g] = 1
        elif name in ("table", "pedestal"):
            lut[g] = 2
        elif name.startswith(ROBOT_PREFIX + "gripper/"):
            lut[g] = 4
        elif name.startswith(ROBOT_PREFIX):
            lut[g] = 3
        else:
            root = body
            while model.body_parentid[root] != 0:
                root = model.body_parentid[root]
            lut[g] = obj_ids.get(root, obj_ids.get(body, 0))
    return lut
