"""realdiff command line: `pair`, `capture`, `train`, `distill`, `texture`, `shift`, `edges`, `readout`,
`noisify`, `eval`, `sensors`."""

from __future__ import annotations

from interop.robomimic import CONVENTIONS
from plumbing.backends import BACKENDS
from plumbing.cli import Parser, field_default, given, main_of, option, quiet
from realdiff.capture.config import CaptureConfig
from realdiff.reald2iff.config import DistillConfig, ModelConfig, TrainConfig
from realdiff.sensors import COMMITTED_MODELS, DEFAULT_NOISER, NOISERS


def cmd_pair(args) -> int:
    from realdiff.pairs import make_pairs

    s = make_pairs(
        args.frames,
        args.intrinsics,
        args.mesh,
        args.out,
        depth_scale=args.depth_scale,
        sensor=args.sensor,
        source=args.source,
        val_from=args.val_from,
        refine=args.refine,
        progress=not args.quiet,
    )
    print(
        f"{args.out}: {s['frames']} pairs ({s['train']} train, {s['val']} val); median "
        f"|real - clean| over pixels valid in both: {s['median_abs_diff_mm']:.1f} mm"
    )
    return 0


def cmd_capture(args) -> int:
    from realdiff.capture.pipeline import capture

    cfg = CaptureConfig(**given(args, CaptureConfig), refine=not args.no_refine)
    s = capture(
        args.frames,
        args.intrinsics,
        args.out,
        depth_scale=args.depth_scale,
        sensor=args.sensor,
        source=args.source,
        cfg=cfg,
        progress=not args.quiet,
    )
    ate, moved = s["ate_m"], s["moved_from_given_m"]
    t = s["timings_s"]
    print(
        f"{args.out}: {s['frames']} pairs ({s['train']} train, {s['val']} val) in "
        f"{s['seconds'] / 60:.1f} min "
        f"(track {t['track_s']:.0f} s, "
        + (f"global refinement {t['global_s']:.0f} s, " if "global_s" in t else "")
        + f"fuse {t['fuse_s']:.0f} s, pair {t['pair_s']:.0f} s); median "
        f"|real - clean|: {s['median_abs_diff_mm']:.1f} mm"
        + (
            f"; ATE against the given poses {ate['tracked'] * 100:.1f} cm tracked, "
            + (f"{ate['global'] * 100:.1f} cm refined globally, " if ate.get("global") is not None else "")
            + f"{ate['refined'] * 100:.1f} cm refined per frame"
            if ate
            else ""
        )
        + (
            "; the given poses moved "
            + (f"{moved['global'] * 100:.1f} cm globally, " if moved["global"] is not None else "")
            + f"{moved['refined'] * 100:.1f} cm per frame (RMSE after alignment)"
            if moved
            else ""
        )
        + f"\ntwin mesh {s['mesh']}, report {s['report']}"
    )
    return 0


def cmd_train(args) -> int:
    from realdiff.reald2iff.config import make_config
    from realdiff.reald2iff.train import train

    cfg = make_config(
        args.preset,
        **given(args, TrainConfig),
        fgs_weight=0.0 if args.no_fgs else None,
        dgo_beta=0.0 if args.no_dgo else None,
        no_coarse=args.no_coarse,
        no_fine=args.no_fine,
        fine_fold=args.fine_fold,
        name=args.name,
    )
    r = train(
        args.pairs,
        args.out,
        cfg,
        coarse_from=args.coarse_from,
        fine_from=args.fine_from,
        progress=not args.quiet,
    )
    print(
        f"{args.out}: {cfg.model.name} trained in {r['seconds'] / 60:.1f} min; validation "
        f"({cfg.val_frames} frames): {r['meta']['val']}"
    )
    return 0


def cmd_distill(args) -> int:
    from realdiff.reald2iff.distill import distill

    cfg = DistillConfig(**given(args, DistillConfig))
    r = distill(args.pairs, args.teacher, args.out, cfg, progress=not args.quiet)
    print(
        f"{args.out}: coarse stage distilled to {cfg.steps} steps in {r['seconds'] / 60:.1f} min; "
        f"validation ({cfg.val_frames} frames): {r['meta']['val']}"
    )
    return 0


