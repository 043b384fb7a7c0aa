"""RealD²iff: representation, FGS and DGO losses on hand-made inputs, sampling, saving, training."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realdiff import load_noiser
from realdiff.reald2iff.checkpoint import MODEL_VERSION, load_model, save_model
from realdiff.reald2iff.config import ModelConfig, make_config
from realdiff.reald2iff.model import (
    A_ASINH,
    S_INV,
    RealD2iff,
    decode,
    dequantise,
    discrepancy_weight,
    encode_target,
    fgs_loss,
    fit_levels,
    frequency_weight,
    q_sample,
    snap_to_levels,
    weighted_mse,
)
from realdiff.reald2iff.noiser import RealD2iffNoiser, generate
from realdiff.reald2iff.stages import (
    EdgeStage,
    ReadoutStage,
    RegistrationStage,
    TextureStage,
    fit_edge_swaps,
    fit_grid,
    fit_shifts,
    grid_rows,
    isolated_readings,
    near_edges,
    paste_texture,
    shift_depth,
)
from realdiff.reald2iff.train import PairData, add_edges, add_readout, add_registration, add_texture, train
from tests.conftest import TINY_PRESET, assert_one_line_error, make_fixture_pairs, run_realdiff


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rd") / "pairs.zarr"
    make_fixture_pairs(out, val_from=650)  # 2 train frames, 1 val frame
    return out


@pytest.fixture(scope="module")
def tiny_model(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rdm") / "tiny.pt"
    train(pairs, out, make_config(TINY_PRESET), progress=False)
    return out


def _clean(B=2, H=40, W=56, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.5, 3.0, (B, H, W)).astype(np.float32)
    d[:, :5, :7] = 0  # no reading in a corner
    return d


# --- representation -------------------------------------------------------------------------------


def test_encode_decode_round_trip_and_holes_only_where_the_mask_says():
    clean = torch.tensor([[[1.0, 2.0, 0.0, 4.5]]])
    real = torch.tensor([[[1.01, 0.0, 0.0, 4.4]]])
    x = encode_target(clean, real)
    assert x[0, 1].tolist() == [[-1.0, 1.0, -1.0, -1.0]]  # a hole only where clean has a reading
    assert x[0, 0, 0, 0].item() == pytest.approx(math.asinh(S_INV * (1 / 1.01 - 1)) / A_ASINH, rel=1e-5)
    z = decode(clean, x)
    assert z[0, 0].tolist() == pytest.approx([1.01, 0.0, 0.0, 4.4], abs=1e-4)
    # any hole channel: readings exactly where h <= 0 and clean > 0
    h = torch.tensor([[[[0.3, -0.2, 0.9, -1.0]]]])
    z = decode(clean, torch.cat([torch.zeros_like(h), h], 1))
    assert ((z > 0) == ((h[:, 0] <= 0) & (clean > 0))).all()
    assert torch.equal(z[clean > 0][h[:, 0][clean > 0] <= 0], clean[(clean > 0) & (h[:, 0] <= 0)])


def test_readout_levels_fit_snap_and_dequantise():
    # a Kinect-like sensor: 1/z on a lattice of step 0.003 / m, so bands widen as z^2
    levels_true = 0.25 + 0.003 * np.arange(400)
    rng = np.random.default_rng(0)
    z = np.tile(1 / levels_true[100:300], 8).reshape(4, 20, 20).astype(np.float32)  # each level 8 times
    levels = fit_levels(z, min_count=8)
    assert np.allclose(levels, levels_true[100:300], rtol=1e-6)
    assert fit_levels(z, min_count=9) == ()
    L = torch.tensor(levels, dtype=torch.float64)
    inv = torch.tensor(
        [
            L[3].item() + 0.4 * 0.003,
            L[3].item() + 0.6 * 0.003,
            L[0].item() - 2.2 * 0.003,
            L[-1].item() + 1.4 * 0.003,
        ],
        dtype=torch.float64,
    )
    got = snap_to_levels(inv, L)
    assert got[0] == L[3] and got[1] == L[4]  # nearest level
    assert got[2].item() == pytest.approx(L[0].item() - 2 * 0.003, rel=1e-3)  # lattice continued below
    assert got[3].item() == pytest.approx(L[-1].item() + 0.003, rel=1e-3)  # and above
    assert fit_levels(rng.uniform(0.5, 3, (2, 200, 200)).astype(np.float32)) == ()  # not quantised
    # decode reads out on the levels; dequantise turns a banded ramp back into a smooth one
    clean = torch.full((1, 1, 40), 1.5)
    x = torch.zeros(1, 2, 1, 40)
    x[:, 1] = -1
    x[0, 0, 0] = torch.linspace(-0.5, 0.5, 40)
    out = decode(clean, x, levels)
    inv_out = 1 / out.double()
    assert torch.allclose(snap_to_levels(inv_out, L), inv_out, atol=1e-6)
    ramp = 1 / torch.linspace(0.60, 0.66, 64, dtype=torch.float64)[None, None].expand(1, 8, 64).float()
    banded = (1 / snap_to_levels(1 / ramp.double(), L)).float()
    smooth = dequantise(banded, levels)
    assert (smooth - ramp)[:, :, 4:-4].abs().mean() < 0.5 * (banded - ramp)[:, :, 4:-4].abs().mean()
    assert torch.equal(dequantise(banded, ()), banded)


def test_snap_to_levels_is_the_nearest_level_on_an_irregular_lattice():
    # levels 1.5 to 4.2 mm^-1 apart, as the fitted Kinect levels are; the lookup-table snap must
    # agree with a brute-force nearest level everywhere inside, including just beside midpoints
    rng = np.random.default_rng(3)
    levels = np.cumsum(rng.uniform(0.0015, 0.0042, 300)) + 0.28
    L = torch.tensor(levels, dtype=torch.float64)
    mids = (L[1:] + L[:-1]) / 2
    inv = torch.cat([torch.from_numpy(rng.uniform(levels[0], levels[-1], 20000)), mids - 1e-9, mids + 1e-9])
    brute = L[(inv[:, None] - L[None, :]).abs().argmin(1)]
    assert torch.equal(snap_to_levels(inv, tuple(levels)), brute)


# --- Frequency-Guided Supervision ---------------------------------------------------------------


def test_fgs_loss_matches_its_equation_on_cosines():
    H, W = 16, 32
    xs = torch.arange(W, dtype=torch.float64)
    wk = frequency_weight(H, W)
    for f_bin in (1, 4):  # a cosine along x at f_bin / W cycles per pixel
        diff = torch.cos(2 * math.pi * f_bin * xs / W).expand(H, W)[None].float()
        got = fgs_loss(diff, torch.zeros_like(diff), torch.ones_like(diff), torch.ones(1))
        # rfft2 (ortho) of the cosine: one bin (0, f_bin) of magnitude sqrt(H W) / 2
        want = math.exp(-(((f_bin / W) / 0.08) ** 2)) * math.sqrt(H * W) / 2 / wk.sum().item()
        assert got.item() == pytest.approx(want, rel=1e-4)
    low = fgs_loss(
        torch.cos(2 * math.pi * xs / W).expand(H, W)[None].float(),
        torch.zeros(1, H, W),
        torch.ones(1, H, W),
        torch.ones(1),
    )
    high = fgs_loss(
        torch.cos(2 * math.pi * 8 * xs / W).expand(H, W)[None].float(),
        torch.zeros(1, H, W),
        torch.ones(1, H, W),
        torch.ones(1),
    )
    assert low > 10 * high  # weighted toward the low frequencies
    # alpha^2 scaling, masked pixels do not count, equal inputs give 0
    d = torch.randn(2, H, W)
    a = fgs_loss(d, torch.zeros_like(d), torch.ones_like(d), torch.tensor([1.0, 1.0]))
    b = fgs_loss(d, torch.zeros_like(d), torch.ones_like(d), torch.tensor([0.5, 0.5]))
    assert b.item() == pytest.approx(0.25 * a.item(), rel=1e-5)
    assert fgs_loss(d, d.clone(), torch.ones_like(d), torch.ones(2)).item() == 0.0
    assert fgs_loss(d, torch.zeros_like(d), torch.zeros_like(d), torch.ones(2)).item() == 0.0


# --- Discrepancy-Guided Optimization --------------------------------------------------------------


def test_dgo_weights_match_their_equation():
    y = torch.zeros(1, 1, 1, 12)
    y[0, 0, 0, :3] = torch.tensor([0.0, 0.25, -1.0])  # D = 0, 0.5, 1 (capped) with tau = 0.5
    h = -torch.ones(1, 1, 1, 12)
    h[0, 0, 0, 8] = 1  # a hole at x = 8: D = 1 there, D >= 0.5 at x = 6, 7, 9, 10 (2 px border)
    y[0, 0, 0, 10] = -0.4  # a border reading with a larger residual keeps its own D = 0.8
    valid = torch.ones(1, 1, 1, 12)
    valid[0, 0, 0, 11] = 0
    w = discrepancy_weight(torch.cat([y, h], 1), valid, tau=0.5, beta=4.0, border=0.5)[0, 0, 0]
    assert w.tolist() == pytest.approx([1.0, 3.0, 5.0, 1.0, 1.0, 1.0, 3.0, 3.0, 5.0, 3.0, 4.2, 0.0])
    # border = 1 weighs a hole's border like the hole itself
    w1 = discrepancy_weight(torch.cat([y, h], 1), valid, tau=0.5, beta=4.0, border=1.0)[0, 0, 0]
    assert w1[6:11].tolist() == [5.0] * 5
    # beta = 0 is plain masked MSE; the loss is the w-weighted mean of the squared error
    assert discrepancy_weight(torch.cat([y, h], 1), valid, beta=0.0)[0, 0, 0].tolist() == [1.0] * 11 + [0.0]
    pred, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]]])
    assert weighted_mse(pred, target, torch.tensor([[[[1.0, 3.0]]]])).item() == pytest.approx((1 + 3 * 4) / 4)


def test_q_sample_follows_the_cosine_schedule():
    x0, noise, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0.0, 0.5, 1.0])
    x_t = q_sample(x0, noise, t)
    assert torch.allclose(x_t[0], x0[0]) and torch.allclose(x_t[2], noise[2], atol=1e-6)
    assert torch.allclose(x_t[1], math.sqrt(0.5) * (x0[1] + noise[1]), atol=1e-6)


# --- sampling: shapes, determinism, batching ----------------------------------------------------


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = make_config(TINY_PRESET).model
    m = RealD2iff(cfg).eval()
    for p in m.parameters():  # untrained zero-initialised output layers would give clean depth back
        p.data.normal_(0, 0.2)
    return m


def test_generate_shapes_determinism_and_batch_independence():
    m = _model()
    clean = _clean(B=3, H=37, W=50)  # not a multiple of anything
    out = generate(m, clean, [np.random.default_rng(i) for i in range(3)])
    assert out.shape == clean.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert (out[clean == 0] == 0).all() and (out >= 0).all()
    assert not np.array_equal(out[clean > 0], clean[clean > 0])
    again = generate(m, clean, [np.random.default_rng(i) for i in range(3)])
    assert np.array_equal(out, again)  # same seeds, same output
    other = generate(m, clean, [np.random.default_rng(i + 10) for i in range(3)])
    assert not np.array_equal(out, other)
    one = generate(m, clean[1:2], [np.random.default_rng(1)])  # a frame alone = the frame in a batch
    assert np.allclose(one[0], out[1], atol=1e-5)


def test_noiser_interface_on_any_resolution_and_rejects_bad_input(tiny_model):
    noiser = load_noiser(str(tiny_model))
    K = np.array([[154.5, 0, 63.5], [0, 154.5, 63.5], [0, 0, 1]])
    for H, W in ((128, 128), (96, 72), (480, 640)):
        d = _clean(B=2, H=H, W=W)
        a = noiser.noisify(d, K, np.random.default_rng(5))
        assert a.shape == d.shape and np.array_equal(a, noiser.noisify(d, K, np.random.default_rng(5)))
    frames = noiser.noisify_frames(d, K, [np.random.default_rng(1), np.random.default_rng(2)])
    assert np.array_equal(frames[1:], noiser.noisify_frames(d[1:], K, [np.random.default_rng(2)]))
    with pytest.raises(ValueError, match="NaN"):
        bad = d.copy()
        bad[0, 0, 0] = np.nan
        noiser.noisify(bad, K, np.random.default_rng(0))
    with pytest.raises(ValueError, match="float32"):
        noiser.noisify(d.astype(np.float64), K, np.random.default_rng(0))
    # to_json names the registered class, so noisify workers rebuild it
    assert json.loads(noiser.to_json())["name"] == "reald2iff"


# --- the sensor-texture stage ---------------------------------------------------------------------


def test_near_edges_marks_depth_jumps_holes_and_the_border_but_not_slopes():
    clean = torch.full((1, 20, 30), 2.0)
    clean[:, :, 15:] = 2.5  # a 25 % jump between columns 14 and 15
    holes = torch.zeros(1, 20, 30, dtype=torch.bool)
    holes[0, 5, 5] = True
    e = near_edges(clean, holes, px=3)[0]
    assert e[10, 12] and e[10, 18] and not e[10, 11] and not e[10, 19]  # the jump, 3 px either side
    assert e[5, 8] and e[8, 5] and not e[9, 9]  # the hole, dilated
    assert e[0, 10] and e[2, 10] and not e[3, 10] and e[10, 27] and not e[10, 26]  # the border
    slope = 2.0 * (1.01 ** torch.arange(30.0)).expand(1, 20, 30)  # 1 % a pixel: a surface, not an edge
    assert not near_edges(slope, torch.zeros(1, 20, 30, dtype=torch.bool))[0, 3:17, 3:27].any()


def test_paste_texture_lays_tiles_row_by_row_and_turns_them():
    bank = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 4)
    out = paste_texture(bank, torch.tensor([2, 0, 1, 1]), torch.tensor([0, 1, 0, 1]), 6, 7)
    assert out.shape == (6, 7)
    assert torch.equal(out[:4, :4], bank[2]) and torch.equal(out[:4, 4:], bank[0].flip(0, 1)[:, :3])
    assert torch.equal(out[4:, :4], bank[1][:2]) and torch.equal(out[4:, 4:], bank[1].flip(0, 1)[:2, :3])
    two = paste_texture(
        bank, torch.tensor([[2, 0, 1, 1], [0, 0, 0, 0]]), torch.tensor([[0, 1, 0, 1], [0] * 4]), 6, 7
    )
    assert torch.equal(two[0], out) and torch.equal(two[1, :4, 4:], bank[0][:, :3])  # a batch: frame by frame


def _smooth_clean(B=2, H=64, W=96):
    """Two tilted planes with a step between them and a hole: mostly flat, some edges."""
    y, x = np.mgrid[:H, :W]
    d = (1.5 + 0.002 * x + 0.001 * y + 0.6 * (x > W // 2)).astype(np.float32)
    d[10:16, 10:20] = 0
    return np.stack([d * (1 + 0.1 * b) for b in range(B)])


def test_texture_stage_changes_only_flat_pixels_and_stays_deterministic():
    m = _model()
    for net in (m.coarse, m.fine):  # few holes, so that there are flat pixels (channels: y's s*s, then h's)
        net.out.bias.data[net.cfg.unshuffle**2 :] = -5.0
    tex = TextureStage(0.05 * torch.randn(3, 16, 16))
    clean = _smooth_clean()  # sides multiples of 32: no padding, so the edges are those computed here
    rngs = lambda: [np.random.default_rng(i) for i in range(2)]  # noqa: E731
    plain, textured = generate(m, clean, rngs()), generate(m, clean, rngs(), texture=tex)
    assert np.array_equal(plain > 0, textured > 0)  # the same holes: the texture is drawn after them
    near = near_edges(torch.from_numpy(clean), torch.from_numpy((plain == 0) & (clean > 0))).numpy()
    assert np.array_equal(plain[near], textured[near])
    assert (plain != textured)[~near].mean() > 0.5 and (~near).mean() > 0.5
    assert np.array_equal(textured, generate(m, clean, rngs(), texture=tex))
    assert np.allclose(
        generate(m, clean[1:], [np.random.default_rng(1)], texture=tex)[0], textured[1], atol=1e-5
    )


def test_add_texture_cuts_flat_tiles_and_refuses_a_second_one(pairs, tiny_model, tmp_path):
    out = tmp_path / "textured.pt"
    r = add_texture(pairs, tiny_model, out, tiles=4, size=32)
    f = load_model(out)
    bank = f.texture.bank
    assert bank.shape == (r["tiles"], 32, 32) and 1 <= r["tiles"] <= 4 <= r["candidates"]
    assert f.model.cfg.name == "reald2iff-texture" and json.loads(f.meta["texture_from"])["size"] == 32
    assert torch.isfinite(bank).all() and bank.abs().max() > 0
    # the finer band in inverse depth: a few mm at 1-3 m is a few thousandths of 1/m
    assert bank.abs().median() < 0.05
    _loads_and_refuses_a_second_stage(
        out, pairs, tmp_path, add_texture, "texture", "already has a texture stage"
    )


def _loads_and_refuses_a_second_stage(out, pairs, tmp_path, add, command, message):
    """A model with an added stage noisifies deterministically from its file; adding the stage
    again fails, in Python and on the command line with one error line."""
    noiser = RealD2iffNoiser(weights=str(out))
    K = np.array([[154.5, 0, 63.5], [0, 154.5, 63.5], [0, 0, 1]])
    d = _smooth_clean(H=128, W=128)
    assert np.array_equal(
        noiser.noisify(d, K, np.random.default_rng(3)), noiser.noisify(d, K, np.random.default_rng(3))
    )
    with pytest.raises(ValueError, match=message):
        add(pairs, out, tmp_path / "twice.pt")
    assert_one_line_error(
        run_realdiff(command, out, "--pairs", pairs, "--out", tmp_path / "twice.pt"), message
    )


# --- the twin-registration stage -------------------------------------------------------------------


def test_shift_depth_moves_each_frame_and_continues_its_edge():
    c = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5)
    out = shift_depth(c, torch.tensor([[1, -2], [0, 0]]))
    assert torch.equal(out[1], c[1])
    assert out[0, 0, 2] == c[0, 1, 0] and out[0, 2, 4] == c[0, 3, 2]  # out(i, j) = c(i + 1, j - 2)
    assert torch.equal(out[0, :, 0], c[0, [1, 2, 3, 3], 0])  # beyond the image: the nearest edge pixel
    assert torch.equal(out[0, 3], out[0, 2])


def test_fit_shifts_recovers_a_known_misregistration():
    clean = torch.from_numpy(_smooth_clean(B=3))
    clean[2] = 2.0  # a frame without edges: nothing to fit, (0, 0)
    real = shift_depth(clean, torch.tensor([[2, -3], [-1, 0], [4, 4]]))
    real = real * (1 + 0.002 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0)))
    assert fit_shifts(clean, real, radius=4).tolist() == [[2, -3], [-1, 0], [0, 0]]
    assert fit_shifts(clean[:2], clean[:2], radius=4).tolist() == [[0, 0], [0, 0]]


def test_registration_stage_noises_the_shifted_depth_scaled_by_focal_length():
    m = _model()
    reg = RegistrationStage(torch.tensor([[0.0, 3.0]]), 300.0)
    clean = _smooth_clean()
    rngs = lambda: [np.random.default_rng(i) for i in range(2)]  # noqa: E731
    moved = shift_depth(torch.from_numpy(clean), torch.tensor([[0, 3], [0, 3]])).numpy()
    out = generate(m, clean, rngs(), registration=reg)
    assert np.array_equal(out, np.where(clean > 0, generate(m, moved, rngs()), 0))  # drawn last: same noise
    assert np.array_equal(out, generate(m, clean, rngs(), registration=reg))  # deterministic
    assert np.allclose(
        generate(m, clean[1:], [np.random.default_rng(1)], registration=reg)[0], out[1], atol=1e-5
    )
    third = shift_depth(torch.from_numpy(clean), torch.tensor([[0, 1], [0, 1]])).numpy()  # f = f_train / 3
    assert np.array_equal(
        generate(m, clean, rngs(), registration=reg, focal=100.0),
        np.where(clean > 0, generate(m, third, rngs()), 0),
    )
    with pytest.raises(ValueError, match="focal length"):
        RegistrationStage(torch.tensor([[0.0, 3.0]]), 0.0)


def test_add_registration_fits_train_shifts_and_refuses_a_second_one(pairs, tiny_model, tmp_path):
    out = tmp_path / "shifted.pt"
    r = add_registration(pairs, tiny_model, out, radius=3)
    f = load_model(out)
    K = PairData(pairs, "train").K
    assert f.registration.shifts.shape == (2, 2) and f.model.cfg.name == "reald2iff-shift"
    assert f.registration.focal == pytest.approx((K[0][0] + K[1][1]) / 2)  # the fixture's camera
    assert f.registration.shifts.abs().max() <= 3
    assert json.loads(f.meta["shifts_from"])["frames"] == 2 == r["stats"]["frames"]
    _loads_and_refuses_a_second_stage(
        out, pairs, tmp_path, add_registration, "shift", "already has a registration stage"
    )


# --- the edge-displacement stage -------------------------------------------------------------------


def _boxes(B=4, H=96, W=128):
    """Frames of a wall at 2 m with a box at 1 m (a jump of 100 %) and a hole in the wall."""
    d = np.full((B, H, W), 2.0, np.float32)
    for b in range(B):
        d[b, 20 + 5 * b : 70, 30 + 7 * b : 90] = 1.0
    d[:, 80:88, 10:20] = 0
    return d


def _grow_foreground(d, px):
    """The foreground grown by px (disc) over the background, where the depth is valid."""
    from scipy import ndimage

    y, x = np.mgrid[-px : px + 1, -px : px + 1]
    m = np.stack(
        [ndimage.minimum_filter(np.where(f > 0, f, np.inf), footprint=x * x + y * y <= px * px) for f in d]
    )
    return np.where(d > 0, np.minimum(d, m), 0).astype(np.float32)


def test_edge_stage_fits_and_reproduces_a_known_fattening():
    from realdiff.metrics import edge_swaps

    clean = _boxes()
    real = _grow_foreground(clean, 3)  # the sensor: the foreground 3 px wider, everywhere
    grown, shrunk = fit_edge_swaps(clean, real, max_dist=6)
    assert grown.shape == shrunk.shape == (3, 6)
    assert grown[2].tolist() == pytest.approx([1, 1, 1, 0, 0, 0], abs=0.05)  # the big-jump bin
    assert np.all(shrunk[2] < 0.02) and np.all(grown[:2] == 0)  # no jump of 10-60 %: nothing seen
    stage = EdgeStage(torch.from_numpy(grown), torch.from_numpy(shrunk), focal=300.0, length=16)
    g = torch.Generator().manual_seed(0)
    noise = torch.stack([stage.draw(g, 96, 128) for _ in clean])
    out = stage.apply(torch.from_numpy(clean), noise).numpy()
    assert np.array_equal(out > 0, clean > 0)  # no reading gained or lost
    _, g_out, s_out = edge_swaps(clean, out, max_dist=6)
    assert g_out.tolist() == pytest.approx(grown[2].tolist(), abs=0.05) and np.all(s_out < 0.05)
    far = _grow_foreground(clean, 8) == clean  # farther than 8 px from the box: untouched
    assert np.array_equal(out[far], clean[far])
    # the widths scale with the focal length: at half the training camera's, 3 px become 1.5 -> 2
    half = stage.apply(torch.from_numpy(clean), noise, focal=150.0).numpy()
    assert edge_swaps(clean, half, max_dist=6)[1][:3].tolist() == pytest.approx([1, 1, 0], abs=0.1)


def test_edge_stage_draws_last_and_keeps_generate_deterministic():
    m = _model()
    clean = _boxes(B=2)
    stage = EdgeStage(torch.full((3, 4), 0.5), torch.full((3, 4), 0.2), focal=300.0)
    rngs = lambda: [np.random.default_rng(i) for i in range(2)]  # noqa: E731
    out = generate(m, clean, rngs(), edges=stage)
    assert np.array_equal(out, generate(m, clean, rngs(), edges=stage))
    assert np.allclose(generate(m, clean[1:], [np.random.default_rng(1)], edges=stage)[0], out[1], atol=1e-5)
    # the diffusion noise is drawn first: the same as generating from the moved depth without the stage
    g = torch.Generator()
    noise = []
    for r in rngs():
        g.manual_seed(int(r.integers(2**63)))
        m.draw_noise(g, (96, 128), True)
        noise.append(stage.draw(g, 96, 128))
    moved = stage.apply(torch.from_numpy(clean), torch.stack(noise)).numpy()
    assert np.array_equal(out, generate(m, moved, rngs()))
    with pytest.raises(ValueError, match="edge curves"):
        EdgeStage(torch.zeros(2, 4), torch.zeros(2, 4), focal=300.0)


def test_add_edges_writes_a_model_that_reloads_and_refuses_a_second_one(pairs, tiny_model, tmp_path):
    out = tmp_path / "edges.pt"
    r = add_edges(pairs, tiny_model, out, max_dist=4)
    f = load_model(out)
    assert f.edges.grown.shape == (3, 4) and f.model.cfg.name == "reald2iff-edges"
    assert np.allclose(f.edges.grown.numpy(), r["stats"]["grown"], atol=1e-4)
    K = PairData(pairs, "train").K
    assert f.edges.focal == pytest.approx((K[0][0] + K[1][1]) / 2) and f.edges.length == 32.0
    _loads_and_refuses_a_second_stage(out, pairs, tmp_path, add_edges, "edges", "already has an edge stage")


# --- the readout stage ------------------------------------------------------------------------------


def _aligned(depth, pitch, phase=0.3):
    """depth (N, H, W) resampled nearest-neighbour on a grid of `pitch` px, as an aligned stream is."""
    H, W = depth.shape[1:]
    rows, cols = grid_rows(H, pitch[0], phase * pitch[0]), grid_rows(W, pitch[1], phase * pitch[1])
    return depth[:, rows.numpy()][:, :, cols.numpy()]


def test_fit_grid_finds_the_resampling_pitch_and_none_where_there_is_none():
    rng = np.random.default_rng(0)
    depth = (1 + 0.01 * rng.standard_normal((4, 120, 160))).astype(np.float32)  # no two readings equal
    gy, gx = fit_grid(_aligned(depth, (1.6, 1.35)))
    assert gy == pytest.approx(1.6, abs=0.02) and gx == pytest.approx(1.35, abs=0.02)
    assert fit_grid(depth) == (1.0, 1.0)
    rows = grid_rows(20, 2.0, 0.0)  # a pitch of 2: every source row twice
    assert rows.tolist() == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14, 16, 16, 18, 18]


def test_readout_stage_resamples_smooths_flat_pixels_and_keeps_holes_where_clean_has_none():
    m = _model()
    clean = _boxes(B=2)
    clean[:, :10, :12] = 0  # a region the clean depth does not see
    stage = ReadoutStage(1.0, (1.6, 1.6), focal=300.0)
    rngs = lambda: [np.random.default_rng(i) for i in range(2)]  # noqa: E731
    out = generate(m, clean, rngs(), readout=stage)
    assert np.array_equal(out, generate(m, clean, rngs(), readout=stage))
    assert np.allclose(
        generate(m, clean[1:], [np.random.default_rng(1)], readout=stage)[0], out[1], atol=1e-5
    )
    assert not (out[clean <= 0] > 0).any()
    plain = generate(m, clean, rngs())
    # whole rows and columns repeat, and readings flicker less than without the stage
    for axis in (1, 2):
        same = np.all(np.diff(out, axis=axis) == 0, axis=3 - axis)
        assert 0.3 < same.mean() < 0.5  # about 1 - 1 / 1.6, a little more from the clamped border
        assert not np.all(np.diff(plain, axis=axis) == 0, axis=3 - axis).any()
    # smoothing before the readout: a noisy plane read out on levels flickers less
    plane = np.full((1, 64, 64), 1.5, np.float32)
    x = torch.zeros(1, 2, 64, 64)
    x[:, 0] = 0.02 * torch.randn(1, 64, 64, generator=torch.Generator().manual_seed(0))
    levels = tuple(1 / np.linspace(1.3, 1.7, 80)[::-1])
    rough, smooth = (decode(torch.from_numpy(plane), x, levels, smooth=s).numpy() for s in (0.0, 1.0))
    assert isolated_readings(plane, smooth) < 0.5 * isolated_readings(plane, rough)
    assert np.array_equal(smooth[:, :2], rough[:, :2])  # within 2 px of the border: as read
    # the grid scales with the focal length: at half the training camera's, a pitch of 0.8 is none
    assert np.array_equal(
        generate(m, clean, rngs(), focal=150.0, readout=ReadoutStage(0.0, (1.6, 1.6), 300.0)),
        generate(m, clean, rngs(), focal=150.0),
    )
    with pytest.raises(ValueError, match="readout stage"):
        ReadoutStage(1.0, (0.5, 1.6), focal=300.0)


def test_add_readout_writes_a_model_that_reloads_and_refuses_a_second_one(pairs, tiny_model, tmp_path):
    out = tmp_path / "readout.pt"
    r = add_readout(pairs, tiny_model, out, grid=(1.5, 1.5))
    f = load_model(out)
    assert f.readout.grid == (1.5, 1.5) and f.model.cfg.name == "reald2iff-readout"
    assert (
        f.readout.smooth == r["stats"]["smooth"] and str(f.readout.smooth) in r["stats"]["isolated_by_smooth"]
    )
    _loads_and_refuses_a_second_stage(
        out, pairs, tmp_path, add_readout, "readout", "already has a readout stage"
    )
    assert_one_line_error(
        run_realdiff("readout", tiny_model, "--pairs", pairs, "--out", tmp_path / "g.pt", "--grid", "1.5"),
        "need two pitches",
    )


# --- saving and loading ---------------------------------------------------------------------------


def test_saved_model_reloads_to_identical_outputs(tmp_path):
    m = _model(seed=3)
    save_model(m, tmp_path / "m.pt", {"note": "test"})
    f = load_model(tmp_path / "m.pt")
    m2, meta = f.model, f.meta
    assert meta == {"note": "test"}
    clean = _clean()
    a = generate(m, clean, [np.random.default_rng(0), np.random.default_rng(1)])
    b = generate(m2, clean, [np.random.default_rng(0), np.random.default_rng(1)])
    assert np.array_equal(a, b)


def test_bad_model_files_give_one_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a RealD²iff checkpoint"):
        load_model(tmp_path / "junk.pt")
    m = _model()
    save_model(m, tmp_path / "m.pt")
    ck = torch.load(tmp_path / "m.pt", weights_only=True)
    ck["version"] = "reald2iff-0"
    torch.save(ck, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=f"this code reads '{MODEL_VERSION}'"):
        load_model(tmp_path / "old.pt")
    torch.save(
        {"version": MODEL_VERSION, "config": {"fine": None, "coarse": None}, "state_dict": {}},
        tmp_path / "empty.pt",
    )
    with pytest.raises(ValueError, match="coarse or a fine stage"):
        load_model(tmp_path / "empty.pt")
    # a pickled object that would run code on load is refused (weights_only)
    torch.save({"version": MODEL_VERSION, "state_dict": {}, "config": ModelConfig()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="not a RealD²iff checkpoint"):
        load_model(tmp_path / "code.pt")
    p = run_realdiff("eval", "--pairs", tmp_path / "none.zarr", "--noiser", tmp_path / "junk.pt")
    assert_one_line_error(p, "not a RealD²iff checkpoint")


# --- training ---------------------------------------------------------------------------------------


def test_training_on_the_fixture_lowers_the_loss(pairs):
    """The fine stage's loss on a fixed batch (fixed noise and times) drops after 120 steps."""
    cfg = make_config(TINY_PRESET, fine_iters=120, no_coarse=True)
    data = PairData(pairs, "train")
    torch.manual_seed(0)
    model = RealD2iff(cfg.model)
    cond, target, _ = data.fine_batch(np.random.default_rng(123), 8, cfg.patch)
    up = torch.zeros_like(cond)
    up[:, 1] = -1
    cond = torch.cat([cond, up], 1)
    weight = discrepancy_weight(target, cond[:, 1:2])
    gen = torch.Generator().manual_seed(0)
    t, noise = torch.rand(8, generator=gen), torch.randn(target.shape, generator=gen)
    x_t = q_sample(target, noise, t)

    def fixed_loss():
        with torch.no_grad():
            return weighted_mse(model.fine(x_t, cond, t), target, weight).item()

    before = fixed_loss()
    from realdiff.reald2iff.train import train_stage

    train_stage(
        "fine",
        model,
        RealD2iff(cfg.model),
        data,
        PairData(pairs, "val"),
        cfg,
        Path(pairs).parent,
        progress=False,
    )
    assert fixed_loss() < 0.85 * before


