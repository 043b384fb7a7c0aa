r"""`realdiff distill`: halve the coarse stage's sampling steps by progressive distillation.

The coarse stage is the noiser's biggest cost (its steps run one after another); this trains a
student coarse network whose deterministic DDIM sampler (eta = 0) in S steps matches the teacher's
in T = k S steps (Salimans & Ho, 2022, in the x0-parameterisation used here). For a student step
from t to s = t - 1/S, the teacher takes k DDIM steps of 1/T from z_t to z_s; the student's target
x~ is the x0 for which one DDIM step lands on the teacher's z_s:

    z_s = alpha_s x~ + sigma_s (z_t - alpha_t x~) / sigma_t
    =>  x~ = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)     (s > 0)
        x~ = the teacher's x0^ after its k steps                                          (s = 0)

with z_t = alpha_t x0 + sigma_t eps from the train split's coarse targets x0 (at t = 1, pure noise,
as when sampling) and t on the student's grid {1, 1 - 1/S, ...}. The loss is the valid-masked MSE
to x~ plus lambda_FGS times the FGS term (see model.py) on x~, so the student keeps the teacher's
low-frequency structure where it cannot match it exactly. The student starts from the teacher's
weights; the fine stage, which is conditioned on a coarse sample whatever its sampler, is copied.
Checkpoints to `<out>.distill/coarse.pt`; re-running the same command resumes.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from plumbing.training import Trainer, ema_warmup
from realdiff.reald2iff.checkpoint import load_model, save_model
from realdiff.reald2iff.config import DistillConfig
from realdiff.reald2iff.model import alpha_sigma, fgs_loss, q_sample, weighted_mse
from realdiff.reald2iff.train import PairData, validate


def ddim_step(net, z, cond, t, s):
    """One deterministic DDIM step from time t to s (tensors shaped (B,)): (z_s, x0^)."""
    a_t, s_t = alpha_sigma(t)
    a_s, s_s = alpha_sigma(s)
    x0 = net(z, cond, t).float().clamp(-6, 6)
    return a_s * x0 + s_s * (z - a_t * x0) / s_t, x0


@torch.no_grad()
def distill_target(teacher, z, cond, t, k: int, teacher_steps: int):
    """x~ (see the module docstring): what the student must predict at (z, t) so that one step of
    1/S = k/T lands where k teacher steps of 1/T do."""
    zs, s = z, t
    for _ in range(k):
        s_next = (s - 1.0 / teacher_steps).clamp_min(0)
        zs, x0 = ddim_step(teacher, zs, cond, s, s_next)
        s = s_next
    a_t, s_t = alpha_sigma(t)
    a_s, s_s = alpha_sigma(s)
    r = s_s / s_t
    return torch.where((s <= 1e-6)[:, None, None, None], x0, (zs - r * z) / (a_s - r * a_t).clamp_min(1e-6))


def distill(pairs, teacher_path, out, cfg: DistillConfig, progress: bool = True) -> dict:
    """Distil the teacher's coarse stage to cfg.steps steps and write the student model to `out`
    (its coarse_steps = cfg.steps, eta = 0; the fine stage and any added stages copied)."""
    out = Path(out)
    work = Path(str(out) + ".distill")
    work.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    teacher = load_model(teacher_path).model
    T = teacher.cfg.coarse_steps
    if teacher.coarse is None:
        raise ValueError(f"{teacher_path}: has no coarse stage to distil")
    if T % cfg.steps or cfg.steps >= T:
        raise ValueError(f"--steps {cfg.steps} must divide the teacher's {T} coarse steps, and be fewer")
    k = T // cfg.steps
    f = load_model(teacher_path)
    student = f.model
    student.cfg.coarse_steps, student.cfg.eta = cfg.steps, 0.0
    student.cfg.name = cfg.name or f"{teacher.cfg.name}-{cfg.steps}step"
    net, ema, tnet = student.coarse.train(), copy.deepcopy(student.coarse).eval(), teacher.coarse.eval()
    for p in tnet.parameters():
        p.requires_grad_(False)
    data = PairData(pairs, "train")
    data.use_levels(teacher.cfg.levels, cfg.dequantise_radius)
    cond_all, x_all = data.coarse_set()
    val = PairData(pairs, "val", frames=cfg.val_frames)
    run = {"teacher": str(teacher_path), **cfg.to_dict()}
    if progress:
        print(f"distill: {T} -> {cfg.steps} coarse steps; config: {json.dumps(run)}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    rng = np.random.default_rng([cfg.seed, 2])
    torch.manual_seed(cfg.seed)
    trainer = Trainer(
        net,
        ema,
        opt,
        rng,
        total=cfg.iters,
        lr=cfg.lr,
        warmup=cfg.warmup,
        ckpt=work / "coarse.pt",
        config=run,
        ckpt_every=cfg.ckpt_every,
        ema_decay=ema_warmup(cfg.ema),
        clip=1.0,
    )

    t0, losses, logs = time.time(), [], []
    bar = tqdm(total=cfg.iters, initial=trainer.step, desc="distill coarse", unit="it", disable=not progress)
    for _ in trainer.steps(bar):
        i = torch.from_numpy(rng.integers(0, len(cond_all), cfg.batch))
        cond, x0 = cond_all[i], x_all[i]
        weight = (cond[:, 1:2] > 0).float()
        t = 1.0 - torch.from_numpy(rng.integers(0, cfg.steps, cfg.batch)).float() / cfg.steps
        z = q_sample(x0, torch.randn_like(x0), t)
        target = distill_target(tnet, z, cond, t, k, T)
        pred = net(z, cond, t)
        loss = weighted_mse(pred, target, weight)
        if cfg.fgs_weight > 0:
            loss = loss + cfg.fgs_weight * fgs_loss(
                pred[:, 0], target[:, 0], weight[:, 0], torch.ones(len(t))
            )
        trainer.update(loss)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.5f}", refresh=False)
        if trainer.step % cfg.val_every == 0 or trainer.step == cfg.iters:
            student.coarse = ema
            m = validate(student, val, cfg.seed, stages=f)
            student.coarse = net
            net.train()
            logs.append({"step": trainer.step, "loss": float(np.mean(losses[-cfg.val_every :])), **m})
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.5f}", w1=m["residual_w1_mm"])
    bar.close()
    student.coarse = ema.eval()
    meta = dict(f.meta)
    meta.update(
        {
            "distilled_from": str(teacher_path),
            "distill_config": json.dumps(run),
            "distill_seconds": round(time.time() - t0, 1),
            "val": json.dumps(validate(student, val, cfg.seed, stages=f)),
        }
    )
    save_model(student, out, meta, f.texture, f.registration, f.edges, f.readout)
    return {"out": str(out), "seconds": time.time() - t0, "losses": losses, "log": logs, "meta": meta}
