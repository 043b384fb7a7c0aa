"""RealD²iff's realism table: baselines, ablations, the full model and the floor on the val split.

Trains what is missing under --models (each a `realdiff train` command, printed before it runs):
  full         both stages, FGS and DGO                          (the committed default weights)
  no-fgs       coarse stage retrained without FGS, fine stage copied from full
  no-dgo       fine stage retrained without DGO, coarse stage copied from full
  fine-only    fine stage alone, trained without a coarse stage
  coarse-only  full's coarse stage alone (nothing to train)
(the fine stage trains on the real coarse residual, so the stages are independent and a stage can be
copied), then runs `realdiff eval` on the baselines and every variant, two-sample test included, and
writes metrics.json, metrics.md, curves.png and examples PNGs to --out. CPU: about 25 minutes of
training per retrained stage pair on 2 cores; add `--preset gpu` for a GPU.

    python bench/realism.py [--pairs out/kinect_pairs.zarr] [--models out/models] [--out out/eval_reald2iff]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

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
    args = ap.parse_args()
    m = Path(args.models)
    m.mkdir(parents=True, exist_ok=True)
    full = Path(args.full) if args.full else m / "full.pt"
    train = ["realdiff", "train", args.pairs, "--preset", args.preset, "--quiet"]
    variants = {
        full: [],
        m / "no-fgs.pt": ["--no-fgs", "--fine-from", full, "--name", "reald2iff-no-fgs"],
        m / "no-dgo.pt": ["--no-dgo", "--coarse-from", full, "--name", "reald2iff-no-dgo"],
        m / "fine-only.pt": ["--no-coarse", "--name", "reald2iff-fine-only"],
        m / "coarse-only.pt": ["--no-fine", "--coarse-from", full, "--name", "reald2iff-coarse-only"],
    }
    for path, extra in variants.items():
        if not path.exists():
            run(train + ["--out", path] + extra)
    order = [m / "coarse-only.pt", m / "fine-only.pt", m / "no-fgs.pt", m / "no-dgo.pt", full]
    run(["realdiff", "eval", "--pairs", args.pairs, "--split", "val", "--out", args.out,
         "--noiser", ",".join(BASELINES + [str(p) for p in order])])


if __name__ == "__main__":
    main()
