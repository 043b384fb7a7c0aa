"""realdiff command line. Commands arrive as they work: `pair` now; `eval`, `noisify` and
`train` with the realism benchmark and RealD²iff."""
from __future__ import annotations

import sys

from simgen.cli import Parser


def cmd_pair(args) -> int:
    from realdiff.pairs import make_pairs

    s = make_pairs(args.frames, args.intrinsics, args.mesh, args.out, depth_scale=args.depth_scale,
                   sensor=args.sensor, source=args.source, val_from=args.val_from,
                   progress=not args.quiet)
    print(f"{args.out}: {s['frames']} pairs ({s['train']} train, {s['val']} val); median "
          f"|real - clean| over pixels valid in both: {s['median_abs_diff_mm']:.1f} mm")
    return 0


def build_parser() -> Parser:
    p = Parser(prog="realdiff", description="Real sensor depth versus clean simulated depth.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("pair", help="render a scene mesh at real frames' poses: a pair store",
                       description="For every frame-NNNNNN.depth.png (+ .pose.txt, 4x4 "
                       "camera-to-world with OpenCV axes) in --frames, render the mesh at that "
                       "pose with the given intrinsics and store clean and real depth side by side.")
    r.add_argument("--frames", required=True, help="folder of frame-NNNNNN.depth.png and .pose.txt")
    r.add_argument("--intrinsics", required=True, help="text file holding the 3x3 camera matrix")
    r.add_argument("--mesh", required=True, help="scene mesh (any format trimesh reads), metres, "
                   "in the poses' world frame")
    r.add_argument("--out", required=True, help="pair store to create (must not exist)")
    r.add_argument("--depth-scale", type=float, default=0.001,
                   help="metres per depth PNG unit (default 0.001: millimetres)")
    r.add_argument("--sensor", default="kinect-v1", help="sensor name recorded in the store")
    r.add_argument("--source", default=None, help="source name recorded (default: the folder)")
    r.add_argument("--val-from", type=int, default=600,
                   help="frames with id >= this are the validation split (default 600)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_pair)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"realdiff: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
