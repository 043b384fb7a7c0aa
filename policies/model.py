"""A CNN diffusion policy on depth (Chi et al. 2023, "Diffusion Policy"), read top to bottom.

1. Depth encoder: per camera, a small residual CNN with GroupNorm over two channels, the depth
   (normalised per camera, 0 where there is no reading) and its validity (1 = reading, 0 = hole),
   so the network is told where the sensor saw nothing instead of reading 0 m as a surface.
   Spatial-softmax keypoints (where each learned feature map peaks) and a linear layer give one
   feature vector per camera and observation step.
2. Observation features: every camera's features and the normalised proprioception for each of the
   `obs_horizon` observation steps, concatenated into one conditioning vector.
3. Noise predictor: a 1-D temporal U-Net over the action sequence (prediction horizon steps x action
   dims), each residual block modulated by FiLM (per-channel scale and shift) from the conditioning
   vector and the diffusion step's embedding.
4. Diffusion: DDPM training (100 steps, squared-cosine beta schedule, epsilon prediction) and DDIM
   inference (deterministic, at most 10 steps), all in normalised action space [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from plumbing.training import bf16_supported


@dataclass
class PolicyConfig:
    """The network and diffusion settings (saved with a run; a run reloads with these)."""

    cameras: tuple = ("front",)
    proprio_dim: int = 11
    action_dim: int = 10
    obs_horizon: int = 2
    pred_horizon: int = 16
    action_horizon: int = 8  # actions executed per prediction
    crop: float = 0.97  # fraction of each side kept by the crop (random while training, centred at
    # inference): 124 px of 128
    enc_widths: tuple = (16, 32, 32)
    feat_dim: int = 64  # per camera
    down_dims: tuple = (64, 128, 256)
    kernel: int = 5
    train_steps: int = 100  # DDPM steps
    infer_steps: int = 10  # DDIM steps
    encoder_bf16: bool = True  # run the depth encoder in bfloat16 where the CPU has it (~1.4x faster)

    def __post_init__(self):
        self.cameras = tuple(self.cameras)
        self.enc_widths, self.down_dims = tuple(self.enc_widths), tuple(self.down_dims)
        if not self.cameras:
            raise ValueError("a policy needs at least one camera")
        if self.obs_horizon < 1 or self.action_horizon < 1:
            raise ValueError("obs_horizon and action_horizon must be >= 1")
        if self.obs_horizon - 1 + self.action_horizon > self.pred_horizon:
            raise ValueError("obs_horizon - 1 + action_horizon must fit in pred_horizon")
        if self.pred_horizon % (2 ** (len(self.down_dims) - 1)):
            raise ValueError(f"pred_horizon must be a multiple of {2 ** (len(self.down_dims) - 1)}")
        if not 1 <= self.infer_steps <= self.train_steps:
            raise ValueError("infer_steps must be in 1..train_steps")
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop {self.crop} must be the fraction of each image side kept, in (0, 1]")
        if any(w % 8 for w in self.enc_widths + self.down_dims):
            raise ValueError("widths must be multiples of 8 (GroupNorm groups)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- 1. depth encoder -----------------------------------------------------------------------------


class ResBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.GroupNorm(8, cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(8, cout))
            if (stride != 1 or cin != cout)
            else nn.Identity()
        )

    def forward(self, x):
        h = F.relu(self.n1(self.c1(x)))
        return F.relu(self.n2(self.c2(h)) + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Keypoints (Levine et al. 2016): a 1x1 conv gives `k` heat maps; each map's softmax over the
    image gives the expected (x, y) in [-1, 1]: (N, C, h, w) -> (N, 2k). Keeps where things are,
    which global pooling throws away."""

    def __init__(self, cin: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, k, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        p = self.conv(x).flatten(2).float().softmax(-1)  # (N, k, h*w)
        ys, xs = torch.meshgrid(
            torch.linspace(-1, 1, h, device=x.device),
            torch.linspace(-1, 1, w, device=x.device),
            indexing="ij",
        )
        return torch.cat([(p * xs.reshape(1, 1, -1)).sum(-1), (p * ys.reshape(1, 1, -1)).sum(-1)], 1)


class DepthEncoder(nn.Module):
    """(N, 2, H, W) depth + validity -> (N, feat_dim). A stride-2 stem, one residual block per
    width (each halving the resolution but the last), spatial-softmax keypoints, a linear layer."""

    def __init__(self, widths: tuple, feat_dim: int, keypoints: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(2, widths[0], 5, 2, 2, bias=False), nn.GroupNorm(8, widths[0]), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            *[
                ResBlock2d(widths[max(i - 1, 0)], w, 2 if i < len(widths) - 1 else 1)
                for i, w in enumerate(widths)
            ]
        )
        self.keypoints = SpatialSoftmax(widths[-1], keypoints)
        self.head = nn.Linear(2 * keypoints, feat_dim)

    def forward(self, x):
        return self.head(self.keypoints(self.blocks(self.stem(x))))


# --- 3. the temporal U-Net ---------------------------------------------------------------------------


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer diffusion steps (B,) -> (B, dim)."""
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    a = t.float()[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1)


class Conv1dBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(8, cout), nn.Mish())


class CondResBlock1d(nn.Module):
    """Two conv blocks; FiLM from the conditioning vector between them; 1x1 skip."""

    def __init__(self, cin: int, cout: int, cond_dim: int, k: int):
        super().__init__()
        self.b1, self.b2 = Conv1dBlock(cin, cout, k), Conv1dBlock(cout, cout, k)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cond):
        scale, shift = self.film(cond)[:, :, None].chunk(2, 1)
        return self.b2(self.b1(x) * scale + shift) + self.skip(x)


class TemporalUnet(nn.Module):
    """eps^ = net(noisy actions (B, T, Da), step (B,), conditioning (B, C))."""

    def __init__(self, action_dim: int, cond_dim: int, down_dims: tuple, k: int):
        super().__init__()
        e = down_dims[0]
        self.step_mlp = nn.Sequential(nn.Linear(e, 4 * e), nn.Mish(), nn.Linear(4 * e, e))
        cd = cond_dim + e
        dims = (action_dim,) + tuple(down_dims)
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(down_dims) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        CondResBlock1d(a, b, cd, k),
                        CondResBlock1d(b, b, cd, k),
                        nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity(),
                    ]
                )
            )
        self.mid = nn.ModuleList([CondResBlock1d(dims[-1], dims[-1], cd, k) for _ in range(2)])
        self.up = nn.ModuleList()
        for a, b in zip(reversed(down_dims[1:]), reversed(down_dims[:-1])):
            self.up.append(
                nn.ModuleList(
                    [
                        CondResBlock1d(2 * a, b, cd, k),
                        CondResBlock1d(b, b, cd, k),
                        nn.ConvTranspose1d(b, b, 4, 2, 1),
                    ]
                )
            )
        self.out = nn.Sequential(
            Conv1dBlock(down_dims[0], down_dims[0], k), nn.Conv1d(down_dims[0], action_dim, 1)
        )

    def forward(self, x, t, cond):
        c = torch.cat([self.step_mlp(step_embedding(t, self.step_mlp[0].in_features)), cond], 1)
        h = x.transpose(1, 2)
        skips = []
        for r1, r2, down in self.down:
            h = r2(r1(h, c), c)
            skips.append(h)
            h = down(h)
        for m in self.mid:
            h = m(h, c)
        for r1, r2, up in self.up:
            h = torch.cat([h, skips.pop()], 1)
            h = up(r2(r1(h, c), c))
        return self.out(h).transpose(1, 2)


# --- 4. diffusion --------------------------------------------------------------------------------


def cosine_alphas_cumprod(n: int, s: float = 0.008) -> torch.Tensor:
    """alpha-bar_t for t = 0..n-1 of the squared-cosine schedule (betas capped at 0.999)."""
    x = torch.linspace(0, n, n + 1, dtype=torch.float64)
    ab = torch.cos(((x / n) + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


class DiffusionPolicy(nn.Module):
    """Observations (depth per camera, proprioception) -> a normalised action sequence."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict({c: DepthEncoder(cfg.enc_widths, cfg.feat_dim) for c in cfg.cameras})
        cond_dim = cfg.obs_horizon * (len(cfg.cameras) * cfg.feat_dim + cfg.proprio_dim)
        self.net = TemporalUnet(cfg.action_dim, cond_dim, cfg.down_dims, cfg.kernel)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.train_steps), persistent=False)
        self.bf16 = cfg.encoder_bf16 and bf16_supported()

    def condition(self, depth: dict, proprio: torch.Tensor) -> torch.Tensor:
        """depth: camera -> (B, To, 2, h, w); proprio (B, To, P) -> (B, C)."""
        B, To = proprio.shape[:2]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            feats = [
                self.encoders[c](depth[c].flatten(0, 1)).float().reshape(B, To, -1) for c in self.cfg.cameras
            ]
        return torch.cat(feats + [proprio], 2).flatten(1)

    def loss(
        self,
        depth: dict,
        proprio: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDPM epsilon-prediction loss on normalised actions (B, T, Da)."""
        cond = self.condition(depth, proprio)
        B = actions.shape[0]
        t = torch.randint(0, self.cfg.train_steps, (B,), generator=generator)
        noise = torch.randn(actions.shape, generator=generator)
        ab = self.alphas_cumprod[t][:, None, None]
        noisy = ab.sqrt() * actions + (1 - ab).sqrt() * noise
        return F.mse_loss(self.net(noisy, t, cond), noise)

    @torch.no_grad()
    def sample(self, depth: dict, proprio: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """DDIM (eta = 0) from `noise` (B, T, Da) in infer_steps evenly spaced steps; returns
        normalised actions clipped to [-1, 1]."""
        cond = self.condition(depth, proprio)
        n, k = self.cfg.train_steps, self.cfg.infer_steps
        ts = list(range(0, n, n // k))[::-1][:k]  # e.g. 90, 80, ..., 0
        x = noise
        for i, t in enumerate(ts):
            ab = self.alphas_cumprod[t]
            ab_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            eps = self.net(x, torch.full((x.shape[0],), t), cond)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x.clamp(-1, 1)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def seeded_noise(rng: np.random.Generator, shape) -> torch.Tensor:
    """Standard normal noise from a numpy generator (so a seed fixes the sampled actions)."""
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
