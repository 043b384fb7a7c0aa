r"""RealD²iff: a hierarchical clean-to-noisy depth diffusion model, read top to bottom.

1. Representation. For clean depth c and real sensor depth z (metres, 0 = no reading) the model
   generates two channels over the pixels with a clean depth:

       residual  y = asinh(S (1/z - 1/c)) / A        S = 300 m, A = 2   (0 where z has no reading)
       holes     h = +1 where z has no reading, -1 where it has one

   The residual lives in inverse depth (disparity), where a triangulating sensor's noise does not
   depend on depth; asinh keeps gross outliers (twin mismatch, flying pixels) in a bounded range
   without clipping them. The network sees the clean depth as log(clip(c, 0.1 m, 5 m)) and a validity
   channel, so any depth in 0.1-5 m is in range; outside the training depths (about 0.75-3.3 m) the
   residual in inverse depth extrapolates as noise growing with c^2, like the sensor's.
   Decoding: z = 1 / (1/c + sinh(A y) / S), and no reading where h > 0.

2. Coarse stage: a conditional diffusion model over (y_c, h_c) at 1/4 resolution, where
   y_c = the 4x4 block mean of y over the block's readings and h_c = 2 * (block hole fraction) - 1,
   given the block-mean log depth and valid fraction. It generates the global structural distortion.
   The networks predict the clean sample x0^ = net(x_t, condition, t) (x0-prediction: a smooth
   target needs no per-pixel noise carried through the network, which v- or epsilon-prediction would
   ask of a network that folds 4x4 pixels into 32 channels). Trained with the denoising loss plus
   Frequency-Guided Supervision (FGS) on x0^ (per sample, over the residual channel y_c, with M the
   valid-block mask and F the orthonormal 2-D DFT):

       L_FGS = alpha_t^2 * sum_k W(k) |F(M x0^)(k) - F(M x0)(k)| / sum_k W(k)
       W(k)  = exp(-(|k| / k_c)^2),   |k| in cycles/pixel, k_c = 0.08 (low frequencies count most)
       L_coarse = sum_p M ||x0^ - x0||^2 / sum_p M  +  lambda_FGS * mean_batch L_FGS

   (alpha_t^2 keeps the nearly-pure-noise steps, whose x0^ can only be a blur, from dominating.)

3. Fine stage: a conditional diffusion model over (y - up(y_c), h) at full resolution (trained on
   patches, fully convolutional at inference), given log depth, validity and the bilinearly upsampled
   coarse output up(y_c), up(h_c): it generates local perturbations and holes. Trained with
   Discrepancy-Guided Optimization (DGO): the per-pixel denoising loss weighted by where real and clean
   disagree,

       D(p) = 1 on a hole;  min(|y(p)| / tau, 1) on a reading, raised to at least b within 2 px of
              a hole (its border)
       w(p) = M(p) (1 + beta D(p))                  tau = 0.5, beta = 4, b = 0.5, M = clean-valid mask
       L_fine = sum_p w(p) ||x0^(p) - x0(p)||^2 / sum_p w(p)

   A hole outweighs a reading at its border (1 + beta against 1 + beta b), so where a pixel may or
   may not read, x0^'s hole channel, the w-weighted mean of +-1, turns positive from a hole
   probability of (1 + beta b) / (2 + beta + beta b) = 3/8 rather than 1/2: a model that would
   otherwise smooth holes away (x0-prediction regresses to the mean) keeps the uncertain ones.

   While training, the fine stage is conditioned on the real (y_c, h_c) with a little Gaussian noise
   (conditioning augmentation); at inference on the coarse stage's sample.

4. Sampling: DDIM over a cosine schedule (alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2), t in
   [0, 1]) with a chosen number of steps per stage and eta (0 = deterministic DDIM, 1 = ancestral);
   all noise derives from the caller's numpy Generator, one per frame (it seeds the frame's torch
   generator), so a seed fixes the output whatever the batch. The model runs on any image size
   (padded to a multiple of 32) and intrinsics: it treats each pixel as a sensor pixel, i.e. it
   makes a sensor of the training camera's per-pixel noise and hole statistics at the target
   camera's resolution.

5. Sensor texture (optional; a model has it when cfg.texture_tiles > 0, added by `realdiff texture`).
   On flat surfaces the real sensor's residual has a fine, non-Gaussian texture (blotches and streaks
   a few pixels across) that the one-step fine stage, which returns a conditional mean, smooths
   away; a two-sample classifier finds it there (bench/two_sample_ceiling.py). The texture stage
   adds real texture back, example-based: from the train split it cuts T x T tiles (T = 64) of the
   dequantised real residual's finer band in inverse depth,

       t = r - G_4(r)     r = 1/z - 1/c on readings, G_4 a Gaussian low-pass of 4 px over readings,

   where at least 98 % of the tile is flat (see near_edges), keeps `texture_tiles` of them, and at
   inference tiles the frame with tiles drawn at random (each turned by 180 degrees or not, which
   keeps the texture's orientation), adding them to the inverse depth before the readout on flat
   pixels only: those farther than 3 px from a clean-depth jump of more than 2 %, a generated hole
   or the image border. Near edges and holes the fine stage's output stands as it is.

6. Twin registration (optional; a model has it when cfg.shifts > 0, added by `realdiff shift`).
   Real frames do not sit exactly on their twin renders: the poses they are rendered from are a few
   pixels off (7-Scenes train split: dy 1.2 +- 1.6 px, dx 0.7 +- 3.1 px, see fit_shifts). Given the
   clean depth alone, the diffusion stages can learn only the mean of that misregistration, a blur at
   depth edges, where the real residual is large and of either sign. This stage keeps each train
   frame's best integer shift (dy, dx) and, at inference, moves the frame's clean depth by one of them,

       c'(i, j) = c(i + s dy, j + s dx)     s = f / f_train (a pose error is an angle; rounded),

   drawn by the frame's generator after all the draws above, before the diffusion stages; the
   output has no reading where the unshifted clean depth has none.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from realdiff.noise_models import NoiseModel

MODEL_VERSION = "reald2iff-2"  # bump when the representation or architecture changes
S_INV, A_ASINH = 300.0, 2.0  # residual encoding y = asinh(S_INV * dinv) / A_ASINH
DEPTH_MIN, DEPTH_MAX = 0.1, 5.0  # metres: the conditioning's depth range
COARSE = 4  # the coarse stage's downsampling factor
PAD = 32  # images are padded to a multiple of this


# --- 1. representation ---------------------------------------------------------------------------

def encode_condition(clean: torch.Tensor) -> torch.Tensor:
    """(B, H, W) clean depth (m) -> (B, 2, H, W): log depth (0 where none), validity."""
    valid = clean > 0
    logd = torch.log(clean.clamp(DEPTH_MIN, DEPTH_MAX))
    return torch.stack([torch.where(valid, logd, 0.0), valid.float()], 1)


def encode_target(clean: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, H, W) clean and real depth -> (B, 2, H, W): residual y and holes h (see the docstring)."""
    cv, rv = clean > 0, real > 0
    dinv = torch.where(cv & rv, 1.0 / real.clamp_min(1e-3) - 1.0 / clean.clamp_min(1e-3), 0.0)
    y = torch.asinh(S_INV * dinv) / A_ASINH
    h = torch.where(cv & ~rv, 1.0, -1.0)
    return torch.stack([y, h], 1)


