"""`realdiff eval`: score noise models against real sensor depth on a pair store's split.

For each noise model, its output on the split's clean depth (frame i drawn with
`default_rng([seed, frame_id])`) is compared with the real depth of the same views by every metric
in realdiff.metrics; the floor (the set metrics between two halves of the real split) says what a
perfect model would score with this much data. Both two-sample tests (`two_sample_acc` and the
stronger `two_sample_strong_acc`, about 2 minutes a noiser for 200 frames of 480x640 on 2 cores) run
unless two_sample=False, on `threads` CPU threads. Writes metrics.json, metrics.md and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from realdiff import metrics
from realdiff.pairs import load_split
from realdiff.sensors import load_noiser
from simgen.preview import colorize_depth

COLUMNS = [
    ("residual_w1_mm", "residual W1 (mm)"),
    ("hole_f1", "hole F1"),
    ("hole_rate_abs_diff", "hole-rate diff"),
    ("noise_depth_rmse_mm", "noise-vs-depth RMSE (mm)"),
    ("spectrum_dist", "spectrum dist"),
    ("edge_rmse", "edge-profile RMSE"),
    ("two_sample_acc", "two-sample acc"),
    ("two_sample_strong_acc", "two-sample acc (strong)"),
]


def generate(
    model, clean: np.ndarray, K: np.ndarray, frame_ids: np.ndarray, seed: int, progress: bool = False
) -> np.ndarray:
    """The model's noisy depth for every frame, each with its own seeded generator."""
    out = np.empty_like(clean)
    bar = tqdm(total=len(clean), desc=model.name, unit="frame", disable=not progress, leave=False)
    for s in range(0, len(clean), 8):
        rngs = [np.random.default_rng([seed, int(i)]) for i in frame_ids[s : s + 8]]
        out[s : s + 8] = model.noisify_frames(clean[s : s + 8], K, rngs)
        bar.update(len(rngs))
    bar.close()
    return out


def evaluate(
    pairs,
    split="val",
    noisers=("structured-light",),
    out_dir=None,
    seed=0,
    two_sample=True,
    progress=True,
    threads=2,
) -> dict:
    """Score each noiser; returns {'floor': ..., 'noisers': {name: metrics}}; writes files to out_dir.

    `threads`: the CPU threads of the two-sample tests."""
    models = [load_noiser(n) for n in noisers]  # unknown names fail before any work
    clean, real, K, ids = load_split(pairs, split)
    dist = metrics.edge_distance(clean)
    real_stats = metrics.set_stats(clean, real, seed=seed, dist=dist)
    result = {
        "pairs": str(pairs),
        "split": split,
        "frames": int(len(clean)),
        "seed": seed,
        "floor": metrics.floor(clean, real, seed=seed),
        "noisers": {},
    }
    curves = {"real": (metrics.noise_vs_depth(clean, real), metrics.edge_profile(clean, real, dist=dist))}
    examples = {}
    for model in models:
        gen = generate(model, clean, K, ids, seed, progress)
        s = metrics.score(
            clean, real, gen, two_sample=two_sample, seed=seed, real_stats=real_stats, threads=threads
        )
        result["noisers"][model.name] = {"metrics": s, "params": model.params(), "version": model.version}
        curves[model.name] = (metrics.noise_vs_depth(clean, gen), metrics.edge_profile(clean, gen, dist=dist))
        examples[model.name] = gen[np.linspace(0, len(gen) - 1, 3).astype(int)]
        if progress:
            print(f"{model.name}: " + ", ".join(f"{k}={v:.4g}" for k, v in s.items()))
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        (out / "metrics.md").write_text(markdown_table(result))
        _plot_curves(curves, out)
        pick = np.linspace(0, len(clean) - 1, 3).astype(int)
        for name, gen in examples.items():
            _triplets(clean[pick], real[pick], gen, out / f"examples_{name}.png")
    return result


def markdown_table(result: dict) -> str:
    """The benchmark table: one row per noiser, then the floor."""
    head = "| noiser | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in result["noisers"].items():
        rows.append(f"| {name} | " + " | ".join(fmt(r["metrics"].get(k)) for k, _ in COLUMNS) + " |")
    rows.append(
        "| floor (real vs real) | " + " | ".join(fmt(result["floor"].get(k)) for k, _ in COLUMNS) + " |"
    )
    return (
        f"Split `{result['split']}` of `{result['pairs']}`, {result['frames']} frames. Lower is "
        f"better except hole F1 (higher) and the two-sample accuracies (0.5 = indistinguishable).\n\n"
        + "\n".join(rows)
        + "\n"
    )


def _plot_curves(curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, ((z, sd), (d, holes)) in curves.items():
        style = {"color": "k", "lw": 2.5} if name == "real" else {}
        ax[0].plot(z, sd * 1000, marker="o", ms=3, label=name, **style)
        ax[1].plot(d, holes, marker="o", ms=3, label=name, **style)
    ax[0].set(xlabel="clean depth (m)", ylabel="residual std (mm)", title="noise versus depth")
    ax[1].set(xlabel="distance to depth edge (px)", ylabel="hole rate", title="holes near edges")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def _triplets(clean, real, gen, path: Path) -> None:
    """Rows of clean | real | generated depth, one colour scale per row (holes black)."""
    import imageio.v2 as imageio

    rows = []
    for c, r, g in zip(clean, real, gen, strict=True):
        v = c[c > 0]
        lo, hi = (float(np.percentile(v, 1)), float(np.percentile(v, 99))) if v.size else (0, 1)
        tiles = [colorize_depth(x, lo, hi) for x in (c, r, g)]
        rows.append(np.concatenate([np.pad(t, ((0, 4), (0, 4), (0, 0))) for t in tiles], axis=1))
    imageio.imwrite(path, np.concatenate(rows, axis=0))
