"""How close to the real sensor can a model trained on de-banded targets get in the two-sample test?

RealD²iff learns the real depth with its readout banding smoothed out (`dequantise`, see
realdiff.train) and reads its output out on the sensor's levels. This prints the two-sample
accuracy (realdiff.metrics.two_sample_accuracy, as in `realdiff eval`) of three stand-ins for a
perfect model of that target, on the real frames themselves (holes exactly the real ones):
  oracle     the real depth, dequantised, then read out on the levels again;
  raw        the real depth dequantised, not read out;
  real       the real depth itself (a check: 0.5).
A model that matched its training target perfectly would score the oracle's figure, whatever its
size or sampling steps; a lower two-sample accuracy needs a target that keeps the sub-level texture.

Then, for the model (default: the Kinect `reald2iff`; frames drawn as `realdiff eval --seed S`
draws them), which part of its output gives it away, its holes or its depth values, and which
spatial band of the values:
  model                      the model's output (what `realdiff eval` scores);
  model values, real holes   its depth values with the real holes (where it has a hole and the
                             real depth a reading, the real reading);
  real values, model holes   the real depth values with its holes (where it reads and the real
                             depth has a hole, its reading);
  model >4 px, real finer    the residual's coarser band (a 4 px Gaussian low-pass, in inverse depth)
                             from the model and the finer band from the dequantised real depth, read
                             out on the levels, with the real holes;
  real >4 px, model finer    the other way round.
and, with the model's coarser band and splitting the finer band by where it lies (near edges: within
3 px of a clean-depth jump of more than 2 %, a hole or the border of the clean depth; the rest, about
88 % of the readings, is flat surface):
  real finer on flat         the real finer band on flat surfaces, the model's near edges;
  model finer on flat        the model's finer band on flat surfaces, the real one near edges;
  train frames' finer on flat  on flat surfaces, the dequantised real finer band of a train-split frame
                             (frame 3i for validation frame i; its own flat surfaces, 0 elsewhere), the
                             model's near edges: real sensor texture, but not of this view.

Last, where each puts depth edges (realdiff.metrics.edge_swaps): the fraction of background pixels
1, 2, 4 and 8 px from a depth jump that read the foreground's depth, and of foreground pixels that
read the background's, for the real depth and the model (seed 0).

About 2 minutes a seed on 2 cores (--strong, the stronger test of `realdiff eval`: about 1.5 minutes a
row and seed for 29 frames). --noiser picks another RealD²iff model (a name or a weights file):

    python bench/two_sample_ceiling.py [--pairs out/kinect_pairs.zarr] [--split val] [--seeds 0,1,2]
    python bench/two_sample_ceiling.py --pairs d435.zarr --noiser reald2iff-d435 --strong --seeds 0
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from realdiff import metrics
from realdiff.evaluate import generate
from realdiff.pairs import load_split
from realdiff.reald2iff.model import dequantise, snap_to_levels
from realdiff.reald2iff.noiser import RealD2iffNoiser
from realdiff.reald2iff.stages import flat_texture, lowpass, near_edges
from realdiff.sensors import load_noiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="out/kinect_pairs.zarr")
    ap.add_argument("--split", default="val")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--noiser", default="reald2iff", help="a RealD²iff model: name or weights file")
    ap.add_argument("--strong", action="store_true", help="the stronger two-sample test")
    a = ap.parse_args()
    test = metrics.two_sample_strong_accuracy if a.strong else metrics.two_sample_accuracy
    clean, real, K, ids = load_split(a.pairs, a.split)
    tclean, treal, _, _ = load_split(a.pairs, "train")
    donor = np.arange(len(clean)) * 3 % len(tclean)  # a train frame for each frame of the split
    tclean, treal = tclean[donor], treal[donor]
    noiser = load_noiser(a.noiser)  # loaded once
    if not isinstance(noiser, RealD2iffNoiser):
        raise SystemExit(f"--noiser {a.noiser}: not a RealD²iff model")
    levels = noiser.model.cfg.levels  # the levels fitted on the train split
    deq = dequantised(real, levels)
    inv = torch.where(deq > 0, 1 / deq.clamp_min(1e-3), 0.0)
    oracle = torch.where(deq > 0, 1 / snap_to_levels(inv, levels).clamp_min(1 / 20), 0.0).numpy()
    seeds = [int(s) for s in a.seeds.split(",")]
    kind = "strong two-sample" if a.strong else "two-sample"
    print(f"{noiser.name}, {a.split} split, {len(clean)} frames; {kind} accuracy over seeds {seeds}")
    for name, gen in (
        ("oracle (dequantised, read out)", oracle),
        ("dequantised, not read out", deq.numpy()),
        ("real itself", real),
    ):
        report(name, [test(clean, real, gen, seed=s) for s in seeds])
    rows = {
        "model": [],
        "model values, real holes": [],
        "real values, model holes": [],
        "model >4 px, real finer": [],
        "real >4 px, model finer": [],
        "model >4 px, real finer on flat": [],
        "model >4 px, model finer on flat": [],
        "model >4 px, train frames' finer on flat": [],
    }
    inv_clean = torch.from_numpy(np.where(clean > 0, 1 / np.maximum(clean, 1e-3), 0.0))
    reads_np = real > 0
    reads = torch.from_numpy(reads_np)
    res_real = torch.where(reads, inv - inv_clean, 0.0)  # the dequantised real residual, inverse depth
    low_real = lowpass(res_real, reads, 4.0)
    flat = ~near_edges(torch.from_numpy(clean), ~reads)
    t_fine = flat_texture(torch.from_numpy(np.ascontiguousarray(tclean)), dequantised(treal, levels))[0]
    del tclean, treal

    def readout(res):  # an inverse-depth residual read out on the levels, with the real holes
        return torch.where(reads, 1 / snap_to_levels(inv_clean + res, levels).clamp_min(1 / 20), 0.0).numpy()

    for s in seeds:
        gen = generate(noiser, clean, K, ids, seed=s)  # exactly what `realdiff eval --seed S` scores
        noiser.model.cfg.levels = ()  # the same draw, not read out (reading it out here instead of
        # generating twice moves the classifier's figures by about 0.01 through float rounding)
        cont = torch.from_numpy(generate(noiser, clean, K, ids, seed=s))
        noiser.model.cfg.levels = levels
        inv_gen = torch.where(cont > 0, 1 / cont.clamp_min(1e-3), 0.0)
        model_reads = gen > 0
        res_gen = torch.where(
            reads & (cont > 0), inv_gen - inv_clean, res_real
        )  # real holes, real values in model holes
        low_gen = lowpass(res_gen, reads, 4.0)
        fine_real, fine_gen = res_real - low_real, res_gen - low_gen
        for name, x in zip(
            rows,
            (
                gen,
                np.where(reads_np, np.where(model_reads, gen, real), 0),
                np.where(model_reads, np.where(reads_np, real, gen), 0),
                readout(low_gen + fine_real),
                readout(low_real + fine_gen),
                readout(low_gen + torch.where(flat, fine_real, fine_gen)),
                readout(low_gen + torch.where(flat, fine_gen, fine_real)),
                readout(low_gen + torch.where(flat, t_fine, fine_gen)),
            ),
        ):
            rows[name].append(test(clean, real, x, seed=s))
        if s == seeds[0]:
            swaps = {"real": metrics.edge_swaps(clean, real), "model": metrics.edge_swaps(clean, gen)}
    for name, acc in rows.items():
        report(name, acc)
    print(f"edge swaps at 1, 2, 4, 8 px (seed {seeds[0]}): background reading foreground | the other way")
    for name, (_, grown, shrunk) in swaps.items():
        at = [0, 1, 3, 7]
        grown, shrunk = (" ".join(f"{x[i]:.3f}" for i in at) for x in (grown, shrunk))
        print(f"  {name:6s} {grown} | {shrunk}")


def dequantised(real: np.ndarray, levels: tuple) -> torch.Tensor:
    """realdiff.reald2iff.model.dequantise over (N, H, W) real depth, 16 frames at a time."""
    r = torch.from_numpy(np.ascontiguousarray(real))
    return torch.cat([dequantise(r[s : s + 16], levels) for s in range(0, len(r), 16)])


def report(name: str, acc: list) -> None:
    print(f"  {name:32s} {np.mean(acc):.3f} (per seed {', '.join(f'{x:.3f}' for x in acc)})", flush=True)


if __name__ == "__main__":
    main()