def decode(clean: torch.Tensor, x: torch.Tensor, levels: tuple = (), texture: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) clean depth and (B, 2, H, W) generated (y, h) -> (B, H, W) noisy depth (0 = none),
    read out on the sensor's inverse-depth `levels` (see fit_levels; () = no quantisation);
    `texture` (B, H, W), if given, is added to the inverse depth (1/m) before the readout."""
    y = x[:, 0].clamp(-6, 6)
    inv = 1.0 / clean.clamp_min(1e-3) + torch.sinh(A_ASINH * y) / S_INV
    inv = (inv if texture is None else inv + texture).clamp_min(1.0 / 20.0)
    if len(levels) >= 2:
        inv = snap_to_levels(inv, levels).clamp_min(1.0 / 20.0)
    z = 1.0 / inv  # never beyond 20 m, never negative
    return torch.where((clean > 0) & (x[:, 1] <= 0), z, 0.0)


INV_MAX = 100.0  # 1/m: the readout lattice is continued up to this inverse depth (1 cm)


@functools.lru_cache(maxsize=8)
def _readout_table(levels: tuple) -> tuple:
    """The levels continued below and above with their end spacings (down to 0 and up to INV_MAX),
    and a lookup table over bins no wider than the closest two levels: each bin's nearest level at
    its start and the level after it. A value's nearest level is one of its bin's two."""
    L = np.asarray(levels, np.float64)
    s0, s1 = L[1] - L[0], L[-1] - L[-2]
    below = L[0] - s0 * np.arange(int(L[0] // s0), 0, -1)
    above = L[-1] + s1 * np.arange(1, int(max(0.0, INV_MAX - L[-1]) // s1) + 2)
    full = np.concatenate([below, L, above])
    width = float(np.diff(full).min())
    edges = full[0] + width * np.arange(int(np.ceil((full[-1] - full[0]) / width)) + 1)
    i = np.searchsorted((full[1:] + full[:-1]) / 2, edges)
    j = np.minimum(i + 1, len(full) - 1)
    return float(full[0]), width, torch.from_numpy(full[i]), torch.from_numpy(full[j])


def snap_to_levels(inv: torch.Tensor, levels) -> torch.Tensor:
    """Each inverse depth to the nearest of the sorted `levels` (a tuple or tensor); beyond them, to
    the lattice continued with the first (last) spacing. O(1) a value (see _readout_table)."""
    levels = tuple(float(v) for v in levels) if isinstance(levels, torch.Tensor) else tuple(levels)
    base, width, lo_tab, hi_tab = _readout_table(levels)
    b = ((inv - base) / width).floor().clamp(0, len(lo_tab) - 1).long()
    lo, hi = torch.take(lo_tab.to(inv.dtype), b), torch.take(hi_tab.to(inv.dtype), b)
    return torch.where((inv - hi).abs() <= (inv - lo).abs(), hi, lo)


def fit_levels(real: np.ndarray, min_count: int = 20, max_levels: int = 20000) -> tuple:
    """The sensor's readout levels: the sorted inverse depths (1/m) that real depth (N, H, W) takes
    at least min_count times; () if it takes more than max_levels values (not a quantised sensor).

    A triangulating sensor reports quantised disparity (Kinect v1: 1/8 pixel, 1/z in steps of about
    0.0029 / m), so its depth comes in bands whose width grows as z^2; decode reads out on them."""
    v, count = np.unique(real[real > 0], return_counts=True)
    if v.size > max_levels or (count >= min_count).sum() < 2:
        return ()
    return tuple(float(x) for x in np.sort(1.0 / v[count >= min_count].astype(np.float64)))


def dequantise(real: torch.Tensor, levels: tuple, radius: int = 2) -> torch.Tensor:
    """Undo readout banding in training targets: each reading's inverse depth becomes the mean over
    its (2 radius + 1)^2 window of the readings within 1.5 level steps of its own (so depth edges
    stay sharp). (B, H, W) metres in and out; holes stay 0; no levels returns the input."""
    if len(levels) < 2:
        return real
    step = float(np.median(np.diff(levels)))
    valid = real > 0
    inv = torch.where(valid, 1.0 / real.clamp_min(1e-3), 0.0)
    k = 2 * radius + 1
    pad = lambda a: F.pad(a[:, None], (radius,) * 4)[:, 0]  # noqa: E731
    inv_p, valid_p = pad(inv), pad(valid.float())
    total, count = torch.zeros_like(inv), torch.zeros_like(inv)
    H, W = real.shape[-2:]
    for dy in range(k):
        for dx in range(k):
            n_inv, n_ok = inv_p[:, dy:dy + H, dx:dx + W], valid_p[:, dy:dy + H, dx:dx + W]
            near = n_ok * ((n_inv - inv).abs() <= 1.5 * step)
            total += near * n_inv
            count += near
    return torch.where(valid, 1.0 / (total / count.clamp_min(1)).clamp_min(1e-3), 0.0)


def block_mean(x: torch.Tensor, weight: torch.Tensor, k: int = COARSE) -> torch.Tensor:
    """k x k block mean of x (B, C, H, W) over pixels where weight (B, 1, H, W) > 0 (0 if none)."""
    num = F.avg_pool2d(x * weight, k)
    den = F.avg_pool2d(weight, k)
    return torch.where(den > 0, num / den.clamp_min(1e-6), 0.0)


def coarse_condition(cond: torch.Tensor) -> torch.Tensor:
    """Full-resolution condition (B, 2, H, W) -> coarse (B, 2, H/4, W/4): mean log depth, valid fraction."""
    valid = cond[:, 1:2]
    return torch.cat([block_mean(cond[:, :1], valid), F.avg_pool2d(valid, COARSE)], 1)


def coarse_target(target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Full-resolution (y, h) -> coarse (y_c, h_c): block mean residual over readings, hole fraction."""
    valid = cond[:, 1:2]
    reading = valid * (target[:, 1:2] < 0)
    y_c = block_mean(target[:, :1], reading)
    hole_frac = block_mean((target[:, 1:2] > 0).float(), valid)
    return torch.cat([y_c, 2 * hole_frac - 1], 1)


