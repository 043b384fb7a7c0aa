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


def test_eval_reports_both_two_sample_tests(pairs, tmp_path, monkeypatch, capsys):
    from realdiff import metrics

    calls = []  # the tests themselves are in test_metrics; here, only how eval reports them
    fake = lambda acc: lambda *a, seed, threads: calls.append((seed, threads)) or acc  # noqa: E731
    monkeypatch.setattr(metrics, "two_sample_accuracy", fake(0.75))
    monkeypatch.setattr(metrics, "two_sample_strong_accuracy", fake(0.875))
    out = tmp_path / "ev"
    r = evaluate(pairs, "val", ["gaussian"], out, seed=3, progress=True, threads=1)
    assert calls == [(3, 1), (3, 1)]
    m = r["noisers"]["gaussian"]["metrics"]
    assert m["two_sample_acc"] == 0.75 and m["two_sample_strong_acc"] == 0.875
    saved = json.loads((out / "metrics.json").read_text())["noisers"]["gaussian"]["metrics"]
    assert saved["two_sample_acc"] == 0.75 and saved["two_sample_strong_acc"] == 0.875
    lines = (out / "metrics.md").read_text().splitlines()
    head = next(line for line in lines if line.startswith("| noiser |"))
    assert head.endswith("| two-sample acc | two-sample acc (strong) |")
    assert next(line for line in lines if line.startswith("| gaussian |")).endswith("| 0.750 | 0.875 |")
    assert next(line for line in lines if line.startswith("| floor")).endswith("| - | - |")
    printed = capsys.readouterr().out
    assert "two_sample_acc=0.75" in printed and "two_sample_strong_acc=0.875" in printed


def test_eval_cli_and_bad_input(pairs, tmp_path):
    p = run_realdiff(
        "eval", "--pairs", pairs, "--split", "val", "--noiser", "axial-lateral", "--no-two-sample", "--quiet"
    )
    assert p.returncode == 0 and "| axial-lateral |" in p.stdout, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("| axial-lateral |"))
    assert row.endswith("| - | - |")  # --no-two-sample skips both two-sample tests
    for args, fragment in (
        (["--noiser", "perlin"], "perlin"),
        (["--split", "test", "--all"], "split"),
        ([], "--noiser NAME or --all"),
    ):
        p = run_realdiff("eval", "--pairs", pairs, "--quiet", *args)
        assert p.returncode == 2 and fragment in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_realdiff("eval", "--pairs", KINECT7, "--noiser", "identity")
    assert p.returncode == 2 and "not a pair store" in p.stderr
