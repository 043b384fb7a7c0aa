"""What every training loop here shares: the optimiser step under a warm-up + cosine learning rate,
an EMA of the weights, atomic checkpoints that a re-run resumes from, and a JSONL log.

    trainer = Trainer(net, ema_net, opt, rng, total=..., lr=..., warmup=..., ckpt=path, config=cfg)
    for step in trainer.steps(bar):          # from the checkpoint's step on (0 on a first run)
        loss = ...                           # draw the batch from `rng`
        trainer.update(loss)                 # LR, backward, clip, step, EMA, checkpoint when due
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch


def warmup_cosine(step: int, peak: float, warmup: int, total: int) -> float:
    """Learning rate at `step` (0-based): linear warm-up to `peak` over `warmup` steps, then cosine
    decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    step = min(step, total)
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def ema_warmup(cap: float) -> Callable[[int], float]:
    """EMA decay after n updates: n / (n + 9), capped at `cap` (a short average while weights move fast)."""
    return lambda n: min(cap, n / (n + 9))


def ema_power(power: float, cap: float) -> Callable[[int], float]:
    """EMA decay after n updates as in Chi et al.'s diffusion policy: 1 - (1 + n)^-power, capped at `cap`."""
    return lambda n: min(cap, 1 - (1 + n) ** -power)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a killed process leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class JsonlLog:
    """Appends one JSON record a line. Opened to resume at `resume_step`, it drops the records a
    killed run wrote past that step (they will be written again); None keeps them all."""

    def __init__(self, path: Path, resume_step: int | None = 0):
        self.path = Path(path)
        if self.path.exists() and resume_step is not None:
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")

    def __call__(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Trainer:
    """One network trained by AdamW-like `opt` with an EMA copy `ema_net`, checkpointed to `ckpt`.

    update(loss) sets the step's learning rate (warmup_cosine), back-propagates, clips the gradient
    norm to `clip` (None: no clipping), steps the optimiser, moves the EMA toward the weights by
    1 - ema_decay(updates so far) and writes the checkpoint every `ckpt_every` steps and at the end.
    The checkpoint holds the weights, EMA, optimiser, step, `rng`'s state, torch's global random
    state and `generator`'s (if given), and `config`: resuming under another config is a ValueError.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        ema_net: torch.nn.Module,
        opt: torch.optim.Optimizer,
        rng: np.random.Generator,
        *,
        total: int,
        lr: float,
        warmup: int,
        ckpt: Path,
        config: dict,
        ckpt_every: int,
        ema_decay: Callable[[int], float],
        clip: float | None = None,
        generator: torch.Generator | None = None,
    ):
        self.net, self.ema_net, self.opt, self.rng, self.generator = net, ema_net, opt, rng, generator
        self.total, self.lr, self.warmup, self.clip = total, lr, warmup, clip
        self.ckpt, self.ckpt_every, self.ema_decay = Path(ckpt), ckpt_every, ema_decay
        self.config = json.loads(json.dumps(config))
        self.step = self._resume()

    def steps(self, bar=None) -> Iterator[int]:
        """The steps left, from the resumed one; `bar` (tqdm) counts them."""
        while self.step < self.total:
            yield self.step
            if bar is not None:
                bar.update(1)

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step on `loss`, the EMA update and, when due, the checkpoint."""
        for g in self.opt.param_groups:
            g["lr"] = warmup_cosine(self.step, self.lr, self.warmup, self.total)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.opt.step()
        self.step += 1
        decay = self.ema_decay(self.step)
        with torch.no_grad():
            for pe, p in zip(self.ema_net.parameters(), self.net.parameters()):
                pe.lerp_(p.detach().to(pe.device), 1 - decay)
        if self.step % self.ckpt_every == 0 or self.step == self.total:
            self.save()

    def lr_now(self) -> float:
        """The learning rate of the last step taken."""
        return warmup_cosine(max(self.step - 1, 0), self.lr, self.warmup, self.total)

    def save(self) -> None:
        atomic_save(
            {
                "step": self.step,
                "net": self.net.state_dict(),
                "ema": self.ema_net.state_dict(),
                "opt": self.opt.state_dict(),
                "rng": json.dumps(self.rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(),
                "generator": self.generator.get_state() if self.generator is not None else None,
                "config": json.dumps(self.config),
            },
            self.ckpt,
        )

    def _resume(self) -> int:
        if not self.ckpt.is_file():
            return 0
        try:
            ck = torch.load(self.ckpt, map_location="cpu", weights_only=True)
            saved = json.loads(ck["config"])
        except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise ValueError(
                f"{self.ckpt}: not a training checkpoint ({type(e).__name__}); delete it to start afresh"
            ) from None
        if saved != self.config:
            raise ValueError(
                f"{self.ckpt} was made with another config; remove {self.ckpt.parent} to start afresh"
            )
        self.net.load_state_dict(ck["net"])
        self.ema_net.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.rng.bit_generator.state = json.loads(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        if self.generator is not None:
            self.generator.set_state(ck["generator"])
        return int(ck["step"])


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN, not switched off with
    `torch.backends.mkldnn.enabled = False`); emulated bf16 is slow."""
    if not torch.backends.mkldnn.enabled:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        return False
