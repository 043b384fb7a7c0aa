"""Sim-to-real benchmark: does training on noisified depth keep a policy working under a real-like sensor?

For each task: render demonstrations once, noisify them with each noiser used as a training depth,
train one policy per training depth (clean and each noiser) and evaluate every policy under every
sensor (clean and each noiser), `--eval-episodes` closed-loop episodes per cell. Prints the success
matrix (rows: training depth, columns: sensor at evaluation) and writes it as matrix.md, matrix.json
and a heat map matrix.png in --out. Every stage is a CLI command, printed before it runs; each
resumes or is skipped when its output exists, so a killed benchmark is finished by running it again.

The wrist camera (5-25 cm) gets each noiser built 10 times smaller (`--range-scale wrist=0.1`, a
short-range sensor: see RangeScaled in realdiff/sensors/range_scaled.py), both for the training depth and
for the sensor at evaluation; the front camera (about 1 m) gets the room-scale noisers as they are.

CPU configuration (the defaults, 2 cores): 200 demonstrations, front and wrist cameras at 128x128
(random 124x124 crops), 8000 steps at batch 64 (about 40 minutes a policy on 2 cores, alone), 50
episodes a cell (about 2 minutes each): about 3 hours for one task's 4 x 4 matrix.
On a GPU one would use batch 256, 20000+ steps and the wider U-Net of Chi et al. (down dims
256-512-1024) with both cameras; evaluation stays on CPU (rendering), one process per core.

    python bench/sim2real.py [--tasks pick] [--demos 200] [--steps 8000] [--eval-episodes 50]
                             [--out out/sim2real]
                             [--cameras front,wrist] [--depths clean,reald2iff] [--range-scale wrist=0.1]
                             [--copies 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from policies.sensors import make_sensor, sensor_model
from realdiff.noisify import is_noisified
from realdiff.sensors import parse_range_scale
from simgen.store import Store

NOISERS = ["gaussian", "structured-light", "reald2iff"]


def run(args: list) -> None:
    args = [str(a) for a in args]
    print("$ " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def key(noiser: str) -> str:
    return noiser.replace("-", "_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="pick", help="comma-separated tasks (default pick)")
    ap.add_argument("--demos", type=int, default=200, help="demonstrations per task")
    ap.add_argument("--steps", type=int, default=8000, help="policy training steps")
    ap.add_argument("--eval-episodes", type=int, default=50, help="episodes per matrix cell")
    ap.add_argument("--noisers", default=",".join(NOISERS), help="noisers for training and sensors")
    ap.add_argument("--cameras", default="front,wrist", help="cameras the policies see (default front,wrist)")
    ap.add_argument(
        "--depths",
        default=None,
        help="training depths, a subset of clean and the noisers "
        "(default: all; the matrix then holds only these rows)",
    )
    ap.add_argument(
        "--range-scale",
        default="wrist=0.1",
        help="cameras whose sensor (for noisifying and at evaluation) is built S times "
        "smaller, CAM=S,... (default wrist=0.1: a short-range wrist camera; '' for none)",
    )
    ap.add_argument(
        "--copies",
        type=int,
        default=1,
        help="noisified copies of each training depth (seeds 0..N-1); each training "
        "sequence reads one at random (runs in runs/TASK_DEPTH_xN; default 1)",
    )
    ap.add_argument("--out", default="out/sim2real")
    a = ap.parse_args()
    if a.copies < 1:
        ap.error("--copies must be at least 1")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    noisers = [n for n in a.noisers.split(",") if n]
    cams = a.cameras.split(",")
    depths = ["clean"] + noisers
    if a.depths:
        unknown = sorted(set(a.depths.split(",")) - set(depths))
        if unknown:
            ap.error(f"--depths: {', '.join(unknown)} not among {', '.join(depths)}")
        depths = [d for d in depths if d in a.depths.split(",")]
    sensors = ["clean"] + [f"noiser:{n}" for n in noisers]
    scale = {c: v for c, v in parse_range_scale(a.range_scale).items() if c in cams}
    scale_args = ["--range-scale", ",".join(f"{c}={v:g}" for c, v in scale.items())] if scale else []
    rows = [d if d == "clean" or a.copies == 1 else f"{d} x{a.copies}" for d in depths]  # matrix row labels
    described = {s: sensor_model(make_sensor(s)) for s in sensors}  # each model loaded once, not per cell
    matrix = {}
    for task in a.tasks.split(","):
        store = out / f"{task}.zarr"
        run(
            ["simgen", "render", "--task", task, "--episodes", a.demos, "--out", store, "--no-rgb", "--quiet"]
        )
        for n in [d for d in depths if d != "clean"]:  # only the training depths need a noisified copy
            for seed in range(a.copies):
                if not all(
                    noisified_as(
                        store, f"{c}_depth_{copy_key(n, seed)}", described[f"noiser:{n}"], scale.get(c), seed
                    )
                    for c in cams
                ):
                    run(
                        [
                            "realdiff",
                            "noisify",
                            store,
                            "--noiser",
                            n,
                            "--out-key",
                            copy_key(n, seed),
                            "--seed",
                            seed,
                            "--cameras",
                            a.cameras,
                            *scale_args,
                            "--overwrite",
                            "--quiet",
                        ]
                    )
        for d, row in zip(depths, rows):
            copies = 1 if d == "clean" else a.copies
            rkey = ",".join(
                f"{cams[0]}_depth" if d == "clean" else f"{cams[0]}_depth_{copy_key(d, seed)}"
                for seed in range(copies)
            )
            rdir = out / "runs" / (f"{task}_{d}" if copies == 1 else f"{task}_{d}_x{copies}")
            if not (rdir / "policy.pt").exists():
                run(
                    [
                        "policies",
                        "train",
                        store,
                        "--task",
                        task,
                        "--depth-key",
                        rkey,
                        "--cameras",
                        a.cameras,
                        "--out",
                        rdir,
                        "--steps",
                        a.steps,
                        "--quiet",
                    ]
                )
            for s in sensors:
                edir = rdir / "eval" / s.replace("noiser:", "")
                res = edir / "results.json"
                done = json.loads(res.read_text()) if res.exists() else {}
                if (done.get("episodes"), done.get("range_scale"), done.get("sensor_model")) != (
                    a.eval_episodes,
                    scale,
                    described[s],
                ):
                    run(
                        [
                            "policies",
                            "eval",
                            rdir,
                            "--task",
                            task,
                            "--episodes",
                            a.eval_episodes,
                            "--sensor",
                            s,
                            *scale_args,
                            "--out",
                            edir,
                            "--quiet",
                        ]
                    )
                r = json.loads(res.read_text())
                matrix[(task, row, s)] = (r["successes"], r["episodes"], r["ci95"])
    write_matrix(matrix, rows, sensors, out)


def copy_key(noiser: str, seed: int) -> str:
    """The --out-key of a training depth's copy noisified with `seed` (reald2iff, reald2iff_s1, ...)."""
    return key(noiser) if seed == 0 else f"{key(noiser)}_s{seed}"