def cmd_texture(args) -> int:
    from realdiff.reald2iff.train import add_texture

    r = add_texture(args.pairs, args.model, args.out, tiles=args.tiles, seed=args.seed, name=args.name)
    print(
        f"{args.out}: texture stage of {r['tiles']} tiles (of {r['candidates']} flat ones) in "
        f"{r['seconds']:.0f} s; validation: {r['meta']['val']}"
    )
    return 0


def cmd_edges(args) -> int:
    from realdiff.reald2iff.train import add_edges

    r = add_edges(
        args.pairs, args.model, args.out, max_dist=args.max_dist, length=args.length, name=args.name
    )
    g = r["stats"]["grown"]
    print(
        f"{args.out}: edge stage (background reading the foreground 1 px out: "
        + ", ".join(f"{c[0]:.0%}" for c in g)
        + f" by jump size) in {r['seconds']:.0f} s; validation: {r['meta']['val']}"
    )
    return 0


def stage_parser(sub, command: str, help: str, description: str):
    """The parser of a command that adds a stage to a model file: MODEL, --pairs, --out, --name."""
    p = sub.add_parser(command, help=help, description=description)
    p.add_argument("model", help="model file from `realdiff train` or `distill`, or with other stages added")
    p.add_argument(
        "--pairs", required=True, help="pair store from `realdiff pair` or `capture` (its train split)"
    )
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--name", default=None, help=f"the model's name (default: the model's + -{command})")
    return p


def cmd_readout(args) -> int:
    from realdiff.reald2iff.train import add_readout

    grid = None
    if args.grid:
        try:
            grid = tuple(float(g) for g in args.grid.lower().split("x"))
        except ValueError:
            grid = ()
        if len(grid) != 2:
            raise ValueError(f"--grid {args.grid!r}: need two pitches, rows x columns, e.g. 1.6x1.6")
    r = add_readout(args.pairs, args.model, args.out, frames=args.frames, grid=grid, name=args.name)
    st = r["stats"]
    print(
        f"{args.out}: readout stage (grid {st['grid'][0]:.3f} x {st['grid'][1]:.3f} px, smoothing "
        f"{st['smooth']} px: isolated readings {st['isolated_by_smooth'][str(st['smooth'])]:.2%}, the real "
        f"{st['isolated_real']:.2%}) in {r['seconds']:.0f} s; validation: {r['meta']['val']}"
    )
    return 0


def cmd_shift(args) -> int:
    from realdiff.reald2iff.train import add_registration

    r = add_registration(args.pairs, args.model, args.out, radius=args.radius, name=args.name)
    st = r["stats"]
    print(
        f"{args.out}: registration stage of {st['frames']} shifts (dy {st['mean'][0]:+.1f} +- "
        f"{st['std'][0]:.1f}, dx {st['mean'][1]:+.1f} +- {st['std'][1]:.1f} px; {st['at_radius']:.0%} at "
        f"the radius) in {r['seconds']:.0f} s; validation: {r['meta']['val']}"
    )
    return 0


def cmd_noisify(args) -> int:
    from realdiff.noisify_datasets import noisify_path
    from realdiff.sensors import parse_range_scale

    cams = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    s = noisify_path(
        args.store,
        noiser=args.noiser,
        cameras=cams,
        suffix=args.suffix,
        seed=args.seed,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.quiet,
        range_scale=parse_range_scale(args.range_scale),
        backend=args.backend,
        address=args.address,
        intrinsics=args.intrinsics,
        depth_convention=args.depth_convention,
        out=args.out,
    )
    print(
        f"{s.get('out', args.store)}: {s['noiser']} wrote {', '.join(s['keys'])} ({s['frames_noisified']} "
        f"frames this run, {s['frames']} per camera)"
    )
    return 0