def upsample(x: torch.Tensor, k: int = COARSE) -> torch.Tensor:
    return F.interpolate(x, scale_factor=k, mode="bilinear", align_corners=False)


def lowpass(x: torch.Tensor, mask: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Gaussian low-pass (std sigma px) of x (N, H, W) over the pixels where mask (N, H, W) is true
    (a normalised convolution: the others neither count nor dilute)."""
    k = int(3 * sigma) * 2 + 1
    t = torch.arange(k, dtype=x.dtype) - k // 2
    w = torch.exp(-t ** 2 / (2 * sigma ** 2))
    w = w / w.sum()

    def blur(a):
        a = F.conv2d(a[:, None], w.view(1, 1, 1, k), padding=(0, k // 2))
        return F.conv2d(a, w.view(1, 1, k, 1), padding=(k // 2, 0))[:, 0]
    m = mask.to(x.dtype)
    return torch.cat([blur(x[i:i + 16] * m[i:i + 16]) / blur(m[i:i + 16]).clamp_min(1e-6)
                      for i in range(0, len(x), 16)])


def near_edges(clean: torch.Tensor, holes: torch.Tensor, jump: float = 0.02, px: int = 3) -> torch.Tensor:
    """(N, H, W) bool: pixels within px of a clean-depth jump of more than `jump` (relative) to a
    4-neighbour, of a clean-depth or `holes` pixel, or of the image border; the rest is flat."""
    edge = (clean <= 0) | holes
    dx = (clean[:, :, 1:] - clean[:, :, :-1]).abs() > jump * clean[:, :, 1:]
    dy = (clean[:, 1:, :] - clean[:, :-1, :]).abs() > jump * clean[:, 1:, :]
    edge[:, :, 1:] |= dx
    edge[:, 1:, :] |= dy
    H, W = edge.shape[1:]
    p = F.pad(edge, (px,) * 4, value=True)  # the border counts as an edge
    rows = p[:, :, :W].clone()  # a square dilation as shifted ORs, along rows then columns
    for i in range(1, 2 * px + 1):
        rows |= p[:, :, i:i + W]
    out = rows[:, :H].clone()
    for i in range(1, 2 * px + 1):
        out |= rows[:, i:i + H]
    return out


def flat_texture(clean: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The finer band t = r - G_4(r) of real's residual in inverse depth (see the docstring, 5) on
    flat pixels (0 elsewhere), and the flat mask. clean, real: (N, H, W) metres."""
    reads = (real > 0) & (clean > 0)
    res = torch.where(reads, 1 / real.clamp_min(1e-3) - 1 / clean.clamp_min(1e-3), 0.0)
    flat = ~near_edges(clean, ~reads)
    return torch.where(flat, res - lowpass(res, reads), 0.0), flat


def texture_tiles(clean: torch.Tensor, real: torch.Tensor, size: int = 64, min_flat: float = 0.98) -> torch.Tensor:
    """Every size x size tile (on a grid of half-tile steps) of flat_texture(clean, real) that is
    flat over at least min_flat of its pixels. clean, real: (N, H, W) metres (real dequantised).
    Returns (n, size, size)."""
    tiles = []
    for s in range(0, len(clean), 16):
        c = clean[s:s + 16]
        band, flat = flat_texture(c, real[s:s + 16])
        H, W = c.shape[1:]
        for y in range(0, H - size + 1, size // 2):
            for x in range(0, W - size + 1, size // 2):
                ok = flat[:, y:y + size, x:x + size].float().mean((1, 2)) >= min_flat
                tiles.append(band[ok, y:y + size, x:x + size])
    return torch.cat(tiles) if tiles else torch.zeros(0, size, size)


def paste_texture(bank: torch.Tensor, pick: torch.Tensor, turn: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Textures (..., H, W) tiled with bank[pick[..., i]] (T x T each), turned by 180 degrees where
    turn[..., i], row by row: pick and turn hold one entry per tile, ceil(H / T) * ceil(W / T)."""
    T = bank.shape[-1]
    ny, nx = -(-H // T), -(-W // T)
    tiles = bank[pick]
    tiles = torch.where(turn[..., None, None].bool(), tiles.flip(-2, -1), tiles)
    lead = pick.shape[:-1]
    tiles = tiles.reshape(*lead, ny, nx, T, T).transpose(-3, -2)
    return tiles.reshape(*lead, ny * T, nx * T)[..., :H, :W]


def shift_depth(clean: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """clean (B, H, W) moved by integer shift (B, 2) = (dy, dx): out(i, j) = clean(i + dy, j + dx),
    continued by the nearest edge pixel beyond the image."""
    B, H, W = clean.shape
    rows = (torch.arange(H)[None] + shift[:, :1]).clamp(0, H - 1)
    cols = (torch.arange(W)[None] + shift[:, 1:]).clamp(0, W - 1)
    return clean[torch.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]


def fit_shifts(clean: torch.Tensor, real: torch.Tensor, radius: int = 6, px: int = 4) -> torch.Tensor:
    """(N, 2) integer (dy, dx), |dy|, |dx| <= radius: for each frame the shift_depth of clean that best
    matches real near clean-depth edges (where a misregistration shows), i.e. the least mean of
    min(|z - c'| / z, 0.1) over real readings z within px of an edge and at least radius from the
    border; (0, 0) for a frame without such a pixel. clean, real: (N, H, W) metres."""
    out = []
    k = 2 * radius + 1
    for s in range(0, len(clean), 16):
        c, z = clean[s:s + 16], real[s:s + 16]
        H, W = c.shape[1:]
        m = near_edges(c, torch.zeros_like(c, dtype=torch.bool), px=px) & (z > 0) & (c > 0)
        m[:, :radius], m[:, H - radius:], m[:, :, :radius], m[:, :, W - radius:] = False, False, False, False
        n = m.sum((1, 2)).clamp_min(1)
        p = F.pad(c[:, None], (radius,) * 4, mode="replicate")[:, 0]
        cost = torch.stack([(torch.where(m, ((z - p[:, radius + dy:radius + dy + H, radius + dx:radius + dx + W]).abs()
                                              / z.clamp_min(1e-3)).clamp_max(0.1), 0.0)).sum((1, 2)) / n
                            for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)], 1)
        best = torch.where(m.flatten(1).any(1), cost.argmin(1), (k * k) // 2)  # (0, 0) is the centre
        out.append(torch.stack([best // k - radius, best % k - radius], 1))
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.long)


# --- 2. networks ---------------------------------------------------------------------------------

@dataclass
class NetConfig:
    """A small U-Net: `unshuffle` folds s x s pixels into channels first; `widths` per level."""
    in_ch: int = 4  # x_t (2) + condition channels
    out_ch: int = 2
    widths: tuple = (32, 64)
    blocks: int = 1  # residual blocks per level and direction
    unshuffle: int = 1
    groups: int = 8

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if not self.widths or any(w % self.groups for w in self.widths):
            raise ValueError(f"widths {self.widths} must be non-empty multiples of groups={self.groups}")
        if self.unshuffle < 1 or self.unshuffle & (self.unshuffle - 1):
            raise ValueError(f"unshuffle (pixels folded per side) must be a power of 2, got {self.unshuffle}")

    def granularity(self) -> int:
        """The network's input sides must be multiples of this: the fold, then a halving per level."""
        return self.unshuffle * 2 ** (len(self.widths) - 1)


def fold(x: torch.Tensor, s: int) -> torch.Tensor:
    """F.pixel_unshuffle(x, s) (s x s pixels into channels), as one reshape-permute copy: the same
    values, 2-3x faster than torch's CPU kernel on these small images."""
    B, C, H, W = x.shape
    return x.reshape(B, C, H // s, s, W // s, s).permute(0, 1, 3, 5, 2, 4).reshape(B, C * s * s, H // s, W // s)


def unfold(x: torch.Tensor, s: int) -> torch.Tensor:
    """F.pixel_shuffle(x, s), the inverse of fold, likewise."""
    B, C, H, W = x.shape
    c = C // (s * s)
    return x.reshape(B, c, s, s, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, c, H * s, W * s)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, FiLM (scale, shift) from the time embedding between, skip."""

    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, 1)
        h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class UNet(nn.Module):
    """Denoising network: (x_t, condition, t) -> x0^. Global context: the bottleneck's mean
    feature is added back to every position (image-wide scale and offset errors)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        s, w, emb = cfg.unshuffle, cfg.widths, 4 * cfg.widths[0]
        self.t_mlp = nn.Sequential(nn.Linear(w[0], emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(cfg.in_ch * s * s, w[0], 3, padding=1)
        self.down, self.pool, self.up, self.unpool = (nn.ModuleList() for _ in range(4))
        for i, c in enumerate(w):
            cin = w[i - 1] if i else w[0]
            self.down.append(nn.ModuleList([ResBlock(cin if j == 0 else c, c, emb, cfg.groups)
                                            for j in range(cfg.blocks)]))
            if i < len(w) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.glob = nn.Linear(w[-1], w[-1])
        for i in reversed(range(len(w) - 1)):
            self.unpool.append(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2))
            self.up.append(nn.ModuleList([ResBlock(2 * w[i] if j == 0 else w[i], w[i], emb, cfg.groups)
                                          for j in range(cfg.blocks)]))
        self.out_norm = nn.GroupNorm(cfg.groups, w[0])
        self.out = nn.Conv2d(w[0], cfg.out_ch * s * s, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t, cond, t):
        half = self.cfg.widths[0] // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
        dt = self.inp.weight.dtype  # float32, or bfloat16 for inference (RealD2iffNoiser)
        e = self.t_mlp(torch.cat([torch.sin(1000 * t[:, None] * freqs), torch.cos(1000 * t[:, None] * freqs)], 1).to(dt))
        h = fold(torch.cat([x_t, cond], 1).to(dt), self.cfg.unshuffle)
        h = self.inp(h)
        skips = []
        for i, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, e)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](h)
        h = h + self.glob(h.mean((2, 3)))[:, :, None, None]
        for unpool, blocks in zip(self.unpool, self.up):
            h = torch.cat([unpool(h), skips.pop()], 1)
            for b in blocks:
                h = b(h, e)
        return unfold(self.out(F.silu(self.out_norm(h))), self.cfg.unshuffle)


# --- 3. diffusion: schedule, losses, sampling -------------------------------------------------

def alpha_sigma(t: torch.Tensor):
    """Cosine schedule: (alpha_t, sigma_t), alpha^2 + sigma^2 = 1, shaped (B, 1, 1, 1)."""
    t = t[:, None, None, None]
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


def q_sample(x0, noise, t):
    """x_t = alpha_t x0 + sigma_t noise."""
    a, s = alpha_sigma(t)
    return a * x0 + s * noise


def frequency_weight(h: int, w: int, k_c: float = 0.08) -> torch.Tensor:
    """W(k) = exp(-(|k|/k_c)^2) over the rfft2 grid of an (h, w) image; |k| in cycles/pixel."""
    k = torch.hypot(torch.fft.fftfreq(h)[:, None], torch.fft.rfftfreq(w)[None, :])
    return torch.exp(-(k / k_c) ** 2)


def fgs_loss(x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor,
             k_c: float = 0.08) -> torch.Tensor:
    """Frequency-Guided Supervision: alpha^2 * sum_k W(k)|F(M x0^) - F(M x0)| / sum_k W(k), batch mean.

    x0_hat, x0: (B, H, W) residual images; mask (B, H, W); alpha (B,)."""
    diff = torch.fft.rfft2((x0_hat - x0) * mask, norm="ortho")  # F is linear: F(a) - F(b) = F(a - b)
    wk = frequency_weight(x0.shape[-2], x0.shape[-1], k_c).to(x0.device)
    per = (wk * diff.abs()).sum((-2, -1)) / wk.sum()
    return (alpha.reshape(-1) ** 2 * per).mean()


def discrepancy_weight(target: torch.Tensor, valid: torch.Tensor, tau: float = 0.5,
                       beta: float = 4.0, border: float = 0.5, border_px: int = 2) -> torch.Tensor:
    """DGO weights w = M (1 + beta D): D = 1 on a hole, min(|y|/tau, 1) on a reading, at least
    `border` on a reading within border_px of a hole.

    target: (B, 2, H, W) (y, h); valid: (B, 1, H, W) clean-valid mask. Returns (B, 1, H, W)."""
    hole = (target[:, 1:2] > 0).float() * valid
    k = 2 * border_px + 1
    near_hole = F.max_pool2d(hole, k, stride=1, padding=border_px)  # holes dilated by border_px
    d = torch.maximum((target[:, :1].abs() / tau).clamp(max=1.0), border * near_hole)
    return valid * (1 + beta * torch.maximum(d, hole))


def weighted_mse(pred, target, weight):
    """sum_p w(p) ||pred(p) - target(p)||^2 / sum_p w(p) (channels summed)."""
    return (weight * (pred - target) ** 2).sum() / weight.sum().clamp_min(1e-8)


@torch.no_grad()
def ddim_sample(net: nn.Module, cond: torch.Tensor, noises: list[torch.Tensor], steps: int,
                eta: float = 0.0) -> torch.Tensor:
    """DDIM from t = 1 to 0 in `steps` equal steps. noises: `steps` tensors shaped like x (the start
    and the fresh noise of each step but the last, which returns x0^; unused when eta = 0)."""
    x = noises[0]
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        t, s = ts[i].expand(x.shape[0]), ts[i + 1].expand(x.shape[0])
        a_t, s_t = alpha_sigma(t)
        a_s, s_s = alpha_sigma(s)
        x0 = net(x, cond, t).float().clamp(-6, 6)
        eps = (x - a_t * x0) / s_t  # t > 0 at every evaluation, so sigma_t > 0
        if i == steps - 1:
            return x0
        ratio = (s_s / s_t) ** 2 * (1 - (a_t / a_s) ** 2)
        s_eta = eta * torch.sqrt(ratio.clamp_min(0))
        x = a_s * x0 + torch.sqrt((s_s ** 2 - s_eta ** 2).clamp_min(0)) * eps + s_eta * noises[i + 1]
    return x


# --- 4. the model: two stages, a checkpoint, the noise-model interface ------------------------

@dataclass
class ModelConfig:
    """Which stages exist, their networks and their sampling steps."""
    coarse: NetConfig | None = field(default_factory=lambda: NetConfig(in_ch=4, widths=(32, 64, 64), unshuffle=2))
    fine: NetConfig | None = field(default_factory=lambda: NetConfig(in_ch=6, widths=(32, 64), unshuffle=4))
    coarse_steps: int = 4  # the shipped speed/realism setting (README: throughput and realism)
    fine_steps: int = 1
    eta: float = 1.0
    name: str = "reald2iff"
    levels: tuple = ()  # the sensor's readout levels (fit_levels), set by training
    texture_tiles: int = 0  # tiles in the sensor-texture bank (docstring, 5; 0 = no texture stage)
    texture_size: int = 64  # their side in pixels
    shifts: int = 0  # twin-registration shifts kept (docstring, 6; 0 = no registration stage)
    shift_focal: float = 0.0  # the training camera's focal length (px) they were measured at

    def __post_init__(self):
        if self.coarse is None and self.fine is None:
            raise ValueError("a model needs a coarse or a fine stage")
        if isinstance(self.coarse, dict):
            self.coarse = NetConfig(**self.coarse)
        if isinstance(self.fine, dict):
            self.fine = NetConfig(**self.fine)
        if self.coarse_steps < 1 or self.fine_steps < 1:
            raise ValueError("sampling steps must be >= 1")
        if self.texture_tiles < 0 or self.texture_size < 1:
            raise ValueError("texture_tiles must be >= 0 and texture_size >= 1")
        if self.shifts < 0 or (self.shifts and not self.shift_focal > 0):
            raise ValueError("shifts must be >= 0, and a registration stage needs shift_focal > 0")
        for stage, net, size in (("coarse", self.coarse, PAD // COARSE), ("fine", self.fine, PAD)):
            if net is not None and size % net.granularity():
                raise ValueError(f"{stage} stage: folding {net.unshuffle}x{net.unshuffle} pixels with "
                                 f"{len(net.widths)} levels needs images in multiples of {net.granularity()} "
                                 f"pixels; this stage sees multiples of {size}")
        self.levels = tuple(float(v) for v in self.levels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RealD2iff(nn.Module):
    """The two stages; `generate` turns clean depth into noisy depth."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.coarse = UNet(cfg.coarse) if cfg.coarse else None
        self.fine = UNet(cfg.fine) if cfg.fine else None
        T = cfg.texture_size  # the sensor-texture bank (docstring, 5): a buffer saved with the weights
        self.register_buffer("texture", torch.zeros(cfg.texture_tiles, T, T) if cfg.texture_tiles else None)
        # the twin-registration stage (docstring, 6): (dy, dx) per train frame, pixels at shift_focal
        self.register_buffer("shift_bank", torch.zeros(cfg.shifts, 2) if cfg.shifts else None)

    def draw_noise(self, shape_hw, rngs, fine: bool = True) -> dict:
        """Every random number one sampling run needs, frame by frame: each frame's numpy Generator
        seeds a torch generator (one draw), which gives that frame's noise for every step."""
        H, W = shape_hw
        shapes = {"coarse": (self.cfg.coarse_steps, 2, H // COARSE, W // COARSE) if self.coarse else None,
                  "fine": (self.cfg.fine_steps, 2, H, W) if self.fine is not None and fine else None}
        out = {k: [] for k in (*shapes, "pick", "turn", "shift")}
        T = self.cfg.texture_size
        n_tiles = -(-H // T) * -(-W // T) if self.texture is not None and fine else 0
        g = torch.Generator()
        for rng in rngs:
            g.manual_seed(int(rng.integers(2 ** 63)))
            for k, shape in shapes.items():
                if shape:
                    out[k].append(torch.randn(shape, generator=g))
            if n_tiles:  # drawn after the diffusion noise, so the stages above draw what they did without
                out["pick"].append(torch.randint(len(self.texture), (n_tiles,), generator=g))
                out["turn"].append(torch.randint(2, (n_tiles,), generator=g))
            if self.shift_bank is not None:  # last again: the draws above stay what they were
                out["shift"].append(self.shift_bank[torch.randint(len(self.shift_bank), (), generator=g)].float())
        return {k: torch.stack(v, 1 if k in shapes else 0) if v else None for k, v in out.items()}

    @torch.no_grad()
    def generate(self, clean: np.ndarray, rngs: list, fine: bool = True, focal: float | None = None) -> np.ndarray:
        """(B, H, W) float32 clean depth, one numpy Generator per frame -> (B, H, W) noisy depth.
        fine=False leaves the fine stage out (the coarse stage's output alone); focal: the camera's
        focal length in pixels, which scales the registration shifts (default: the training camera's)."""
        B, H, W = clean.shape
        Hp, Wp = -(-H // PAD) * PAD, -(-W // PAD) * PAD
        noise = self.draw_noise((Hp, Wp), rngs, fine)
        c0 = torch.tensor(clean, dtype=torch.float32)
        c = c0
        if noise["shift"] is not None:
            scale = focal / self.cfg.shift_focal if focal else 1.0
            c = shift_depth(c0, (noise["shift"] * scale).round().long())
        c = F.pad(c, (0, Wp - W, 0, Hp - H))
        cond = encode_condition(c)
        coarse = torch.zeros(B, 2, Hp // COARSE, Wp // COARSE)
        coarse[:, 1] = -1
        if self.coarse is not None:
            coarse = ddim_sample(self.coarse, coarse_condition(cond), list(noise["coarse"]),
                                 self.cfg.coarse_steps, self.cfg.eta)
        up = upsample(coarse)
        if self.fine is not None and fine:
            x = ddim_sample(self.fine, torch.cat([cond, up], 1), list(noise["fine"]),
                            self.cfg.fine_steps, self.cfg.eta)
            x = torch.cat([x[:, :1] + up[:, :1], x[:, 1:]], 1)
        else:
            x = up
        texture = None
        if noise["pick"] is not None:
            texture = paste_texture(self.texture.float(), noise["pick"], noise["turn"], Hp, Wp)
            texture = torch.where(near_edges(c, x[:, 1] > 0), 0.0, texture)
        out = decode(c, x, self.cfg.levels, texture)[:, :H, :W]
        return torch.where(c0 > 0, out, 0.0).numpy().astype(np.float32)

    def for_inference(self, bf16: bool) -> "RealD2iff":
        """Ready for fast CPU sampling: bfloat16 weights with bf16 (1.4x faster than autocast here).
        Channels-last would speed the fine stage up further, but oneDNN then picks kernels by batch
        size, and a frame's output must not depend on the batch it comes in."""
        if bf16:
            self.to(torch.bfloat16)
            if self.texture is not None:  # the texture bank stays float32: it is added, not multiplied
                self.texture = self.texture.float()
            if self.shift_bank is not None:  # and the shifts exact
                self.shift_bank = self.shift_bank.float()
        return self


def save_model(model: RealD2iff, path: str | Path, meta: dict | None = None) -> None:
    """Weights (float32 tensors) with the config, version and any metadata (plain data only)."""
    torch.save({"version": MODEL_VERSION, "config": model.cfg.to_dict(), "meta": meta or {},
                "state_dict": {k: v.detach().float().clone() for k, v in model.state_dict().items()}},
               path)


def load_model(path: str | Path) -> tuple[RealD2iff, dict]:
    """(model in eval mode, metadata) from a file written by save_model; ValueError if it is not one.
    Loaded with weights_only=True: no code in the file runs."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
        raise ValueError(f"{path}: not a RealD²iff checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or "version" not in ck or "state_dict" not in ck:
        raise ValueError(f"{path}: not a RealD²iff checkpoint")
    if ck["version"] != MODEL_VERSION:
        raise ValueError(f"{path}: a model of version {ck['version']!r}; this code reads {MODEL_VERSION!r}")
    try:
        model = RealD2iff(ModelConfig(**ck["config"]))
        model.load_state_dict(ck["state_dict"])
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"{path}: checkpoint does not match its config: {str(e).splitlines()[0]}") from None
    return model.eval(), ck.get("meta", {})


DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "params" / "reald2iff.pt"


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN); emulated bf16 is slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        return False


class RealD2iffNoiser(NoiseModel):
    """RealD²iff behind the noise-model interface. `weights`: a file from `realdiff train` (default:
    the committed weights trained on 7-Scenes); `coarse_steps`, `fine_steps`: sampling steps (default:
    the model's); `bf16`: bfloat16 inference where the CPU supports it; `batch`: frames per network
    call at 128x128 (larger frames go proportionally fewer at a time); `threads`: torch threads
    (default: torch's)."""

    name = "reald2iff"
    version = "2"  # 2: noise from a torch generator seeded by the frame's, bfloat16 weights

    def __init__(self, weights: str | None = None, coarse_steps: int | None = None,
                 fine_steps: int | None = None, bf16: bool = True, batch: int = 32,
                 threads: int | None = None):
        self.weights = str(weights) if weights else None
        self.model, self.meta = load_model(self.weights or DEFAULT_WEIGHTS)
        self._sha1 = None  # fingerprint(), when asked
        cfg = self.model.cfg
        self.coarse_steps, self.fine_steps = coarse_steps, fine_steps
        cfg.coarse_steps = int(coarse_steps or cfg.coarse_steps)
        cfg.fine_steps = int(fine_steps or cfg.fine_steps)
        if cfg.coarse_steps < 1 or cfg.fine_steps < 1:
            raise ValueError("reald2iff: sampling steps must be >= 1")
        self.bf16 = bool(bf16) and bf16_supported()
        self.model.for_inference(self.bf16)
        self.batch, self.threads = int(batch), threads
        self.name = cfg.name  # a variant's label, e.g. reald2iff-no-fgs
        if coarse_steps or fine_steps:
            self.name += f" ({cfg.coarse_steps}+{cfg.fine_steps} steps)"

    def params(self) -> dict:
        return {"weights": self.weights, "coarse_steps": self.coarse_steps, "fine_steps": self.fine_steps,
                "bf16": self.bf16, "batch": self.batch, "threads": self.threads}

    def fingerprint(self) -> str:
        """The weights file's SHA-1 (12 hex digits): other weights under the same name or path
        are another model (noisify refuses to resume a run with them). Read when first asked, so
        noisify's workers, which never ask, do not read the file twice."""
        if self._sha1 is None:
            self._sha1 = hashlib.sha1(Path(self.weights or DEFAULT_WEIGHTS).read_bytes()).hexdigest()[:12]
        return self._sha1

    def _noisify(self, depth, K, rng):
        return self._noisify_frames(depth, K, [rng] * len(depth))

    def _noisify_frames(self, depth, K, rngs):
        if self.threads:
            torch.set_num_threads(self.threads)
        out = np.empty_like(depth)
        n = max(1, self.batch * 128 * 128 // (depth.shape[1] * depth.shape[2]))  # bounded memory
        focal = float(K[0, 0] + K[1, 1]) / 2
        for s in range(0, len(depth), n):
            out[s:s + n] = self.model.generate(depth[s:s + n], rngs[s:s + n], focal=focal)
        return out