def noisified_as(store: Path, key: str, model: dict, range_scale: float | None, seed: int = 0) -> bool:
    """Whether data/<key> is complete and was made by the noiser `model` describes as it is now
    (NoiseModel.describe(): version, parameters, weights) with this range scale (None: unscaled)
    and seed."""
    if not is_noisified(store, key):
        return False
    config = dict(Store(store).array(key).attrs["noisify"]["config"])
    made = (config.pop("range_scale", 1.0), config.pop("seed", 0))
    return made == (range_scale or 1.0, seed) and config == model


def write_matrix(matrix: dict, depths: list, sensors: list, out: Path) -> None:
    tasks = sorted({t for t, _, _ in matrix})
    lines = []
    for t in tasks:
        lines += [
            f"**{t}**: success rate (95% Wilson interval), rows = training depth, "
            "columns = sensor at evaluation",
            "",
            "| trained on \\ evaluated under | "
            + " | ".join(s.replace("noiser:", "") for s in sensors)
            + " |",
            "|---" * (len(sensors) + 1) + "|",
        ]
        for d in depths:
            cells = []
            for s in sensors:
                k, n, (lo, hi) = matrix[(t, d, s)]
                cells.append(f"{100 * k / n:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "matrix.md").write_text(text)
    (out / "matrix.json").write_text(
        json.dumps(
            [
                {"task": t, "trained_on": d, "sensor": s, "successes": k, "episodes": n, "ci95": ci}
                for (t, d, s), (k, n, ci) in matrix.items()
            ],
            indent=2,
        )
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(tasks), figsize=(1.6 * len(sensors) + 2.5, 1.0 * len(depths) + 1.5), squeeze=False
    )
    for ax, t in zip(axes[0], tasks):
        m = np.array([[matrix[(t, d, s)][0] / matrix[(t, d, s)][1] for s in sensors] for d in depths])
        ax.imshow(m, vmin=0, vmax=1, cmap="RdYlGn")
        ax.set_xticks(
            range(len(sensors)), [s.replace("noiser:", "") for s in sensors], rotation=30, ha="right"
        )
        ax.set_yticks(range(len(depths)), depths)
        ax.set_xlabel("sensor at evaluation")
        ax.set_ylabel("training depth")
        ax.set_title(f"{t}: success rate")
        for i in range(len(depths)):
            for j in range(len(sensors)):
                ax.text(j, i, f"{100 * m[i, j]:.0f}%", ha="center", va="center", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "matrix.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'matrix.md'}, {out / 'matrix.json'}, {out / 'matrix.png'}")


if __name__ == "__main__":
    main()