def cmd_sensors(args) -> int:
    import json

    from realdiff.sensors import list_sensors, sensor_info

    rows = list_sensors()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for i, row in enumerate(rows):
        info = sensor_info(row["name"])
        print(("\n" if i else "") + row["name"] + ("  (default)" if row["default"] else ""))
        if info.sensor is None:
            print("  sensor      none (clean depth)")
        else:
            print(f"  sensor      {info.sensor} ({info.technology or 'technology unknown'})")
            print(f"  range       {info.range_text()}")
            print(f"  resolution  {'x'.join(map(str, info.resolution)) if info.resolution else 'unknown'}")
            print(f"  training    {info.training_data or 'unknown'}")
        print(f"  validation  {info.validation_line()}")
        if info.notes:
            print(f"  notes       {info.notes}")
    return 0


def cmd_eval(args) -> int:
    from realdiff.evaluate import evaluate, markdown_table

    if not args.all and not args.noiser:
        raise ValueError("give --noiser NAME or --all")
    names = list(NOISERS) if args.all else [n.strip() for n in args.noiser.split(",") if n.strip()]
    result = evaluate(
        args.pairs,
        args.split,
        names,
        args.out,
        seed=args.seed,
        two_sample=not args.no_two_sample,
        progress=not args.quiet,
        threads=args.threads,
    )
    print(markdown_table(result))
    if args.out:
        print(f"wrote {args.out}/metrics.json, metrics.md, curves.png, examples_*.png")
    return 0


RANGE_SCALE_HELP = (
    "give these cameras the sensor built S times smaller (depth errors and range times S), "
    "e.g. wrist=0.1 for a short-range wrist camera"
)


