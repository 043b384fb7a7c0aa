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

Beside this file: config.py (the dataclasses), stages.py (the optional sensor-texture and
twin-registration stages), noiser.py (the whole clean-to-noisy pipeline behind the noise-model
interface), checkpoint.py (model files), train.py and distill.py.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import record_function

from realdiff.reald2iff.config import COARSE, ModelConfig, NetConfig
from realdiff.reald2iff.stages import smooth_flat

S_INV, A_ASINH = 300.0, 2.0  # residual encoding y = asinh(S_INV * dinv) / A_ASINH
DEPTH_MIN, DEPTH_MAX = 0.1, 5.0  # metres: the conditioning's depth range


# --- 1. representation ---------------------------------------------------------------------------


def encode_condition(clean: torch.Tensor) -> torch.Tensor:
    """(B, H, W) clean depth (m) -> (B, 2, H, W): log depth (0 where none), validity."""
    valid = clean > 0
    out = torch.empty(
        clean.shape[0], 2, *clean.shape[1:], dtype=torch.promote_types(clean.dtype, torch.float32)
    )
    torch.clamp(clean, DEPTH_MIN, DEPTH_MAX, out=out[:, 0]).log_().masked_fill_(~valid, 0.0)
    out[:, 1].copy_(valid)
    return out


