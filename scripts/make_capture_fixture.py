"""Make the small sequence the capture tests use (tests/fixtures/kinect7-seq/) from the full
7-Scenes sequence in ../shared: consecutive-ish frames subsampled 4x (160x120, K quartered), with
their given poses (to check a tracked trajectory against). Re-run to regenerate:

    python scripts/make_capture_fixture.py [--src DIR] [--first 0 --count 16 --every 3]
"""

import argparse
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=str(ROOT.parent / "shared/data/kinect-7scenes"))
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--every", type=int, default=3, help="keep every n-th frame")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/kinect7-seq"))
    args = ap.parse_args()
    src, out = Path(args.src), Path(args.out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    K = np.loadtxt(src / "camera-intrinsics.txt")
    K[:2] /= 4  # pixel i of the subsampled image is pixel 4i of the original
    np.savetxt(out / "camera-intrinsics.txt", K)
    for k in range(args.count):
        i = args.first + k * args.every
        depth = imageio.imread(src / "frames" / f"frame-{i:06d}.depth.png")[::4, ::4]
        imageio.imwrite(out / "frames" / f"frame-{i:06d}.depth.png", depth)
        shutil.copy(src / "frames" / f"frame-{i:06d}.pose.txt", out / "frames" / f"frame-{i:06d}.pose.txt")
    (out / "README.md").write_text(
        f"# 7-Scenes sequence fixture ({args.count} frames)\n\n"
        f"Frames {args.first} to {args.first + (args.count - 1) * args.every} (every {args.every}th) of the "
        "Kinect v1 sequence in `../shared/data/kinect-7scenes/` (7-Scenes, Microsoft Research, offered "
        "for non-commercial research; redistributed there from the public repository "
        "andyzeng/tsdf-fusion-python), subsampled 4x to 160x120 (the camera matrix quartered to match), "
        "with their given poses.\nMade by `python scripts/make_capture_fixture.py`. Used by "
        "tests/test_capture.py.\n"
    )


if __name__ == "__main__":
    main()
