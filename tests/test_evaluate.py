"""`realdiff eval` end to end on the committed 7-Scenes fixture (pair store made in the test)."""

import json

import imageio.v2 as imageio
import pytest

from realdiff.evaluate import evaluate
from tests.conftest import KINECT7, make_fixture_pairs, run_realdiff


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "pairs.zarr"
    make_fixture_pairs(out, val_from=300)  # 1 train frame, 2 val frames
    return out


def test_eval_writes_metrics_table_and_plots(pairs, tmp_path):
    out = tmp_path / "ev"
    r = evaluate(pairs, "val", ["identity", "gaussian"], out, two_sample=False, progress=False)
    assert r["frames"] == 2 and set(r["noisers"]) == {"identity", "gaussian"}
    ident, gauss = r["noisers"]["identity"]["metrics"], r["noisers"]["gaussian"]["metrics"]
    assert ident["hole_f1"] == 0.0  # identity predicts no holes, real depth has some
    assert gauss["residual_w1_mm"] < ident["residual_w1_mm"]  # noise beats no noise
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["noisers"]["gaussian"]["params"]["sigma"] > 0 and "floor" in saved
    table = (out / "metrics.md").read_text()
    assert "| identity |" in table and "| floor (real vs real) |" in table
    for png in ("curves.png", "examples_identity.png", "examples_gaussian.png"):
        assert imageio.imread(out / png).ndim == 3


def test_eval_cli_and_bad_input(pairs, tmp_path):
    p = run_realdiff(
        "eval", "--pairs", pairs, "--split", "val", "--noiser", "axial-lateral", "--no-two-sample", "--quiet"
    )
    assert p.returncode == 0 and "| axial-lateral |" in p.stdout, p.stderr
    for args, fragment in (
        (["--noiser", "perlin"], "perlin"),
        (["--split", "test", "--all"], "split"),
        ([], "--noiser NAME or --all"),
    ):
        p = run_realdiff("eval", "--pairs", pairs, "--quiet", *args)
        assert p.returncode == 2 and fragment in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_realdiff("eval", "--pairs", KINECT7, "--noiser", "identity")
    assert p.returncode == 2 and "not a pair store" in p.stderr