def encode_target(clean: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, H, W) clean and real depth -> (B, 2, H, W): residual y and holes h (see the docstring)."""
    cv, rv = clean > 0, real > 0
    dinv = torch.where(cv & rv, 1.0 / real.clamp_min(1e-3) - 1.0 / clean.clamp_min(1e-3), 0.0)
    y = torch.asinh(S_INV * dinv) / A_ASINH
    h = torch.where(cv & ~rv, 1.0, -1.0)
    return torch.stack([y, h], 1)


def decode(
    clean: torch.Tensor,
    x: torch.Tensor,
    levels: tuple = (),
    texture: torch.Tensor | None = None,
    smooth: float = 0.0,
) -> torch.Tensor:
    """(B, H, W) clean depth and (B, 2, H, W) generated (y, h) -> (B, H, W) noisy depth (0 = none),
    read out on the sensor's inverse-depth `levels` (see fit_levels; () = no quantisation);
    `texture` (B, H, W), if given, is added to the inverse depth (1/m) before the readout; with
    `smooth` > 0 the inverse depth is then low-passed on flat pixels (stages.smooth_flat).

    z = 1 / (1/c + sinh(A y) / S [+ texture]), each step in place on one buffer (the same float32
    operations, in the same order, as the expression: `1.0 / t` is t.reciprocal() in torch)."""
    y = x[:, 0].clamp(-6, 6)  # a new tensor: the steps below work on it in place
    inv = clean.clamp_min(1e-3).reciprocal_()
    inv += y.mul_(A_ASINH).sinh_().div_(S_INV)
    if texture is not None:
        inv += texture
    if smooth > 0:
        inv = smooth_flat(inv, clean, (clean > 0) & (x[:, 1] <= 0), smooth)
    inv.clamp_min_(1.0 / 20.0)
    if len(levels) >= 2:
        inv = snap_to_levels(inv, levels).clamp_min_(1.0 / 20.0)
    z = inv.reciprocal_()  # never beyond 20 m, never negative
    # where((clean > 0) & (h <= 0), z, 0.0), z finite and positive: z times a mask of 1.0 and 0.0
    keep = torch.gt(clean, 0, out=torch.empty_like(z))
    return z.mul_(keep.mul_(torch.le(x[:, 1], 0, out=torch.empty_like(z))))


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


@functools.lru_cache(maxsize=8)
def _readout_lookup(levels: tuple, dtype: torch.dtype) -> tuple:
    """_readout_table with its two columns in `dtype`, converted once."""
    base, width, lo_tab, hi_tab = _readout_table(levels)
    return base, width, lo_tab.to(dtype), hi_tab.to(dtype)


def snap_to_levels(inv: torch.Tensor, levels) -> torch.Tensor:
    """Each inverse depth to the nearest of the sorted `levels` (a tuple or tensor); beyond them, to
    the lattice continued with the first (last) spacing. O(1) a value (see _readout_table)."""
    levels = tuple(float(v) for v in levels) if isinstance(levels, torch.Tensor) else tuple(levels)
    base, width, lo_tab, hi_tab = _readout_lookup(levels, inv.dtype)
    b = torch.sub(inv, base).div_(width).floor_().clamp_(0, len(lo_tab) - 1).long().reshape(-1)
    lo, hi = lo_tab.index_select(0, b).view(inv.shape), hi_tab.index_select(0, b).view(inv.shape)
    # where(|inv - hi| <= |inv - lo|, hi, lo) as hi w + lo (1 - w), w = 1.0 or 0.0: each level is
    # finite, so one term is the level and the other 0 (the same values; `where` branches, and this
    # choice is a coin flip)
    w = torch.le(torch.sub(inv, hi).abs_(), torch.sub(inv, lo).abs_(), out=torch.empty_like(inv))
    return hi.mul_(w).add_(lo.mul_(w.sub_(1).neg_()))


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
            n_inv, n_ok = inv_p[:, dy : dy + H, dx : dx + W], valid_p[:, dy : dy + H, dx : dx + W]
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
    """Full-resolution condition (B, 2, H, W) -> coarse (B, 2, H/4, W/4): mean log depth, valid fraction.
    (block_mean's, with the valid fraction, its denominator, pooled once.)"""
    valid = cond[:, 1:2]
    den = F.avg_pool2d(valid, COARSE)
    num = F.avg_pool2d(cond[:, :1] * valid, COARSE)
    return torch.cat([torch.where(den > 0, num / den.clamp_min(1e-6), 0.0), den], 1)


def coarse_target(target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Full-resolution (y, h) -> coarse (y_c, h_c): block mean residual over readings, hole fraction."""
    valid = cond[:, 1:2]
    reading = valid * (target[:, 1:2] < 0)
    y_c = block_mean(target[:, :1], reading)
    hole_frac = block_mean((target[:, 1:2] > 0).float(), valid)
    return torch.cat([y_c, 2 * hole_frac - 1], 1)


def upsample(x: torch.Tensor, k: int = COARSE) -> torch.Tensor:
    return F.interpolate(x, scale_factor=k, mode="bilinear", align_corners=False)


# --- 2. networks ---------------------------------------------------------------------------------


def fold(x: torch.Tensor, s: int) -> torch.Tensor:
    """F.pixel_unshuffle(x, s) (s x s pixels into channels), as one reshape-permute copy: the same
    values, 2-3x faster than torch's CPU kernel on these small images."""
    B, C, H, W = x.shape
    return (
        x.reshape(B, C, H // s, s, W // s, s).permute(0, 1, 3, 5, 2, 4).reshape(B, C * s * s, H // s, W // s)
    )


def unfold(x: torch.Tensor, s: int) -> torch.Tensor:
    """F.pixel_shuffle(x, s), the inverse of fold, likewise."""
    B, C, H, W = x.shape
    c = C // (s * s)
    return x.reshape(B, c, s, s, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, c, H * s, W * s)


def fold_parts(parts: list[torch.Tensor], s: int, dtype: torch.dtype) -> torch.Tensor:
    """fold(torch.cat(parts, 1).to(dtype), s), each part converted, then folded straight into its
    channels of the result: the same values without the full-resolution concatenation (nor the
    condition's own concatenation before it, when the condition comes as parts)."""
    B, _, H, W = parts[0].shape
    C = sum(p.shape[1] for p in parts)
    out = torch.empty(B, C * s * s, H // s, W // s, dtype=dtype)
    dst = out.view(B, C, s, s, H // s, W // s)
    c = 0
    for p in parts:
        k = p.shape[1]
        dst[:, c : c + k].copy_(p.to(dtype).reshape(B, k, H // s, s, W // s, s).permute(0, 1, 3, 5, 2, 4))
        c += k
    return out


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

    def film_of(self, e):
        """(1 + scale, shift), each (B, cout, 1, 1), from the time embedding e."""
        scale, shift = self.film(e)[:, :, None, None].chunk(2, 1)
        return 1 + scale, shift

    def forward(self, x, e, film=None):
        """film: film_of(e), if already known (inference)."""
        if torch.is_grad_enabled():
            scale, shift = self.film(e)[:, :, None, None].chunk(2, 1)
            h = self.c1(F.silu(self.n1(x)))
            h = self.c2(F.silu(self.n2(h) * (1 + scale) + shift))
            return self.skip(x) + h
        # inference: the same operations on fresh intermediates, in place (a + b = b + a exactly)
        scale1, shift = film if film is not None else self.film_of(e)
        h = self.c1(F.silu(self.n1(x), inplace=True))
        h = self.c2(F.silu(self.n2(h).mul_(scale1).add_(shift), inplace=True))
        return h.add_(self.skip(x))


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
            self.down.append(
                nn.ModuleList([ResBlock(cin if j == 0 else c, c, emb, cfg.groups) for j in range(cfg.blocks)])
            )
            if i < len(w) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.glob = nn.Linear(w[-1], w[-1])
        for i in reversed(range(len(w) - 1)):
            self.unpool.append(nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2))
            self.up.append(
                nn.ModuleList(
                    [ResBlock(2 * w[i] if j == 0 else w[i], w[i], emb, cfg.groups) for j in range(cfg.blocks)]
                )
            )
        self.out_norm = nn.GroupNorm(cfg.groups, w[0])
        self.out = nn.Conv2d(w[0], cfg.out_ch * s * s, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self._films = {}  # films(): {key: every block's FiLM}

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """The time embedding (B, 4 widths[0]) of t (B,), in the weights' dtype."""
        half = self.cfg.widths[0] // 2
        freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
        return self.t_mlp(
            torch.cat([torch.sin(1000 * t[:, None] * freqs), torch.cos(1000 * t[:, None] * freqs)], 1).to(
                self.inp.weight.dtype
            )
        )

    def films(self, t: torch.Tensor) -> list:
        """Every ResBlock's FiLM (1 + scale, shift) for times t, in the order forward runs the blocks.
        Kept for the last few (times, batch size, weights) asked for: a sampler asks for the same
        times batch after batch, and they are the same tensors however often they are computed.
        (A change to the weights, in place or not, changes the key: data_ptr and _version.)"""
        blocks = [b for level in (*self.down, *self.up) for b in level]
        params = [*self.t_mlp.parameters(), *(p for b in blocks for p in b.film.parameters())]
        if any(p.is_inference() for p in params):  # no version counter: not kept
            e = self.embed(t)
            return [b.film_of(e) for b in blocks]
        key = (t.detach().cpu().numpy().tobytes(), tuple((p.data_ptr(), p._version, p.dtype) for p in params))
        got = self._films.get(key)
        if got is None:
            e = self.embed(t)
            got = [b.film_of(e) for b in blocks]
            if len(self._films) >= 8:
                self._films.clear()
            self._films[key] = got
        return got

    def forward(self, x_t, cond, t):
        """x0^ (B, out_ch, H, W) in the weights' dtype. cond: (B, C, H, W), or a list of tensors whose
        channels, concatenated, are the condition (folded straight in, see fold_parts)."""
        dt = self.inp.weight.dtype  # float32, or bfloat16 for inference (RealD2iffNoiser)
        if torch.is_grad_enabled():
            e, films = self.embed(t), None
        else:  # inference: each block's FiLM from the times' (kept) embedding
            e, films = None, iter(self.films(t))
        h = fold_parts([x_t, *(cond if isinstance(cond, (list, tuple)) else [cond])], self.cfg.unshuffle, dt)
        h = self.inp(h)
        skips = []
        for i, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, e, next(films) if films else None)
            if i < len(self.pool):
                skips.append(h)
                h = self.pool[i](h)
        g = self.glob(h.mean((2, 3)))[:, :, None, None]
        h = h + g if torch.is_grad_enabled() else h.add_(g)
        for unpool, blocks in zip(self.unpool, self.up):
            h = torch.cat([unpool(h), skips.pop()], 1)
            for b in blocks:
                h = b(h, e, next(films) if films else None)
        return unfold(
            self.out(F.silu(self.out_norm(h), inplace=not torch.is_grad_enabled())), self.cfg.unshuffle
        )


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
    return torch.exp(-((k / k_c) ** 2))


def fgs_loss(
    x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor, k_c: float = 0.08
) -> torch.Tensor:
    """Frequency-Guided Supervision: alpha^2 * sum_k W(k)|F(M x0^) - F(M x0)| / sum_k W(k), batch mean.

    x0_hat, x0: (B, H, W) residual images; mask (B, H, W); alpha (B,)."""
    diff = torch.fft.rfft2((x0_hat - x0) * mask, norm="ortho")  # F is linear: F(a) - F(b) = F(a - b)
    wk = frequency_weight(x0.shape[-2], x0.shape[-1], k_c).to(x0.device)
    per = (wk * diff.abs()).sum((-2, -1)) / wk.sum()
    return (alpha.reshape(-1) ** 2 * per).mean()


def discrepancy_weight(
    target: torch.Tensor,
    valid: torch.Tensor,
    tau: float = 0.5,
    beta: float = 4.0,
    border: float = 0.5,
    border_px: int = 2,
) -> torch.Tensor:
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
def ddim_sample(
    net: nn.Module, cond: torch.Tensor, noises: list[torch.Tensor], steps: int, eta: float = 0.0
) -> torch.Tensor:
    """DDIM from t = 1 to 0 in `steps` equal steps. noises: `steps` tensors shaped like x (the start
    and the fresh noise of each step but the last, which returns x0^; unused when eta = 0)."""
    x = noises[0]
    ts = torch.linspace(1.0, 0.0, steps + 1)
    for i in range(steps):
        t, s = ts[i].expand(x.shape[0]), ts[i + 1].expand(x.shape[0])
        a_t, s_t = alpha_sigma(t)
        a_s, s_s = alpha_sigma(s)
        x0 = net(x, cond, t).float().clamp_(-6, 6)  # a fresh tensor
        if i == steps - 1:
            return x0
        eps = (x - a_t * x0) / s_t  # t > 0 at every evaluation, so sigma_t > 0
        ratio = (s_s / s_t) ** 2 * (1 - (a_t / a_s) ** 2)
        s_eta = eta * torch.sqrt(ratio.clamp_min(0))
        x = a_s * x0 + torch.sqrt((s_s**2 - s_eta**2).clamp_min(0)) * eps + s_eta * noises[i + 1]
    return x


# --- 4. the model: the two stages --------------------------------------------------------------


class RealD2iff(nn.Module):
    """The coarse and fine stages. `sample` turns padded clean depth and one run's noise (drawn by
    `draw_noise`) into the generated (y, h); `decode` reads it out as depth."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.coarse = UNet(cfg.coarse) if cfg.coarse else None
        self.fine = UNet(cfg.fine) if cfg.fine else None

    def noise_buffers(self, B: int, shape_hw: tuple, fine: bool = True) -> dict:
        """Room for B frames' noise (draw_noise(..., out=, index=) fills frame i's):
        {"coarse": (B, coarse_steps, 2, H/4, W/4) or None, "fine": (B, fine_steps, 2, H, W) or None}."""
        H, W = shape_hw
        out = {"coarse": None, "fine": None}
        if self.coarse is not None:
            out["coarse"] = torch.empty(B, self.cfg.coarse_steps, 2, H // COARSE, W // COARSE)
        if self.fine is not None and fine:
            out["fine"] = torch.empty(B, self.cfg.fine_steps, 2, H, W)
        return out

    def draw_noise(
        self, g: torch.Generator, shape_hw: tuple, fine: bool = True, out: dict | None = None, index: int = 0
    ) -> dict:
        """One frame's noise for every sampling step of each stage, drawn from `g` (coarse, then fine):
        {"coarse": (coarse_steps, 2, H/4, W/4) or None, "fine": (fine_steps, 2, H, W) or None}; with
        `out` (noise_buffers'), drawn straight into its frame `index` (the same numbers)."""
        H, W = shape_hw
        out = out if out is not None else self.noise_buffers(1, shape_hw, fine)
        drawn = {"coarse": None, "fine": None}
        for k in ("coarse", "fine"):
            if out[k] is not None:  # a contiguous block per frame: randn fills it as a fresh tensor
                drawn[k] = torch.randn(out[k].shape[1:], generator=g, out=out[k][index])
        return drawn

    @torch.no_grad()
    def sample(self, clean: torch.Tensor, noise: dict, fine: bool = True) -> torch.Tensor:
        """(B, H, W) clean depth (H, W multiples of PAD) and the frames' noise (noise_buffers', B
        first) -> (B, 2, H, W) generated (y, h). fine=False: the coarse stage alone."""
        B, H, W = clean.shape
        with record_function("reald2iff.condition"):
            cond = encode_condition(clean)
            coarse = torch.zeros(B, 2, H // COARSE, W // COARSE)
            coarse[:, 1] = -1
        if self.coarse is not None:
            with record_function("reald2iff.coarse"):
                coarse = ddim_sample(
                    self.coarse,
                    coarse_condition(cond),
                    list(noise["coarse"].unbind(1)),
                    self.cfg.coarse_steps,
                    self.cfg.eta,
                )
        with record_function("reald2iff.upsample"):
            up = upsample(coarse)
        if self.fine is None or not fine:
            return up
        with record_function("reald2iff.fine"):
            x = ddim_sample(
                self.fine, [cond, up], list(noise["fine"].unbind(1)), self.cfg.fine_steps, self.cfg.eta
            )
            x[:, :1] += up[:, :1]  # a fresh tensor (ddim_sample's)
        return x
