"""Make the small real-data fixture the tests use (tests/fixtures/kinect7/) from the full
7-Scenes sequence in ../shared: a few frames subsampled 2x (320x240, K halved), and the scene
mesh cropped to what those frames see and decimated. Re-run to regenerate:

    python scripts/make_pair_fixture.py [--src ../shared/data/kinect-7scenes] [--frames 0 300 650]
"""

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT.parent / "shared/data/kinect-7scenes"))
    ap.add_argument("--frames", type=int, nargs="+", default=[0, 300, 650])
    ap.add_argument("--faces", type=int, default=60000, help="faces of the decimated mesh")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/kinect7"))
    args = ap.parse_args()
    src, out = Path(args.src), Path(args.out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    K = np.loadtxt(src / "camera-intrinsics.txt")
    K2 = K.copy()
    K2[:2] /= 2  # pixel i of the subsampled image is pixel 2i of the original
    np.savetxt(out / "camera-intrinsics.txt", K2)
    mesh = trimesh.load(src / "scene_mesh.ply", force="mesh", process=False)
    seen = np.zeros(len(mesh.vertices), bool)
    for i in args.frames:
        name = f"frame-{i:06d}"
        depth = imageio.imread(src / "frames" / f"{name}.depth.png")
        imageio.imwrite(out / "frames" / f"{name}.depth.png", depth[::2, ::2])
        pose = np.loadtxt(src / "frames" / f"{name}.pose.txt")
        np.savetxt(out / "frames" / f"{name}.pose.txt", pose)
        # Vertices inside this frame's view frustum (with a margin), up to 6 m away.
        pc = (mesh.vertices - pose[:3, 3]) @ pose[:3, :3]
        z = pc[:, 2]
        uv = pc[:, :2] / np.maximum(z, 1e-6)[:, None] * K[[0, 1], [0, 1]] + K[:2, 2]
        seen |= (
            (z > 0.2) & (z < 6) & (uv[:, 0] > -40) & (uv[:, 0] < 680) & (uv[:, 1] > -40) & (uv[:, 1] < 520)
        )
    keep = seen[mesh.faces].all(axis=1)
    crop = trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=True)
    small = crop.simplify_quadric_decimation(face_count=args.faces)
    small.export(out / "scene_mesh.ply")
    print(
        f"{len(args.frames)} frames, mesh {len(mesh.faces)} -> {len(crop.faces)} cropped -> "
        f"{len(small.faces)} faces, written to {out}"
    )


if __name__ == "__main__":
    main()
