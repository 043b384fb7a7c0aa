"""RealD²iff behind the noise-model interface: the whole clean-to-noisy pipeline.

    registration shift (optional) -> edge displacement (optional) -> coarse and fine diffusion
    stages -> sensor texture (optional) -> readout on the sensor's levels (smoothed before it and
    resampled after it by the optional readout stage)

Every random number derives from the frame's numpy Generator: it seeds one torch generator, which
draws the diffusion noise, then the texture tiles, then the registration shift, then the edge
displacement's field, then the readout grid's phase. A frame's output therefore depends on its own
generator only, whatever the batch it comes in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.profiler import record_function

from plumbing.training import bf16_supported
from realdiff.reald2iff.checkpoint import load_model
from realdiff.reald2iff.config import PAD
from realdiff.reald2iff.model import RealD2iff, decode
from realdiff.reald2iff.stages import EdgeStage, ReadoutStage, RegistrationStage, TextureStage
from realdiff.sensors.base import PARAMS_DIR, NoiseModel

DEFAULT_WEIGHTS = PARAMS_DIR / "reald2iff.pt"


@dataclass
class Draft:
    """A batch up to its readout (draft(), then read_out()): the clean depth as the registration and
    edge stages moved it (padded to the networks' granularity), the clean depth as given, the
    generated (y, h), the texture field, each frame's readout-grid phases, and whether it was shifted."""

    moved: torch.Tensor
    clean: torch.Tensor
    x: torch.Tensor
    field: torch.Tensor | None
    phases: torch.Tensor | None
    shifted: bool


@torch.inference_mode()
def draft(
    model: RealD2iff,
    clean: np.ndarray,
    rngs: list,
    texture: TextureStage | None = None,
    registration: RegistrationStage | None = None,
    fine: bool = True,
    focal: float | None = None,
    edges: EdgeStage | None = None,
    readout: ReadoutStage | None = None,
) -> Draft:
    """generate() up to the readout: every draw, the stages before the diffusion, the diffusion
    stages and the texture."""
    B, H, W = clean.shape
    Hp, Wp = -(-H // PAD) * PAD, -(-W // PAD) * PAD
    tiles = texture is not None and fine
    noise = model.noise_buffers(B, (Hp, Wp), fine)  # each frame's draws go straight to their place
    if tiles:
        pick, turn = (torch.empty(B, texture.tiles(Hp, Wp), dtype=torch.long) for _ in range(2))
    shifts = torch.empty(B, 2) if registration is not None else None
    fields = torch.empty(B, *edges.grid(H, W)) if edges is not None else None
    phases = torch.empty(B, 2) if readout is not None else None
    g = torch.Generator()
    with record_function("reald2iff.draw"):
        for i, rng in enumerate(rngs):
            g.manual_seed(int(rng.integers(2**63)))
            model.draw_noise(g, (Hp, Wp), fine, out=noise, index=i)
            if tiles:
                pick[i], turn[i] = texture.draw(g, Hp, Wp)
            if registration is not None:
                shifts[i] = registration.draw(g)
            if edges is not None:
                fields[i] = edges.draw(g, H, W)
            if readout is not None:
                phases[i] = readout.draw(g)
    a = np.ascontiguousarray(clean, dtype=np.float32)
    c0 = torch.from_numpy(a if a.flags.writeable else a.copy())  # read, never written
    c = registration.apply(c0, shifts, focal) if shifts is not None else c0
    if edges is not None:
        with record_function("reald2iff.edges"):
            c = edges.apply(c, fields, focal)
    if (Hp, Wp) != (H, W):
        c = F.pad(c, (0, Wp - W, 0, Hp - H))
    x = model.sample(c, noise, fine)
    with record_function("reald2iff.texture"):
        field = texture.field(pick, turn, c, x) if tiles else None
    return Draft(c, c0, x, field, phases, shifts is not None)


@torch.inference_mode()
def read_out(
    model: RealD2iff, d: Draft, readout: ReadoutStage | None = None, focal: float | None = None
) -> np.ndarray:
    """A draft's noisy depth (B, H, W): decoded and read out on the model's levels, through the
    readout stage if given (the draft's phases must come from one)."""
    H, W = d.clean.shape[1:]
    with record_function("reald2iff.decode"):
        smooth = readout.sigma(focal) if readout is not None else 0.0
        out = decode(d.moved, d.x, model.cfg.levels, d.field, smooth)[:, :H, :W]
        if readout is not None:
            out = readout.resample(out, d.phases, focal)
        if d.shifted or readout is not None:  # no reading where the clean depth has none
            out = out.masked_fill_(d.clean <= 0, 0.0)
        return np.ascontiguousarray(out.numpy())


def generate(
    model: RealD2iff,
    clean: np.ndarray,
    rngs: list,
    texture: TextureStage | None = None,
    registration: RegistrationStage | None = None,
    fine: bool = True,
    focal: float | None = None,
    edges: EdgeStage | None = None,
    readout: ReadoutStage | None = None,
) -> np.ndarray:
    """(B, H, W) float32 clean depth, one numpy Generator per frame -> (B, H, W) noisy depth.
    fine=False leaves the fine stage (and the texture) out; focal: the camera's focal length in
    pixels, which scales the registration shifts, edge displacements and readout grid (default: the
    training camera's)."""
    d = draft(model, clean, rngs, texture, registration, fine, focal, edges, readout)
    return read_out(model, d, readout, focal)


class RealD2iffNoiser(NoiseModel):
    """RealD²iff as a noise model. `weights`: a file from `realdiff train` (default: the committed
    weights trained on 7-Scenes); `coarse_steps`, `fine_steps`: sampling steps (default: the
    model's); `bf16`: bfloat16 inference where the CPU supports it; `batch`: frames per network call
    at 128x128 (larger frames go proportionally fewer at a time); `threads`: torch threads (default:
    torch's)."""

    name = "reald2iff"
    version = "2"  # 2: noise from a torch generator seeded by the frame's, bfloat16 weights

    def __init__(
        self,
        weights: str | None = None,
        coarse_steps: int | None = None,
        fine_steps: int | None = None,
        bf16: bool = True,
        batch: int = 32,
        threads: int | None = None,
    ):
        self.weights = str(weights) if weights else None
        f = load_model(self.weights or DEFAULT_WEIGHTS)
        self.model, self.texture, self.registration, self.meta = f.model, f.texture, f.registration, f.meta
        self.edges, self.readout = f.edges, f.readout
        self._sha1 = None  # fingerprint(), when asked
        cfg = self.model.cfg
        self.coarse_steps, self.fine_steps = coarse_steps, fine_steps
        cfg.coarse_steps = int(coarse_steps or cfg.coarse_steps)
        cfg.fine_steps = int(fine_steps or cfg.fine_steps)
        if cfg.coarse_steps < 1 or cfg.fine_steps < 1:
            raise ValueError("reald2iff: sampling steps must be >= 1")
        self.bf16 = bool(bf16) and bf16_supported()
        if self.bf16:  # bfloat16 weights: 1.4x faster than autocast on this kind of CPU
            self.model.to(torch.bfloat16)
            if self.texture is not None:  # added in float32, at the precision the weights are kept in
                self.texture.bank = self.texture.bank.to(torch.bfloat16).float()
        self.batch, self.threads = int(batch), threads
        self.name = cfg.name  # a variant's label, e.g. reald2iff-no-fgs
        if coarse_steps or fine_steps:
            self.name += f" ({cfg.coarse_steps}+{cfg.fine_steps} steps)"

    def params(self) -> dict:
        return {
            "weights": self.weights,
            "coarse_steps": self.coarse_steps,
            "fine_steps": self.fine_steps,
            "bf16": self.bf16,
            "batch": self.batch,
            "threads": self.threads,
        }

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
            out[s : s + n] = generate(
                self.model,
                depth[s : s + n],
                rngs[s : s + n],
                self.texture,
                self.registration,
                focal=focal,
                edges=self.edges,
                readout=self.readout,
            )
        return out
