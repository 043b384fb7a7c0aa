"""RealD²iff's realism table: baselines, ablations, the full model and the floor on the val split.

Trains what is missing under --models (each a `realdiff train` command, printed before it runs):
  full         both stages, FGS and DGO, 4 + 1 steps               (committed as reald2iff-full)
  no-fgs       coarse stage retrained without FGS, fine stage copied from full
  no-dgo       fine stage retrained without DGO, coarse stage copied from full
  fine-only    fine stage alone, trained without a coarse stage
  coarse-only  full's coarse stage alone (nothing to train)
  distilled    full's coarse stage distilled to 2 steps (`realdiff distill`; committed as reald2iff-2step)
  shipped      distilled's coarse stage with a fine stage folding 8x8 pixels, retrained with DGO
               (the committed default, reald2iff: 40 % less sampling time than full)
  textured     shipped with the sensor-texture stage (`realdiff texture`; committed as reald2iff-texture)
  shifted      textured with the twin-registration stage (`realdiff shift`; committed as
               reald2iff-texture-shift, the default of `realdiff noisify`)
(the fine stage trains on the real coarse residual, so the stages are independent and a stage can be
copied), then runs `realdiff eval` on the baselines and every variant, two-sample test included,
once per seed in --seeds (each seed draws other sensor noise and another two-sample split), and
writes each seed's metrics.json, metrics.md, curves.png and examples PNGs to --out/seed<S>/, with
one more row: the full model sampled with 8 coarse + 4 fine steps instead of the shipped 4 + 1.
The table of the means over the seeds (with their standard deviation) goes to --out/metrics.md:
several metrics move by more than the ablations' differences from one noise draw to the next, so
one seed is not enough to say what a loss term does. Then `grid.png`: clean / real / generated
validation examples of the shipped model. CPU: about 5 to 15 minutes of training per variant on 2
cores (`--preset gpu` for a GPU), then about 5 minutes of evaluation per seed.

    python bench/realism.py [--pairs out/kinect_pairs.zarr] [--models out/models] [--out out/eval_reald2iff]
                            [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from realdiff.evaluate import COLUMNS
from realdiff.reald2iff.noiser import RealD2iffNoiser

BASELINES = ["identity", "gaussian", "axial-lateral", "structured-light"]


def run(args: list) -> None:
    args = [str(a) for a in args]
    print("$ " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="out/kinect_pairs.zarr", help="pair store from `realdiff pair`")
    ap.add_argument("--models", default="out/models", help="folder of the variants' model files")
    ap.add_argument("--out", default="out/eval_reald2iff", help="folder for the benchmark's files")
    ap.add_argument("--full", default=None, help="use this model as `full` instead of training it")
    ap.add_argument("--preset", default="cpu", help="training preset (cpu, gpu)")
    ap.add_argument("--seeds", default="0,1,2", help="evaluation seeds (default 0,1,2)")
    args = ap.parse_args()
    m = Path(args.models)
    m.mkdir(parents=True, exist_ok=True)
    full = Path(args.full) if args.full else m / "full.pt"
    train = ["realdiff", "train", args.pairs, "--preset", args.preset, "--quiet"]
    variants = {
        full: ["--name", "reald2iff-full"],
        m / "no-fgs.pt": ["--no-fgs", "--fine-from", full, "--name", "reald2iff-no-fgs"],
        m / "no-dgo.pt": ["--no-dgo", "--coarse-from", full, "--name", "reald2iff-no-dgo"],
        m / "fine-only.pt": ["--no-coarse", "--name", "reald2iff-fine-only"],
        m / "coarse-only.pt": ["--no-fine", "--coarse-from", full, "--name", "reald2iff-coarse-only"],
    }
    for path, extra in variants.items():
        if not path.exists():
            run(train + ["--out", path] + extra)
    distilled = m / "distilled.pt"  # full's coarse stage distilled from 4 to 2 steps
    if not distilled.exists():
        run(
            [
                "realdiff",
                "distill",
                full,
                "--pairs",
                args.pairs,
                "--out",
                distilled,
                "--name",
                "reald2iff-2step",
                "--quiet",
            ]
        )
    shipped = m / "shipped.pt"  # the distilled coarse stage and a cheaper fine stage: the default
    if not shipped.exists():
        run(
            train
            + ["--out", shipped, "--coarse-from", distilled, "--fine-fold", "8", "--fine-iters", "12000"]
        )
    textured = m / "textured.pt"  # the default with real sensor texture on flat surfaces
    if not textured.exists():
        run(["realdiff", "texture", shipped, "--pairs", args.pairs, "--out", textured])
    shifted = m / "shifted.pt"  # and with the twin's registration error: the default of realdiff noisify
    if not shifted.exists():
        run(["realdiff", "shift", textured, "--pairs", args.pairs, "--out", shifted])
    slow = m / "full-8+4-steps.json"  # the full model sampled with more steps
    slow.write_text(RealD2iffNoiser(weights=str(full), coarse_steps=8, fine_steps=4).to_json())
    order = [
        m / "coarse-only.pt",
        m / "fine-only.pt",
        m / "no-fgs.pt",
        m / "no-dgo.pt",
        full,
        slow,
        distilled,
        shipped,
        textured,
        shifted,
    ]
    seeds = [int(x) for x in args.seeds.split(",")]
    for seed in seeds:
        if not (Path(args.out) / f"seed{seed}" / "metrics.json").exists():
            run(
                [
                    "realdiff",
                    "eval",
                    "--pairs",
                    args.pairs,
                    "--split",
                    "val",
                    "--out",
                    Path(args.out) / f"seed{seed}",
                    "--seed",
                    seed,
                    "--noiser",
                    ",".join(BASELINES + [str(p) for p in order]),
                ]
            )
    table = mean_table(
        [json.loads((Path(args.out) / f"seed{s}" / "metrics.json").read_text()) for s in seeds]
    )
    (Path(args.out) / "metrics.md").write_text(table)
    print("\n" + table)
    grid = Path(args.out) / "grid.png"
    example_grid(args.pairs, str(shipped), grid)
    print(f"wrote {grid}")


def mean_table(results: list[dict]) -> str:
    """Markdown table of each metric's mean over seeds (one realdiff eval result per seed), with
    the standard deviation over the seeds in brackets."""

    def cell(values):
        v = [x for x in values if x is not None]
        if not v:
            return "-"
        return f"{np.mean(v):.3f}" + (f" ({np.std(v):.3f})" if len(v) > 1 else "")

    rows = ["| noiser | " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for name in results[0]["noisers"]:
        rows.append(
            f"| {name} | "
            + " | ".join(cell([r["noisers"][name]["metrics"].get(k) for r in results]) for k, _ in COLUMNS)
            + " |"
        )
    rows.append(
        "| floor (real vs real) | "
        + " | ".join(cell([r["floor"].get(k) for r in results]) for k, _ in COLUMNS)
        + " |"
    )
    return (
        f"Split `{results[0]['split']}`, {results[0]['frames']} frames; mean over seeds "
        f"{', '.join(str(r['seed']) for r in results)} (standard deviation in brackets).\n\n"
        + "\n".join(rows)
        + "\n"
    )


def example_grid(pairs: str, model: str, out: Path, frames=(20, 100, 180), seed: int = 0) -> None:
    """Validation frames as rows: clean | real | RealD²iff | structured-light depth, then the residuals
    real - clean | RealD²iff - clean (+-30 mm, red = farther, holes black), at half resolution."""
    import imageio.v2 as imageio
    import numpy as np

    from realdiff import load_noiser
    from realdiff.pairs import load_split
    from simgen.preview import colorize_depth

    clean, real, K, ids = load_split(pairs, "val")
    noisers = [load_noiser(model), load_noiser("structured-light")]

    def residual(c, z, lim=0.03):
        x = np.clip(np.where((c > 0) & (z > 0), z - c, 0) / lim, -1, 1)
        img = np.stack([0.5 + 0.5 * x, 0.5 - 0.5 * np.abs(x), 0.5 - 0.5 * x], -1)
        img[(c > 0) & ~(z > 0)] = 0
        return (255 * img).astype(np.uint8)

    rows = []
    for f in frames:
        c, z = clean[f], real[f]
        gens = [
            n.noisify_frames(c[None], K, [np.random.default_rng([seed, int(ids[f])])])[0] for n in noisers
        ]
        v = c[c > 0]
        lo, hi = float(np.percentile(v, 1)), float(np.percentile(v, 99))
        tiles = [colorize_depth(x, lo, hi) for x in (c, z, *gens)] + [residual(c, z), residual(c, gens[0])]
        rows.append(np.concatenate([np.pad(t[::2, ::2], ((0, 3), (0, 3), (0, 0))) for t in tiles], axis=1))
    imageio.imwrite(out, np.concatenate(rows, axis=0))


if __name__ == "__main__":
    main()
