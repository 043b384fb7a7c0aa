"""RealD²iff's configuration, stated once: the networks and sampler (ModelConfig), a training run
(TrainConfig, with presets as TOML files in realdiff/configs/) and a distillation run
(DistillConfig). The dataclass defaults are the CPU preset; the command line derives its help from
them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"  # <preset>.toml
COARSE = 4  # the coarse stage's downsampling factor
PAD = 32  # images are padded to a multiple of this


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


@dataclass
class ModelConfig:
    """Which diffusion stages exist, their networks, their sampling steps and the sensor's readout."""

    coarse: NetConfig | None = field(
        default_factory=lambda: NetConfig(in_ch=4, widths=(32, 64, 64), unshuffle=2)
    )
    fine: NetConfig | None = field(default_factory=lambda: NetConfig(in_ch=6, widths=(32, 64), unshuffle=4))
    coarse_steps: int = 4
    fine_steps: int = 1
    eta: float = 1.0  # 0: deterministic DDIM, 1: ancestral
    name: str = "reald2iff"  # the model's name in benchmark tables
    levels: tuple = ()  # the sensor's readout levels (model.fit_levels), set by training

    def __post_init__(self):
        if self.coarse is None and self.fine is None:
            raise ValueError("a model needs a coarse or a fine stage")
        if isinstance(self.coarse, dict):
            self.coarse = NetConfig(**self.coarse)
        if isinstance(self.fine, dict):
            self.fine = NetConfig(**self.fine)
        if self.coarse_steps < 1 or self.fine_steps < 1:
            raise ValueError("sampling steps must be >= 1")
        for stage, net, size in (("coarse", self.coarse, PAD // COARSE), ("fine", self.fine, PAD)):
            if net is not None and size % net.granularity():
                raise ValueError(
                    f"{stage} stage: folding {net.unshuffle}x{net.unshuffle} pixels with "
                    f"{len(net.widths)} levels needs images in multiples of "
                    f"{net.granularity()} pixels; this stage sees multiples of {size}"
                )
        self.levels = tuple(float(v) for v in self.levels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig:
    """Everything a training run depends on; printed at the start and saved with every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    coarse_iters: int = 3000
    fine_iters: int = 6000
    coarse_batch: int = 8
    fine_batch: int = 12
    patch: int = 128  # fine-stage training patch (pixels, a multiple of 16)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    ema: float = 0.999
    fgs_weight: float = 0.5  # lambda_FGS; 0 trains the coarse stage without FGS
    dgo_beta: float = 4.0  # beta of DGO; 0 trains the fine stage without DGO
    dgo_border: float = 0.5  # DGO's least discrepancy of a reading at a hole's border
    cond_noise: float = 0.1  # std of the conditioning augmentation on the coarse input of the fine stage
    dequantise_radius: int = 2  # de-banding window of the training targets (dequantise); 0 = raw readings
    val_every: int = 500
    val_frames: int = 8
    ckpt_every: int = 250
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: all cores)
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if self.patch % 16:
            raise ValueError(f"patch {self.patch} must be a multiple of 16")
        if self.model.fine is not None and self.patch % self.model.fine.granularity():
            raise ValueError(
                f"patch {self.patch} must be a multiple of the fine network's "
                f"{self.model.fine.granularity()} pixels"
            )
        for k in ("coarse_iters", "fine_iters", "coarse_batch", "fine_batch", "val_every", "ckpt_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class DistillConfig:
    """A distillation run: the student's steps, the optimiser and the FGS weight."""

    steps: int = 2  # the student's coarse steps; the teacher's must be a multiple of it
    iters: int = 2500
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 100
    ema: float = 0.999
    fgs_weight: float = 0.5
    dequantise_radius: int = 2  # as the teacher's training targets
    val_every: int = 500
    val_frames: int = 8
    ckpt_every: int = 250
    seed: int = 0
    threads: int = 0
    name: str | None = None  # the student's name in benchmark tables (default: teacher's + "-<steps>step")

    def __post_init__(self):
        for k in ("steps", "iters", "batch", "val_every", "ckpt_every"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_preset(preset: str) -> dict:
    """A preset's settings (TrainConfig keys; [model] holds ModelConfig keys): the file
    realdiff/configs/<preset>.toml, or `preset` itself if it is a .toml path; ValueError if none."""
    p = Path(preset) if preset.endswith(".toml") else PRESETS_DIR / f"{preset}.toml"
    if not p.is_file():
        known = sorted(f.stem for f in PRESETS_DIR.glob("*.toml"))
        raise ValueError(f"unknown preset {preset!r}; use {', '.join(known)} or a .toml file")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from None


def make_config(preset: str = "cpu", **overrides) -> TrainConfig:
    """A preset with overrides: TrainConfig keys, and model-level ones: no_coarse, no_fine, name,
    coarse_steps, fine_steps, eta, fine_fold (the fine network's pixels folded per side)."""
    base = json.loads(json.dumps(load_preset(preset)))
    model = ModelConfig(**base.pop("model", {}))
    fold = overrides.pop("fine_fold", None)
    if fold is not None and model.fine is not None:
        model.fine = NetConfig(**{**dataclasses.asdict(model.fine), "unshuffle": int(fold)})
    for k in ("coarse_steps", "fine_steps", "eta", "name"):
        if overrides.get(k) is not None:
            setattr(model, k, overrides.pop(k))
        overrides.pop(k, None)
    if overrides.pop("no_coarse", False):
        model.coarse = None
    if overrides.pop("no_fine", False):
        model.fine = None
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(model=ModelConfig(**model.to_dict()), **base)
    except TypeError as e:
        raise ValueError(f"preset {preset!r}: {e}") from None
