"""simgen command line: render, batch, info, preview, tasks, depth, export."""

from __future__ import annotations

import argparse
from pathlib import Path

from plumbing.cli import Parser, field_default, given, main_of, option, quiet
from simgen.cameras import CAMERAS, parse_resolution
from simgen.runner import RenderConfig


def _resolution(text: str) -> tuple[int, int]:
    try:
        return parse_resolution(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _camera_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one camera")
    return names


def cmd_render(args) -> int:
    from simgen.randomize import Randomization
    from simgen.runner import render_dataset

    settings = {**given(args, RenderConfig), "randomize": Randomization.parse(args.randomize)}
    if args.resolution:
        settings["width"], settings["height"] = args.resolution
    cfg = RenderConfig(**settings)
    summary = render_dataset(cfg, args.out, progress=not args.quiet)  # a failed worker: WorkerFailed
    print(
        f"{args.out}: wrote {summary['episodes_written']} episodes "
        f"({summary['frames_written']} frames, {summary['successes']} successful); "
        f"store holds {summary['episodes_total']}"
    )
    return 0


def cmd_batch(args) -> int:
    from simgen.batch import load_job, run_job

    if args.address and args.backend is None:
        args.backend = "ray"
    job = load_job(args.job, backend=args.backend, workers=args.workers, address=args.address)
    summary = run_job(job, progress=not args.quiet)
    r = summary["rendered"]
    print(
        f"rendered {r['episodes']} episodes ({r['frames']} frames) in {summary['render_wall_s']:.0f} s: "
        f"{summary['episodes_per_hour']:.0f} episodes/hour"
    )
    for s in summary["stores"].values():
        print(f"{s['path']}: {s['episodes']} episodes, {s['successes']} successful")
    return 0


def _bytes_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cmd_info(args) -> int:
    from simgen.store import Store

    s = Store(args.store)
    m = s.meta
    ok = sum(e["success"] for e in s.episodes)
    rate = f"{ok}/{s.n_episodes} ({100 * ok / s.n_episodes:.1f}%)" if s.n_episodes else "n/a"
    print(f"store      {s.path}")
    print(
        f"schema     {m['schema']} v{m['schema_version']}   task {m['task']}   "
        f"engine simgen {m['engine']['simgen']}, mujoco {m['engine']['mujoco']}"
    )
    print(f"episodes   {s.n_episodes}   frames {s.n_frames}   control {m['control_hz']} Hz   success {rate}")
    if s.n_episodes:
        seeds = [e["seed"] for e in s.episodes]
        print(f"seeds      {min(seeds)}..{max(seeds)}")
    for name, c in m["cameras"].items():
        K = c["K"]
        print(
            f"camera     {name}: {c['width']}x{c['height']} fx={K[0][0]:.2f} fy={K[1][1]:.2f} "
            f"cx={K[0][2]:.2f} cy={K[1][2]:.2f} mount={c['mount']}"
        )
    print(
        f"{'array':<20}{'shape':<21}{'dtype':<9}{'chunks':<18}{'shards':<18}{'on disk':>10}{'per frame':>11}"
    )
    total = 0
    for k in s.keys():
        a = s.array(k)
        b = _bytes_on_disk(s.path / "data" / k)
        total += b
        per = f"{b / a.shape[0]:.0f} B" if a.shape[0] else "-"
        shards = str(a.shards) if a.shards else "-"
        print(
            f"{k:<20}{str(a.shape):<21}{str(a.dtype):<9}{str(a.chunks):<18}{shards:<18}"
            f"{b / 1e6:>8.2f}MB{per:>11}"
        )
    print(f"total on disk {_bytes_on_disk(s.path) / 1e6:.2f} MB (data {total / 1e6:.2f} MB)")
    return 0


def cmd_preview(args) -> int:
    from simgen.preview import write_preview
    from simgen.store import Store

    if not args.out.lower().endswith((".mp4", ".png")):
        raise ValueError(f"--out {args.out!r} must end in .mp4 or .png")
    s = Store(args.store)
    if not 0 <= args.episode < s.n_episodes:
        raise ValueError(f"--episode {args.episode} out of range: the store has {s.n_episodes} episodes")
    write_preview(s, args.episode, args.out)
    print(f"wrote {args.out}")
    return 0


def cmd_depth(args) -> int:
    from interop.depth_replay import add_depth

    summary = add_depth(
        args.dataset,
        args.cameras,
        width=args.width,
        height=args.height,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.quiet,
    )
    sizes = ", ".join(f"{c} {w}x{h}" for c, (w, h) in summary["sizes"].items())
    print(
        f"{args.dataset}: depth of {sizes} in {summary['demos']} demos ({summary['frames']} frames; "
        f"{summary['rendered']} demos rendered by this run)"
    )
    return 0


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not comma-separated numbers") from None


def cmd_export(args) -> int:
    from interop.export import export

    s = export(
        args.store,
        args.format,
        args.out,
        noisy_only=args.noisy_only,
        noisy_key=args.noisy_key,
        cameras=list(args.cameras) if args.cameras else None,
        overwrite=args.overwrite,
        progress=not args.quiet,
        points=args.points,
        sampling=args.sampling,
        workspace=args.workspace,
    )
    print(f"{s['out']}: {s['format']} export of {s['episodes']} episodes ({s['frames']} frames)")
    return 0


def cmd_tasks(args) -> int:
    from tasks import REGISTRY, task_names

    tasks = [REGISTRY[n] for n in task_names()]
    width = max(len(t.name) for t in tasks) + 2
    for t in tasks:
        print(
            f"{t.name:<{width}}{t.description}  (objects: {', '.join(t.object_bodies) or 'none'}; "
            f"max {t.max_steps} steps)"
        )
    return 0


def build_parser() -> Parser:
    p = Parser(
        prog="simgen",
        description="Scripted MuJoCo manipulation demos with clean metric depth, written to Zarr stores.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "render",
        help="render expert demonstrations into a store",
        description="Roll out a task's scripted expert and append episodes to a "
        "Zarr store. Re-running the same command resumes an interrupted run.",
    )
    r.add_argument(
        "--task",
        required=True,
        help="task name (see `simgen tasks`; robosuite:* tasks run robosuite's own environments)",
    )
    r.add_argument(
        "--episodes", type=int, required=True, help="total episodes the store should hold when done"
    )
    r.add_argument("--out", required=True, help="store path (a folder, conventionally *.zarr)")
    option(r, RenderConfig, "seed", "base seed: episode i uses seed S+i")
    option(
        r, RenderConfig, "cameras", f"comma-separated cameras, known: {','.join(CAMERAS)}", type=_camera_list
    )
    size = f"{field_default(RenderConfig, 'width')}x{field_default(RenderConfig, 'height')}"
    r.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        help=f"WIDTHxHEIGHT of every camera; the vertical field of view is kept (default {size})",
    )
    option(r, RenderConfig, "rgb", "also store RGB images")
    option(r, RenderConfig, "seg", "also store segmentation labels, classes in the store attributes")
    option(r, RenderConfig, "workers", "parallel worker processes; results do not depend on it")
    option(
        r,
        RenderConfig,
        "commit_frames",
        "commit finished episodes to the store in batches of about "
        "this many frames: smaller loses less work to a crash, larger writes faster",
    )
    r.add_argument(
        "--randomize",
        default="",
        metavar="SWITCHES",
        help="domain randomisation switches to turn on (or no_NAME off), comma-separated: "
        "object_pose, object_size, object_color (on by default), table_height, "
        "table_texture, lighting, camera_jitter; `all` or `none` for every one",
    )
    quiet(r)
    r.set_defaults(func=cmd_render)

    b = sub.add_parser(
        "batch",
        help="render a multi-task job file on local processes or Ray",
        description="Render every [[task]] of a TOML job file in shards, on a local "
        "process pool or Ray, and merge each task into <out>/<name>.zarr. "
        "Re-running the job finishes whatever a killed run left undone. "
        "The file format is in docs/batch.md.",
    )
    b.add_argument("job", help="job file (TOML)")
    b.add_argument(
        "--backend",
        choices=["local", "ray"],
        default=None,
        help="override the job's backend (default: the file's, else local)",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel workers (local processes or Ray CPUs; default: the file's, else all cores)",
    )
    b.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join, e.g. auto (implies --backend ray); default: start a local Ray",
    )
    quiet(b)
    b.set_defaults(func=cmd_batch)

    i = sub.add_parser(
        "info",
        help="summarise a store",
        description="Episodes, frames, success rate, cameras and every array's "
        "shape, dtype, chunks and bytes on disk.",
    )
    i.add_argument("store", help="store path")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser(
        "preview",
        help="write an episode as MP4 or PNG",
        description="Colour-mapped depth (near red, far blue, no reading black) "
        "beside RGB for each camera; .mp4 plays the episode, .png shows 6 frames.",
    )
    v.add_argument("store", help="store path")
    v.add_argument("--episode", type=int, default=0, help="episode index (default 0)")
    v.add_argument("--out", required=True, help="output file ending in .mp4 or .png")
    v.set_defaults(func=cmd_preview)

    t = sub.add_parser(
        "tasks",
        help="list the registered tasks",
        description="List every task in the registry with its description.",
    )
    t.set_defaults(func=cmd_tasks)

    d = sub.add_parser(
        "depth",
        help="add metric depth to a robosuite HDF5 dataset by replaying its states",
        description="Replay the stored MuJoCo states of every demo of a robomimic / MimicGen HDF5 "
        "file and add metric depth (obs/<camera>_depth, metres, upright, 0 = no reading, K in its "
        "attributes) and per-frame camera-to-world extrinsics (obs/<camera>_extrinsics), and the "
        "same under next_obs. Re-running the same command resumes a killed run; the file is "
        "replaced in one step at the end. Format: docs/formats/robomimic.md.",
    )
    d.add_argument("dataset", help="robomimic HDF5 file (data/demo_N with states and model_file)")
    d.add_argument(
        "--cameras", required=True, type=_camera_list, help="comma-separated robosuite camera names"
    )
    d.add_argument("--width", type=int, default=None, help="image width (default: the file's env_args)")
    d.add_argument("--height", type=int, default=None, help="image height (default: the file's env_args)")
    d.add_argument("--overwrite", action="store_true", help="replace depth and extrinsics already there")
    d.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    quiet(d)
    d.set_defaults(func=cmd_depth)
    x = sub.add_parser(
        "export",
        help="write a store as a LeRobot, robomimic or DP3 dataset",
        description="Export actions, proprioception, RGB, clean and noisy depth (float32 metres, "
        "0 = no reading), intrinsics, per-frame extrinsics, episode boundaries, success flags and "
        "the task to another framework's format: lerobot (a LeRobot v3 folder), robomimic (an "
        "HDF5 file) or dp3 (3D Diffusion Policy's zarr, one camera, with point clouds). OUT is "
        "written as OUT.partial and renamed when complete. Formats: docs/formats/.",
    )
    x.add_argument("store", help="store path")
    x.add_argument("--format", required=True, choices=["lerobot", "robomimic", "dp3"], help="output format")
    x.add_argument("out", help="output path (a folder for lerobot and dp3, an .hdf5 file for robomimic)")
    x.add_argument(
        "--noisy-only",
        action="store_true",
        help="a training set: the noisy depth (see --noisy-key) and no clean depth",
    )
    x.add_argument(
        "--noisy-key",
        default=None,
        metavar="SUFFIX",
        help="export the noisified depth <camera>_depth_SUFFIX of `realdiff noisify` (default: with "
        "--noisy-only noisy, else every complete noisified depth)",
    )
    x.add_argument(
        "--cameras",
        "--camera",
        type=_camera_list,
        default=None,
        help="comma-separated cameras to export (default: all; dp3 takes one, default the first)",
    )
    x.add_argument("--points", type=int, default=1024, help="dp3: points per point cloud (default 1024)")
    x.add_argument(
        "--sampling",
        choices=["fps", "uniform"],
        default="fps",
        help="dp3: farthest point or seeded uniform sampling of the points (default fps)",
    )
    x.add_argument(
        "--workspace",
        type=_numbers,
        default=None,
        metavar="XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX",
        help="dp3: world-frame box the point clouds are cropped to (default: around the hand's and "
        "objects' positions, above the table)",
    )
    x.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    quiet(x)
    x.set_defaults(func=cmd_export)
    return p


main = main_of(build_parser)
