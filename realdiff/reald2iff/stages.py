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

Each stage draws its random numbers from the frame's torch generator after the diffusion noise
(texture first, then registration), so a model with or without them draws the same diffusion noise.
"""

from __future__ import annotations

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
