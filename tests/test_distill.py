"""`realdiff distill`: the student's target equation, training on the fixture, the command."""

import numpy as np
import pytest
import torch

from realdiff.reald2iff.checkpoint import load_model
from realdiff.reald2iff.config import DistillConfig, NetConfig, make_config
from realdiff.reald2iff.distill import ddim_step, distill, distill_target
from realdiff.reald2iff.model import UNet, alpha_sigma
from realdiff.reald2iff.train import train
from realdiff.sensors import load_noiser
from tests.conftest import TINY_PRESET, assert_one_line_error, make_fixture_pairs, run_realdiff


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    make_fixture_pairs(d / "pairs.zarr", val_from=650)
    train(d / "pairs.zarr", d / "teacher.pt", make_config(TINY_PRESET), progress=False)  # 2 coarse steps
    return d / "pairs.zarr", d / "teacher.pt"


def test_one_student_step_to_the_target_lands_where_the_teacher_steps_do():
    torch.manual_seed(0)
    net = UNet(NetConfig(in_ch=4, widths=(8, 16))).eval()
    for p in net.parameters():  # the output layers start at zero: make the net do something
        p.data.normal_(0, 0.1)
    z, cond = torch.randn(3, 2, 16, 16), torch.randn(3, 2, 16, 16)
    t = torch.tensor([1.0, 0.75, 0.5])  # two teacher steps of 1/4 each: to 0.5, 0.25 and 0 (the last)
    target = distill_target(net, z, cond, t, k=2, teacher_steps=4)
    zs, s = z, t
    with torch.no_grad():
        for _ in range(2):
            zs, x0 = ddim_step(net, zs, cond, s, (s - 0.25).clamp_min(0))
            s = (s - 0.25).clamp_min(0)
    a_t, s_t = alpha_sigma(t)
    a_s, s_s = alpha_sigma(s)
    landed = a_s * target + s_s * (z - a_t * target) / s_t  # one DDIM step with x0 = target
    torch.testing.assert_close(landed, zs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(target[2], x0[2])  # at the last step the target is the teacher's x0^


def test_distilling_lowers_the_loss_and_writes_a_faster_model(teacher, tmp_path):
    pairs, path = teacher
    r = distill(
        pairs,
        path,
        tmp_path / "s.pt",
        DistillConfig(steps=1, iters=80, lr=2e-3, val_every=40),
        progress=False,
    )
    losses = r["losses"]
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
    f = load_model(tmp_path / "s.pt")
    student, meta = f.model, f.meta
    src = load_model(path).model
    assert student.cfg.coarse_steps == 1 and student.cfg.eta == 0.0 and meta["distilled_from"] == str(path)
    for a, b in zip(student.fine.state_dict().values(), src.fine.state_dict().values()):  # copied
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(student.coarse.state_dict().values(), src.coarse.state_dict().values())
    )
    depth = np.full((2, 48, 64), 1.2, np.float32)
    out = load_noiser(str(tmp_path / "s.pt")).noisify_frames(depth, np.eye(3), [np.random.default_rng(0)] * 2)
    assert out.shape == depth.shape and np.isfinite(out).all()


def test_distill_command_resumes_and_refuses_bad_steps(teacher, tmp_path):
    pairs, path = teacher
    args = [
        "distill",
        path,
        "--pairs",
        pairs,
        "--out",
        tmp_path / "s.pt",
        "--steps",
        "1",
        "--iters",
        "30",
        "--quiet",
    ]
    assert run_realdiff(*args).returncode == 0
    first = load_model(tmp_path / "s.pt").model.coarse.state_dict()
    assert run_realdiff(*args).returncode == 0  # finished checkpoint: the same student again
    again = load_model(tmp_path / "s.pt").model.coarse.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert_one_line_error(
        run_realdiff(
            "distill", path, "--pairs", pairs, "--out", tmp_path / "b.pt", "--steps", "3", "--quiet"
        ),
        "must divide",
    )


def test_the_committed_models_load_by_name():
    """reald2iff-full (4 ancestral coarse steps), reald2iff-2step (its coarse stage distilled, its
    fine stage) and the default (that distilled coarse stage and sampler, a fine stage folding 8x8)."""
    full, n, default = (load_noiser(k) for k in ("reald2iff-full", "reald2iff-2step", "reald2iff"))
    assert (full.name, n.name, default.name) == ("reald2iff-full", "reald2iff-2step", "reald2iff")
    assert full.model.cfg.coarse_steps == 4 and full.model.cfg.eta == 1.0
    assert n.model.cfg.coarse_steps == 2 and n.model.cfg.eta == 0.0
    for a, b in zip(n.model.fine.state_dict().values(), full.model.fine.state_dict().values()):
        assert torch.equal(a, b)  # distilled from the full model: the same fine stage
    assert (default.model.cfg.coarse_steps, default.model.cfg.eta) == (2, 0.0)
    for a, b in zip(default.model.coarse.state_dict().values(), n.model.coarse.state_dict().values()):
        assert torch.equal(a, b)  # the default samples the distilled coarse stage
    assert default.model.cfg.fine.unshuffle == 8 and full.model.cfg.fine.unshuffle == 4
    assert len({full.fingerprint(), n.fingerprint(), default.fingerprint()}) == 3
    depth = np.full((1, 64, 64), 1.0, np.float32)
    rng = lambda: [np.random.default_rng(3)]  # noqa: E731
    np.testing.assert_array_equal(
        n.noisify_frames(depth, np.eye(3), rng()), n.noisify_frames(depth, np.eye(3), rng())
    )