def test_train_writes_a_model_with_config_and_validation(tiny_model):
    f = load_model(tiny_model)
    model, meta = f.model, f.meta
    assert model.coarse is not None and model.fine is not None
    cfg = json.loads(meta["train_config"])
    assert cfg["coarse_iters"] == 20 and cfg["fgs_weight"] > 0 and cfg["dgo_beta"] > 0
    assert {"residual_w1_mm", "hole_f1"} <= set(json.loads(meta["val"]))
    log = [json.loads(line) for line in Path(str(tiny_model) + ".train/log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"coarse", "fine"} and all("spectrum_dist" in r for r in log)


@pytest.mark.slow  # the shared Trainer's resume runs in `make test` through test_policies.py
def test_killed_training_resumes(pairs, tmp_path):
    out = tmp_path / "m.pt"
    args = [
        sys.executable,
        "-m",
        "realdiff",
        "train",
        str(pairs),
        "--out",
        str(out),
        "--preset",
        TINY_PRESET,
        "--coarse-iters",
        "60",
        "--fine-iters",
        "20",
    ]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ck = Path(str(out) + ".train") / "coarse.pt"
    deadline = time.time() + 120
    while not ck.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ck.exists() and not out.exists()
    step = torch.load(ck, weights_only=True)["step"]
    assert 0 < step < 60
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{step}/60" in r.stderr  # the bar starts where the checkpoint left off
    assert torch.load(ck, weights_only=True)["step"] == 60 and out.exists()
    # the same command with another config refuses to mix checkpoints
    r = run_realdiff("train", pairs, "--out", out, "--preset", TINY_PRESET, "--coarse-iters", "70")
    assert_one_line_error(r, "another config")


def test_ablation_variants_copy_stages(pairs, tiny_model, tmp_path):
    """--no-fgs with the fine stage copied trains only the coarse stage; --no-fine keeps coarse only."""
    r = run_realdiff(
        "train",
        pairs,
        "--out",
        tmp_path / "c.pt",
        "--preset",
        TINY_PRESET,
        "--no-fine",
        "--coarse-from",
        tiny_model,
        "--name",
        "coarse-only",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    m = load_model(tmp_path / "c.pt").model
    src = load_model(tiny_model).model
    assert m.fine is None and m.cfg.name == "coarse-only"
    assert all(
        torch.equal(a, b) for a, b in zip(m.coarse.state_dict().values(), src.coarse.state_dict().values())
    )
    noiser = load_noiser(str(tmp_path / "c.pt"))
    assert isinstance(noiser, RealD2iffNoiser) and noiser.name == "coarse-only"
    r = run_realdiff(
        "train",
        pairs,
        "--out",
        tmp_path / "f.pt",
        "--preset",
        TINY_PRESET,
        "--no-coarse",
        "--fine-from",
        tiny_model,
        "--quiet",
    )
    assert_one_line_error(r, "trained with a coarse stage")


def test_a_copied_coarse_stage_keeps_its_sampler_and_the_fine_fold_is_set(pairs, tiny_model, tmp_path):
    """A distilled coarse stage (1 deterministic step here) is copied with its steps and eta; the
    fine stage retrained beside it folds 4x4 pixels (--fine-fold) instead of the preset's 2x2."""
    src = load_model(tiny_model).model
    src.cfg.coarse_steps, src.cfg.eta = 1, 0.0
    save_model(src, tmp_path / "distilled.pt")
    r = run_realdiff(
        "train",
        pairs,
        "--out",
        tmp_path / "m.pt",
        "--preset",
        TINY_PRESET,
        "--fine-fold",
        "4",
        "--coarse-from",
        tmp_path / "distilled.pt",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    m = load_model(tmp_path / "m.pt").model
    assert (m.cfg.coarse_steps, m.cfg.eta, m.cfg.fine_steps) == (1, 0.0, 2)  # fine steps: the preset's
    assert m.cfg.fine.unshuffle == 4 and src.cfg.fine.unshuffle == 2
    assert all(
        torch.equal(a, b) for a, b in zip(m.coarse.state_dict().values(), src.coarse.state_dict().values())
    )
    clean = _clean(H=64, W=64)
    assert generate(m, clean, [np.random.default_rng(0)] * 2).shape == clean.shape
    assert_one_line_error(
        run_realdiff("train", pairs, "--out", tmp_path / "x.pt", "--preset", TINY_PRESET, "--fine-fold", "3"),
        "power of 2",
    )


def test_presets_build_and_bad_configs_are_refused(tmp_path):
    for preset in ("cpu", "gpu", TINY_PRESET):
        cfg = make_config(preset)
        m = RealD2iff(cfg.model)
        assert m.coarse is not None and m.fine is not None
    assert make_config("cpu").to_dict() == make_config("cpu").__class__().to_dict()  # the defaults
    gpu = make_config("gpu")
    assert (gpu.model.coarse.widths, gpu.model.coarse.blocks, gpu.model.coarse.unshuffle) == (
        (64, 128, 128),
        2,
        1,
    )
    assert (gpu.model.fine.widths, gpu.model.fine.unshuffle, gpu.device, gpu.fine_iters) == (
        (64, 128),
        2,
        "cuda",
        40000,
    )
    (tmp_path / "bad.toml").write_text("coarse_iterz = 3\n")
    with pytest.raises(ValueError, match="coarse_iterz"):
        make_config(str(tmp_path / "bad.toml"))
    (tmp_path / "broken.toml").write_text("coarse_iters = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        make_config(str(tmp_path / "broken.toml"))
    assert make_config("cpu", no_fgs=None, fgs_weight=0.0).fgs_weight == 0.0
    assert make_config("cpu", no_coarse=True).model.coarse is None
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ValueError, match="multiple of 16"):
        make_config("cpu", patch=100)
    with pytest.raises(ValueError, match="coarse or a fine"):
        make_config("cpu", no_coarse=True, no_fine=True)
    assert make_config("cpu", fine_fold=8).model.fine.unshuffle == 8
    with pytest.raises(ValueError, match="multiples of 64 pixels"):  # 32 folded, then halved once
        make_config("cpu", fine_fold=32)
    with pytest.raises(ValueError, match="multiple of the fine network's 32"):
        make_config("cpu", fine_fold=16, patch=48)
