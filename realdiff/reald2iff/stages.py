r"""The optional stages of RealD²iff beside its diffusion stages, each with its fitting.

1. Sensor texture (`realdiff texture` adds it to a model file).
   On flat surfaces the real sensor's residual has a fine, non-Gaussian texture (blotches and streaks
   a few pixels across) that the one-step fine stage, which returns a conditional mean, smooths
   away; a two-sample classifier finds it there (bench/two_sample_ceiling.py). The texture stage
   adds real texture back, example-based: from the train split it cuts T x T tiles (T = 64) of the
   dequantised real residual's finer band in inverse depth,

       t = r - G_4(r)     r = 1/z - 1/c on readings, G_4 a Gaussian low-pass of 4 px over readings,

   where at least 98 % of the tile is flat (see near_edges), keeps some of them (`--tiles`), and at
   inference tiles the frame with tiles drawn at random (each turned by 180 degrees or not, which
   keeps the texture's orientation), adding them to the inverse depth before the readout on flat
   pixels only: those farther than 3 px from a clean-depth jump of more than 2 %, a generated hole
   or the image border. Near edges and holes the fine stage's output stands as it is.

2. Twin registration (`realdiff shift` adds it to a model file).
   Real frames do not sit exactly on their twin renders: the poses they are rendered from are a few
   pixels off (7-Scenes train split: dy 1.2 +- 1.6 px, dx 0.7 +- 3.1 px, see fit_shifts). Given the
   clean depth alone, the diffusion stages can learn only the mean of that misregistration, a blur at
   depth edges, where the real residual is large and of either sign. This stage keeps each train
   frame's best integer shift (dy, dx) and, at inference, moves the frame's clean depth by one of them,

       c'(i, j) = c(i + s dy, j + s dx)     s = f / f_train (a pose error is an angle; rounded),

   drawn by the frame's generator after all the draws above, before the diffusion stages; the
   output has no reading where the unshifted clean depth has none.

3. Edge displacement (`realdiff edges` adds it).
   A stereo camera's depth edges are not where the surfaces meet: matching windows that straddle a
   jump take the nearer surface's disparity, so the foreground grows into the background by a few
   pixels, by an amount that changes along the edge and with the jump (D435, train split:
   background pixels 1 px from a foreground read it in 76 % of cases beside a jump of 25-60 %, and
   10 % still do 12 px out beside one of more than 60 %). A one-step fine stage returns the mean
   of "foreground or background", a blur, never one or the other. This stage fits, per jump-size
   bin, survival curves of the one-sided part of the real edge swaps (fit_edge_swaps, from
   metrics.edge_swaps: the fraction of background pixels d px from the foreground that read it,
   and the other way round), grown G(d) and shrunk S(d), and, at inference, moves the clean
   depth's edges before the diffusion stages: with u a smooth uniform random field (correlation
   length `length` px, so the displacement holds along an edge),

       w = #{d : u < G_j(d)} - #{d : u > 1 - S_j(d)}      (j: the pixel's jump-size bin),

   so P(w >= d) = G_j(d) and P(w <= -d) = S_j(d), and a pixel with w = k > 0 takes the nearest
   depth within k px if that is a jump of more than 5 % (w < 0: the farthest). Widths scale with
   f / f_train, as the registration shifts do.

4. Readout (`realdiff readout` adds it).
   A stereo camera's disparity is smooth at the pixel scale (it comes from matching windows), so its
   readout on the sensor's levels gives terraces; the diffusion stages and the texture carry
   pixel-level jitter that the readout turns into flicker between levels (D435 validation frames,
   flat pixels: 6.7 % of readings between two equal neighbours that differ from it, the real 0.3 %).
   And depth aligned to a colour camera (the RealSense SDK's `align`) is the depth camera's image
   resampled nearest-neighbour, so readings repeat: every source pixel covers `grid` (gy, gx) output
   pixels (D435 at 640x480: 1.585 x 1.562; 72 % of its row neighbours read the same). It smooths the
   inverse depth over `smooth` px (a Gaussian over readings) on flat pixels before the readout,
   and resamples the output nearest-neighbour from a grid of that pitch at a random phase:

       z'(i, j) = z(r_y(i), r_x(j))     r(i) = round((floor((i + p) / m) + 1/2) m - p - 1/2),

   with m the pitch scaled by f / f_train and p uniform in [0, m). fit_grid finds the pitch from the
   real frames (the period of equal neighbours); add_readout fits `smooth` on the train split.

Each stage draws its random numbers from the frame's torch generator after the diffusion noise
(texture, then registration, then edges, then readout), so a model with or without them draws the
same diffusion noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def lowpass(x: torch.Tensor, mask: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Gaussian low-pass (std sigma px) of x (N, H, W) over the pixels where mask (N, H, W) is true
    (a normalised convolution: the others neither count nor dilute)."""
    k = int(3 * sigma) * 2 + 1
    t = torch.arange(k, dtype=x.dtype) - k // 2
    w = torch.exp(-(t**2) / (2 * sigma**2))
    w = w / w.sum()

    def blur(a):
        a = F.conv2d(a[:, None], w.view(1, 1, 1, k), padding=(0, k // 2))
        return F.conv2d(a, w.view(1, 1, k, 1), padding=(k // 2, 0))[:, 0]

    m = mask.to(x.dtype)
    return torch.cat(
        [
            blur(x[i : i + 16] * m[i : i + 16]) / blur(m[i : i + 16]).clamp_min(1e-6)
            for i in range(0, len(x), 16)
        ]
    )


def near_edges(clean: torch.Tensor, holes: torch.Tensor, jump: float = 0.02, px: int = 3) -> torch.Tensor:
    """(N, H, W) bool: pixels within px of a clean-depth jump of more than `jump` (relative) to a
    4-neighbour, of a clean-depth or `holes` pixel, or of the image border; the rest is flat."""
    edge = (clean <= 0) | holes
    a = clean[:, :, 1:]
    edge[:, :, 1:] |= (a - clean[:, :, :-1]).abs_() > jump * a
    a = clean[:, 1:, :]
    edge[:, 1:, :] |= (a - clean[:, :-1, :]).abs_() > jump * a
    p = F.pad(edge, (px,) * 4, value=True)  # the border counts as an edge
    return _dilate(_dilate(p, 2, px), 1, px)


def _dilate(p: torch.Tensor, dim: int, px: int) -> torch.Tensor:
    """The OR of p over windows of 2 px + 1 along `dim`, where p is padded by px on both sides
    there (the result is not): ORs of shifted copies over spans that double (1, 2, 4, ...), then
    two spans that cover the window between them."""
    n, k = p.shape[dim] - 2 * px, 2 * px + 1
    span = 1
    while 2 * span <= k:
        p = p.narrow(dim, 0, p.shape[dim] - span) | p.narrow(dim, span, p.shape[dim] - span)
        span *= 2
    return p.narrow(dim, 0, n) | p.narrow(dim, k - span, n) if span < k else p.narrow(dim, 0, n)


def flat_texture(clean: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The finer band t = r - G_4(r) of real's residual in inverse depth (see the docstring, 1) on
    flat pixels (0 elsewhere), and the flat mask. clean, real: (N, H, W) metres."""
    reads = (real > 0) & (clean > 0)
    res = torch.where(reads, 1 / real.clamp_min(1e-3) - 1 / clean.clamp_min(1e-3), 0.0)
    flat = ~near_edges(clean, ~reads)
    return torch.where(flat, res - lowpass(res, reads), 0.0), flat


def texture_tiles(
    clean: torch.Tensor, real: torch.Tensor, size: int = 64, min_flat: float = 0.98
) -> torch.Tensor:
    """Every size x size tile (on a grid of half-tile steps) of flat_texture(clean, real) that is
    flat over at least min_flat of its pixels. clean, real: (N, H, W) metres (real dequantised).
    Returns (n, size, size)."""
    tiles = []
    for s in range(0, len(clean), 16):
        c = clean[s : s + 16]
        band, flat = flat_texture(c, real[s : s + 16])
        H, W = c.shape[1:]
        for y in range(0, H - size + 1, size // 2):
            for x in range(0, W - size + 1, size // 2):
                ok = flat[:, y : y + size, x : x + size].float().mean((1, 2)) >= min_flat
                tiles.append(band[ok, y : y + size, x : x + size])
    return torch.cat(tiles) if tiles else torch.zeros(0, size, size)


def paste_texture(
    bank: torch.Tensor,
    pick: torch.Tensor,
    turn: torch.Tensor,
    H: int,
    W: int,
    both: torch.Tensor | None = None,
) -> torch.Tensor:
    """Textures (..., H, W) tiled with bank[pick[..., i]] (T x T each), turned by 180 degrees where
    turn[..., i], row by row: pick and turn hold one entry per tile, ceil(H / T) * ceil(W / T).
    `both`: the bank followed by its tiles turned (TextureStage keeps it), to gather each tile once."""
    T, n = bank.shape[-1], len(bank)
    ny, nx = -(-H // T), -(-W // T)
    both = torch.cat([bank, bank.flip(-2, -1)]) if both is None else both
    lead = pick.shape[:-1]
    tiles = both.index_select(0, (pick + n * (turn != 0).long()).reshape(-1))
    tiles = tiles.view(*lead, ny, nx, T, T).transpose(-3, -2)
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
        c, z = clean[s : s + 16], real[s : s + 16]
        H, W = c.shape[1:]
        m = near_edges(c, torch.zeros_like(c, dtype=torch.bool), px=px) & (z > 0) & (c > 0)
        m[:, :radius], m[:, H - radius :], m[:, :, :radius], m[:, :, W - radius :] = (
            False,
            False,
            False,
            False,
        )
        n = m.sum((1, 2)).clamp_min(1)
        p = F.pad(c[:, None], (radius,) * 4, mode="replicate")[:, 0]
        cost = torch.stack(
            [
                (
                    torch.where(
                        m,
                        (
                            (z - p[:, radius + dy : radius + dy + H, radius + dx : radius + dx + W]).abs()
                            / z.clamp_min(1e-3)
                        ).clamp_max(0.1),
                        0.0,
                    )
                ).sum((1, 2))
                / n
                for dy in range(-radius, radius + 1)
                for dx in range(-radius, radius + 1)
            ],
            1,
        )
        best = torch.where(m.flatten(1).any(1), cost.argmin(1), (k * k) // 2)  # (0, 0) is the centre
        out.append(torch.stack([best // k - radius, best % k - radius], 1))
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.long)


class TextureStage:
    """Sensor texture (1): a bank of (n, T, T) real texture tiles, pasted on flat pixels."""

    def __init__(self, bank: torch.Tensor):
        self.bank = bank.float()
        self._both = (None, None)  # (bank, the bank and its tiles turned), made when first pasted

    @property
    def size(self) -> int:
        return int(self.bank.shape[-1])

    def tiles(self, H: int, W: int) -> int:
        """How many tiles cover an H x W image."""
        return -(-H // self.size) * -(-W // self.size)

    def draw(self, g: torch.Generator, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame's tiles over an H x W image: (which tile, turned by 180 degrees or not) per tile."""
        n = self.tiles(H, W)
        return torch.randint(len(self.bank), (n,), generator=g), torch.randint(2, (n,), generator=g)

    def field(
        self, pick: torch.Tensor, turn: torch.Tensor, clean: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """The texture (B, H, W) to add to the inverse depth of frames with clean depth (B, H, W)
        and generated (y, h) x: the drawn tiles where the pixel is flat, 0 elsewhere."""
        H, W = clean.shape[-2:]
        if self._both[0] is not self.bank:  # (the bank may be replaced, e.g. rounded to bfloat16)
            self._both = (self.bank, torch.cat([self.bank, self.bank.flip(-2, -1)]))
        texture = paste_texture(self.bank, pick, turn, H, W, self._both[1])
        return texture.masked_fill_(near_edges(clean, x[:, 1] > 0), 0.0)


class RegistrationStage:
    """Twin registration (2): the (n, 2) integer shifts (dy, dx) of the train frames, in pixels of
    a camera of focal length `focal`."""

    def __init__(self, shifts: torch.Tensor, focal: float):
        if not focal > 0:
            raise ValueError("a registration stage needs the training camera's focal length > 0")
        self.shifts, self.focal = shifts.float(), float(focal)

    def draw(self, g: torch.Generator) -> torch.Tensor:
        """One frame's shift (2,), one of the train frames'."""
        return self.shifts[torch.randint(len(self.shifts), (), generator=g)]

    def apply(self, clean: torch.Tensor, shift: torch.Tensor, focal: float | None = None) -> torch.Tensor:
        """clean (B, H, W) moved by each frame's drawn shift (B, 2), scaled by focal / the training
        camera's focal length (default: the training camera's) and rounded."""
        scale = focal / self.focal if focal else 1.0
        return shift_depth(clean, (shift * scale).round().long())


EDGE_JUMPS = (0.1, 0.25, 0.6)  # lower bounds of the edge stage's jump-size bins, (far - near) / near


def fit_edge_swaps(clean: np.ndarray, real: np.ndarray, max_dist: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """The edge stage's curves from pairs (N, H, W metres): (grown, shrunk), each (len(EDGE_JUMPS),
    max_dist), per jump-size bin the one-sided part of the real edge swaps (metrics.edge_swaps):
    swaps as often one way as the other are a blurred edge, which the diffusion stages make
    already, so grown is max(0, g - s) and shrunk max(0, s - g) of the real rates g and s. Made
    survival curves: non-increasing in d (a distance with too few readings counts as 0, and so does
    every one beyond it).

    On the D435 capture's train split, swaps beside jumps of 10-25 % are as often one way as the
    other (44 and 39 % at 1 px; the readings there lie between the two sides, a ramp), beside larger
    jumps one-sided (76 and 18 %; 77 and 6 %): the foreground grown."""
    from realdiff.metrics import edge_swaps

    _, g, s = edge_swaps(clean, real, max_dist=max_dist, rel_jump=EDGE_JUMPS[0], jumps=EDGE_JUMPS)
    g, s = np.nan_to_num(g, nan=0.0), np.nan_to_num(s, nan=0.0)
    grown, shrunk = np.maximum(g - s, 0.0), np.maximum(s - g, 0.0)
    return np.minimum.accumulate(grown, axis=1), np.minimum.accumulate(shrunk, axis=1)


def _pool(a: torch.Tensor, size: int, largest: bool) -> torch.Tensor:
    """The greatest (largest) or least value of a (B, H, W) over size x size windows (size odd)."""
    s = 1 if largest else -1
    x = (s * a)[:, None]
    x = F.max_pool2d(x, (1, size), 1, (0, size // 2))
    return s * F.max_pool2d(x, (size, 1), 1, (size // 2, 0))[:, 0]


def _grow(a: torch.Tensor, largest: bool, cross: bool) -> torch.Tensor:
    """One pixel's growth of a (B, H, W): the greatest (largest) or least value over each pixel's
    4-neighbourhood (cross) or 3 x 3 window; alternating the two, square first, reaches the pixels
    whose rounded distance is at most the number of steps (an octagon)."""
    if not cross:
        return _pool(a, 3, largest)
    pad = F.pad(a[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    pick = torch.maximum if largest else torch.minimum
    out = pick(a, pick(pad[:, :-2, 1:-1], pad[:, 2:, 1:-1]))
    return pick(out, pick(pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]))


class EdgeStage:
    """Edge displacement (3): survival curves grown and shrunk (J, D) per jump-size bin
    (fit_edge_swaps), in pixels of a camera of focal length `focal`, with a random field of
    correlation length `length` px and a least jump of `jump` (relative)."""

    def __init__(
        self,
        grown: torch.Tensor,
        shrunk: torch.Tensor,
        focal: float,
        length: float = 32.0,
        jump: float = 0.05,
    ):
        grown, shrunk = torch.as_tensor(grown).float(), torch.as_tensor(shrunk).float()
        if grown.shape != shrunk.shape or grown.shape[0] != len(EDGE_JUMPS) or grown.ndim != 2:
            raise ValueError(
                f"edge curves of shapes {tuple(grown.shape)}, {tuple(shrunk.shape)}; "
                f"need two of ({len(EDGE_JUMPS)}, max_dist)"
            )
        if not focal > 0 or not length >= 1:
            raise ValueError("an edge stage needs the training camera's focal length > 0 and a length >= 1")
        self.grown, self.shrunk = grown, shrunk
        self.focal, self.length, self.jump = float(focal), float(length), float(jump)

    def grid(self, H: int, W: int) -> tuple[int, int]:
        L = int(round(self.length))
        return H // L + 3, W // L + 3

    def draw(self, g: torch.Generator, H: int, W: int) -> torch.Tensor:
        """One frame's random field on its coarse grid (grid(H, W)), standard normal."""
        return torch.randn(self.grid(H, W), generator=g)

    def widths(self, clean: torch.Tensor, noise: torch.Tensor, focal: float | None = None) -> torch.Tensor:
        """(B, H, W) integer displacement w of each pixel of clean (B, H, W), from each frame's drawn
        grid (B, gh, gw): > 0 grows the nearer surface there, < 0 the farther; 0 away from jumps."""
        B, H, W = clean.shape
        L, scale = int(round(self.length)), (focal / self.focal if focal else 1.0)
        z = F.interpolate(noise[:, None], scale_factor=L, mode="bicubic", align_corners=False)[:, 0, :H, :W]
        z = (z - z.mean((1, 2), keepdim=True)) / z.std((1, 2), keepdim=True).clamp_min(1e-6)
        u = torch.special.ndtr(z)
        valid = clean > 0
        size = 2 * max(1, int(round(self.grown.shape[1] * scale))) + 1
        near = _pool(torch.where(valid, clean, torch.inf), size, largest=False)
        far = _pool(torch.where(valid, clean, 0.0), size, largest=True)
        rel = torch.where(valid & torch.isfinite(near), (far - near) / near.clamp_min(1e-6), 0.0)
        j = torch.bucketize(rel, torch.tensor(EDGE_JUMPS), right=True) - 1  # -1: no jump
        w = torch.zeros(B, H, W)
        for d in range(self.grown.shape[1]):
            g, s = self.grown[:, d][j.clamp_min(0)], self.shrunk[:, d][j.clamp_min(0)]
            w += (u < g).float() - (u > 1 - s).float()
        return torch.where(j >= 0, (w * scale).round(), 0.0).long()

    def apply(self, clean: torch.Tensor, noise: torch.Tensor, focal: float | None = None) -> torch.Tensor:
        """clean (B, H, W) with its edges moved (see the docstring, 3); no pixel gains or loses a
        reading."""
        w = self.widths(clean, noise, focal)
        valid = clean > 0
        out = clean.clone()
        near, far = torch.where(valid, clean, torch.inf), torch.where(valid, clean, 0.0)
        widest = int(w.abs().max()) if w.numel() else 0
        for k in range(1, widest + 1):
            near, far = _grow(near, False, cross=k % 2 == 0), _grow(far, True, cross=k % 2 == 0)
            take = (w == k) & valid & (near < clean * (1 - self.jump))
            out = torch.where(take, near, out)
            take = (w == -k) & valid & (far > clean * (1 + self.jump))
            out = torch.where(take, far, out)
        return out


def smooth_flat(inv: torch.Tensor, clean: torch.Tensor, reads: torch.Tensor, sigma: float) -> torch.Tensor:
    """inv (B, H, W) low-passed over readings (lowpass, std sigma px) on the pixels farther than 2 px
    from a clean-depth jump, a hole or the border; as it was elsewhere (all of it under sigma 1/3,
    whose kernel is one pixel)."""
    if int(3 * sigma) < 1:
        return inv
    flat = ~near_edges(clean, ~reads, px=2)
    return torch.where(flat, lowpass(inv, reads, sigma), inv)


def grid_rows(n: int, pitch: float, phase: float) -> torch.Tensor:
    """The source index of each of n output rows (or columns) resampled nearest-neighbour from a grid
    of `pitch` output pixels at `phase` (see the docstring, 4)."""
    i = torch.arange(n, dtype=torch.float64)
    r = torch.round((torch.floor((i + phase) / pitch) + 0.5) * pitch - phase - 0.5)
    return r.clamp(0, n - 1).long()


def fit_grid(real: np.ndarray, min_peak: float = 4.0) -> tuple[float, float]:
    """The resampling pitch (gy, gx) of depth frames (N, H, W): along each axis the frequency f of the
    pattern of equal neighbouring readings (its power spectrum's peak over f in (1/11, 1/2)), whose
    pitch is 1 / (1 - f) (between 1.1 and 2 px); 1.0 (not resampled) where the peak is under
    min_peak times the median power there."""
    pitch = []
    for axis in (1, 2):
        a = np.moveaxis(real, axis, -1)
        eq = ((a[..., 1:] == a[..., :-1]) & (a[..., 1:] > 0)).astype(np.float32)
        eq -= eq.mean(-1, keepdims=True)
        power = (np.abs(np.fft.rfft(eq, axis=-1)) ** 2).reshape(-1, eq.shape[-1] // 2 + 1).mean(0)
        f = np.fft.rfftfreq(eq.shape[-1])
        band = np.flatnonzero((f > 1 / 11) & (f < 0.5))
        k = band[np.argmax(power[band])]
        if not power[k] > min_peak * np.median(power[band]) or k + 1 >= len(f):
            pitch.append(1.0)
            continue
        y0, y1, y2 = np.log(power[k - 1 : k + 2] + 1e-9 * power[k])  # refined by a parabola in log
        peak = f[k] + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) * (f[1] - f[0])
        pitch.append(float(1 / (1 - peak)))
    return pitch[0], pitch[1]


def isolated_readings(clean: np.ndarray, depth: np.ndarray) -> float:
    """The fraction of readings of depth (N, H, W) on flat pixels (near_edges of the clean depth)
    that lie between two equal neighbours, along a row or a column, and differ from them: the
    flicker a readout of a rough field makes."""
    flat = ~near_edges(torch.from_numpy(clean), torch.from_numpy(clean <= 0)).numpy()
    rates = []
    for axis in (2, 1):
        a, ok = np.moveaxis(depth, axis, -1), np.moveaxis(flat, axis, -1)[..., 1:-1]
        left, mid, right = a[..., :-2], a[..., 1:-1], a[..., 2:]
        ok = ok & (left > 0) & (mid > 0) & (right > 0)
        rates.append(float(((left == right) & (mid != left))[ok].mean()) if ok.any() else 0.0)
    return float(np.mean(rates))


class ReadoutStage:
    """Readout (4): smoothing of `smooth` px before the readout and a resampling pitch `grid`
    (gy, gx), in pixels of a camera of focal length `focal`."""

    def __init__(self, smooth: float, grid: tuple, focal: float):
        grid = tuple(float(g) for g in grid)
        if not (smooth >= 0 and len(grid) == 2 and all(1 <= g <= 4 for g in grid) and focal > 0):
            raise ValueError("a readout stage needs smooth >= 0, a grid (gy, gx) in [1, 4] and a focal > 0")
        self.smooth, self.grid, self.focal = float(smooth), grid, float(focal)

    def draw(self, g: torch.Generator) -> torch.Tensor:
        """One frame's grid phases (2,), uniform in [0, 1) of a pitch."""
        return torch.rand(2, generator=g)

    def sigma(self, focal: float | None = None) -> float:
        return self.smooth * (focal / self.focal if focal else 1.0)

    def resample(self, depth: torch.Tensor, phases: torch.Tensor, focal: float | None = None) -> torch.Tensor:
        """depth (B, H, W) resampled on each frame's grid (phases (B, 2)); as it was where the pitch
        is 1 or less."""
        scale = focal / self.focal if focal else 1.0
        (gy, gx), (_, H, W) = (g * scale for g in self.grid), depth.shape
        if gy <= 1 and gx <= 1:
            return depth
        out = torch.empty_like(depth)
        for b in range(len(depth)):
            rows = grid_rows(H, gy, float(phases[b, 0]) * gy) if gy > 1 else torch.arange(H)
            cols = grid_rows(W, gx, float(phases[b, 1]) * gx) if gx > 1 else torch.arange(W)
            out[b] = depth[b].index_select(0, rows).index_select(1, cols)
        return out