def build_parser() -> Parser:
    from realdiff.evaluate import evaluate
    from realdiff.noisify import noisify_store
    from realdiff.pairs import make_pairs

    p = Parser(prog="realdiff", description="Real sensor depth versus clean simulated depth.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "pair",
        help="render a scene mesh at real frames' poses: a pair store",
        description="For every frame-NNNNNN.depth.png (+ .pose.txt, 4x4 "
        "camera-to-world with OpenCV axes) in --frames, render the mesh at that "
        "pose with the given intrinsics and store clean and real depth side by side.",
    )
    r.add_argument("--frames", required=True, help="folder of frame-NNNNNN.depth.png and .pose.txt")
    r.add_argument("--intrinsics", required=True, help="text file holding the 3x3 camera matrix")
    r.add_argument(
        "--mesh",
        required=True,
        help="scene mesh (any format trimesh reads), metres, in the poses' world frame",
    )
    r.add_argument("--out", required=True, help="pair store to create (must not exist)")
    option(r, make_pairs, "depth_scale", "metres per depth PNG unit (0.001: millimetres)")
    option(r, make_pairs, "sensor", "sensor name recorded in the store")
    option(r, make_pairs, "source", "source name recorded (none: the folder)", type=str)
    option(r, make_pairs, "val_from", "frames with id >= this are the validation split")
    r.add_argument(
        "--refine",
        action="store_true",
        help="refine each frame's pose against the mesh first (ICP with outlier rejection), so the "
        "pairs hold the sensor's error rather than the poses'",
    )
    quiet(r)
    r.set_defaults(func=cmd_pair)

    c = sub.add_parser(
        "capture",
        help="a pair store from a hand-held capture of a static scene: no poses, no mesh",
        description="Track the camera (frame-to-model ICP on a TSDF), fuse a TSDF twin of the "
        "scene and save its mesh (OUT-stem.twin.ply), render every frame's clean depth from the twin "
        "after refining its registration (ICP), and write the pair store with poses and per-frame "
        "alignment figures, plus OUT-stem.report.png. Reads 7-Scenes/3DMatch folders "
        "(frame-NNNNNN.depth.png, optional .color.*, .pose.txt: then the trajectory error against "
        "them is reported) and TUM folders (associations.txt). A killed run resumes when re-run.",
    )
    c.add_argument("frames", help="folder of the sequence's depth frames")
    c.add_argument("--intrinsics", required=True, help="text file holding the 3x3 camera matrix")
    c.add_argument("--out", required=True, help="pair store to create (must not exist)")
    c.add_argument(
        "--depth-scale",
        type=float,
        default=None,
        help="metres per depth PNG unit (default: 0.001, or 1/5000 for a TUM folder)",
    )
    c.add_argument("--sensor", default="unknown", help="sensor name recorded in the store")
    c.add_argument("--source", default=None, help="source name recorded (default: the folder)")
    option(c, CaptureConfig, "max_depth", "readings beyond this (m) are neither tracked nor fused")
    option(c, CaptureConfig, "voxel", "the twin's TSDF voxel (m)")
    option(c, CaptureConfig, "track_voxel", "the tracking model's TSDF voxel (m)")
    option(c, CaptureConfig, "fuse_frames", "frames fused into the twin, evenly spread")
    option(
        c,
        CaptureConfig,
        "keyframe_every",
        "keyframes of the global refinement after tracking, every this many frames (0: no refinement)",
    )
    option(c, CaptureConfig, "val_fraction", "the last frames of the sequence form the validation split")
    c.add_argument("--no-refine", action="store_true", help="render at the tracked poses, unrefined")
    c.add_argument(
        "--given-poses",
        action="store_true",
        help="do not track: start from the frames' own .pose.txt, refined globally and per frame as a "
        "tracked trajectory is (add --keyframe-every 0 --no-refine to keep them as given)",
    )
    quiet(c)
    c.set_defaults(func=cmd_capture)

    t = sub.add_parser(
        "train",
        help="train RealD²iff (clean-to-noisy depth diffusion) on a pair store",
        description="Train the coarse stage (1/4 resolution, with Frequency-Guided "
        "Supervision) then the fine stage (full-resolution patches, with Discrepancy-"
        "Guided Optimization) on the train split, validating on the val split. "
        "Checkpoints go to OUT.train/; re-running the same command resumes.",
    )
    t.add_argument("pairs", help="pair store from `realdiff pair`")
    t.add_argument("--out", required=True, help="model file to write (EMA weights and config)")
    t.add_argument(
        "--preset",
        default="cpu",
        help="a preset in configs/realdiff/ (cpu: about 20 min on "
        "2 cores; gpu: a CUDA GPU) or a .toml file of your own (default cpu)",
    )
    option(t, TrainConfig, "coarse_iters", "coarse-stage iterations (a preset may set its own)")
    option(t, TrainConfig, "fine_iters", "fine-stage iterations (a preset may set its own)")
    t.add_argument("--no-fgs", action="store_true", help="ablation: coarse stage without FGS")
    t.add_argument("--no-dgo", action="store_true", help="ablation: fine stage without DGO")
    t.add_argument("--no-coarse", action="store_true", help="ablation: fine stage only")
    t.add_argument("--no-fine", action="store_true", help="ablation: coarse stage only")
    t.add_argument(
        "--fine-fold",
        type=int,
        default=None,
        help="pixels the fine network folds into channels per side (the preset's: 4; 8 costs "
        "about half as much, as in the committed default)",
    )
    t.add_argument(
        "--coarse-from", default=None, help="copy the coarse stage, its steps and eta from this model file"
    )
    t.add_argument("--fine-from", default=None, help="copy the fine stage and its steps from this model file")
    t.add_argument(
        "--name",
        default=None,
        help=f"the model's name in benchmark tables (default {field_default(ModelConfig, 'name')})",
    )
    option(t, TrainConfig, "seed", "seed")
    option(t, TrainConfig, "threads", "torch CPU threads, 0 for all cores")
    option(t, TrainConfig, "device", "cpu or cuda (a preset may set its own)")
    quiet(t)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser(
        "distill",
        help="halve a RealD²iff model's coarse sampling steps (progressive distillation)",
        description="Train a student coarse stage whose deterministic "
        "sampler in --steps steps matches the teacher's in its own number of steps; the fine "
        "stage is copied. Checkpoints go to OUT.distill/; re-running the same command resumes.",
    )
    d.add_argument("teacher", help="model file from `realdiff train` (or `realdiff distill`)")
    d.add_argument("--pairs", required=True, help="pair store from `realdiff pair` (its train split)")
    d.add_argument("--out", required=True, help="student model file to write")
    option(d, DistillConfig, "steps", "the student's coarse steps")
    option(d, DistillConfig, "iters", "iterations (2500: about 15 min on 2 cores)")
    option(d, DistillConfig, "seed", "seed")
    option(
        d,
        DistillConfig,
        "name",
        "the student's name in benchmark tables (none: the teacher's + -STEPSstep)",
        type=str,
    )
    option(d, DistillConfig, "threads", "torch CPU threads, 0 for all cores")
    quiet(d)
    d.set_defaults(func=cmd_distill)

    x = stage_parser(
        sub,
        "texture",
        help="give a RealD²iff model the sensor-texture stage (real texture on flat surfaces)",
        description="Cut 64x64 tiles of the real residual's finer band "
        "(under 4 px, in inverse depth) from the flat surfaces of the train split, keep --tiles "
        "of them, and write the model with them: at inference they are pasted at random on the "
        "flat surfaces of its output (realdiff/reald2iff/stages.py).",
    )
    x.add_argument("--tiles", type=int, default=256, help="tiles kept (default 256: 4 MB)")
    x.add_argument("--seed", type=int, default=0, help="seed of the choice of tiles (default 0)")
    x.set_defaults(func=cmd_texture)

    s = stage_parser(
        sub,
        "shift",
        help="give a RealD²iff model the twin-registration stage (real frames' shifts from their renders)",
        description="Fit, for each train frame, the integer "
        "shift of the clean depth that best matches the real depth near depth edges, and write "
        "the model with these shifts: at inference each frame's clean depth is moved by one of "
        "them, scaled by the camera's focal length, before noising "
        "(realdiff/reald2iff/stages.py).",
    )
    s.add_argument("--radius", type=int, default=6, help="largest shift searched, pixels (default 6)")
    s.set_defaults(func=cmd_shift)

    e = stage_parser(
        sub,
        "edges",
        help="give a RealD²iff model the edge-displacement stage (how far the sensor moves depth edges)",
        description="Fit, per jump size, how often real readings beside a depth edge take the other "
        "side's depth, 1 to --max-dist px out, and write the model with these curves: at inference "
        "the clean depth's edges move by a random width drawn from them, smooth along the edge, "
        "before noising (realdiff/reald2iff/stages.py, 3). For stereo cameras, whose foreground grows.",
    )
    e.add_argument("--max-dist", type=int, default=12, help="widest displacement fitted, pixels (default 12)")
    e.add_argument(
        "--length",
        type=float,
        default=32.0,
        help="how far along an edge a displacement holds, pixels (default 32)",
    )
    e.set_defaults(func=cmd_edges)

    r = stage_parser(
        sub,
        "readout",
        help="give a RealD²iff model the readout stage (smooth disparity, depth resampled to colour)",
        description="Find the resampling pitch of the real frames (depth aligned to a colour camera "
        "repeats readings) and the smoothing before the readout that gives the real rate of isolated "
        "readings on flat surfaces, and write the model with them (realdiff/reald2iff/stages.py, 4).",
    )
    r.add_argument(
        "--grid",
        default=None,
        help="resampling pitch, rows x columns in output pixels, e.g. 1.6x1.6 (default: found in the "
        "real frames; 1x1: none)",
    )
    r.add_argument(
        "--frames", type=int, default=32, help="train frames the smoothing is fitted on (default 32)"
    )
    r.set_defaults(func=cmd_readout)

    z = sub.add_parser(
        "noisify",
        help="add sensor-like depth to a simgen store or a robomimic / MimicGen HDF5 dataset",
        description="For each camera, read <camera>_depth (clean) and write "
        "<camera>_depth_<suffix> with a noise model, piece by piece on all cores (or Ray). "
        "A killed run resumes when re-run with the same settings.",
    )
    z.add_argument(
        "store", help="simgen store (from `simgen render`) or robomimic / MimicGen HDF5 dataset (*.hdf5)"
    )
    z.add_argument(
        "--noiser",
        default=DEFAULT_NOISER,
        metavar="NAME | CAM=NAME[,CAM=NAME]",
        help=f"noise model: a registered name ({', '.join(NOISERS)}) or committed model "
        f"({', '.join(COMMITTED_MODELS)}), a .json file saved by a model, or a .pt model from "
        f"`realdiff train` (default {DEFAULT_NOISER}); or one per camera, e.g. "
        "front=reald2iff-texture-shift,wrist=structured-light (cameras not named get the item "
        "without a camera, else the default). `realdiff sensors` lists each model's sensor and "
        "working range; a camera whose depth lies mostly outside it gets a warning",
    )
    z.add_argument("--cameras", default=None, help="comma-separated cameras (default: all)")
    option(z, noisify_store, "suffix", "suffix of the output arrays", flag="--out-key")
    z.add_argument("--range-scale", default=None, metavar="CAM=S[,CAM=S]", help=RANGE_SCALE_HELP)
    option(z, noisify_store, "seed", "noise seed")
    z.add_argument("--overwrite", action="store_true", help="replace an existing output array")
    option(z, noisify_store, "workers", "processes, or Ray CPUs (none: all cores)", type=int)
    option(z, noisify_store, "backend", "where jobs run: local processes or Ray tasks", choices=BACKENDS)
    option(z, noisify_store, "address", "Ray cluster address ('auto': this machine's cluster)")
    z.add_argument(
        "--intrinsics",
        default=None,
        metavar="K.txt | CAM=K.txt[,...]",
        help="other datasets: camera intrinsics (a 3x3 text file), for one camera or all "
        "(default: the file's own: simgen's K attribute, or the robosuite model's camera)",
    )
    z.add_argument(
        "--depth-convention",
        default="auto",
        choices=CONVENTIONS,
        help="HDF5 datasets: how the clean depth is stored: metric (metres, upright), robosuite "
        "(robosuite's normalised depth buffer, upside down, as robomimic's conversion writes it); "
        "auto reads the depth's unit attribute, else takes normalised depth for robosuite's (default auto)",
    )
    z.add_argument(
        "--out",
        default=None,
        help="HDF5 datasets: write a new file with the noisy depth added (default: into the file itself)",
    )
    quiet(z)
    z.set_defaults(func=cmd_noisify)

    e = sub.add_parser(
        "eval",
        help="score noise models against real depth (realism benchmark)",
        description="Run noise models on a pair store's clean depth and compare "
        "with the real depth of the same views: residual W1, hole F1 and rate, noise "
        "versus depth, spectrum, edge profile, two two-sample CNN tests (the quick one and a "
        "stronger one: larger patches, the hole mask and clean-depth gradient as inputs, a deeper "
        "network trained longer), and the floor (real versus real).",
    )
    e.add_argument("--pairs", required=True, help="pair store from `realdiff pair`")
    option(e, evaluate, "split", "train or val")
    e.add_argument(
        "--noiser",
        default=None,
        help="comma-separated noise models: registered names "
        "(reald2iff: the committed weights), .json files or .pt models from `realdiff train`",
    )
    e.add_argument("--all", action="store_true", help="score every registered noiser")
    e.add_argument("--out", default=None, help="folder for metrics.json, metrics.md and PNG plots")
    option(e, evaluate, "seed", "noise and test seed")
    e.add_argument(
        "--no-two-sample",
        action="store_true",
        help="skip both two-sample CNN tests (the strong one takes about 2 minutes a noiser for "
        "200 frames of 480x640 on 2 cores)",
    )
    option(
        e,
        evaluate,
        "threads",
        "CPU threads of the two-sample tests (where another busy process shares the cores, fewer "
        "threads than cores is several times faster)",
    )
    quiet(e)
    e.set_defaults(func=cmd_eval)

    n = sub.add_parser(
        "sensors",
        help="list the noise models with the sensor each imitates",
        description="For every registered and committed noise model: the real sensor it imitates, "
        "its technology, working range, training resolution and data, and its validation figures "
        "(realdiff/params/<name>.sensor.json). The default noiser of `realdiff noisify` is marked.",
    )
    n.add_argument("--json", action="store_true", help="print JSON (a list of objects) instead")
    n.set_defaults(func=cmd_sensors)
    return p


main = main_of(build_parser)
