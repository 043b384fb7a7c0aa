"""Items 8 and 9: the command line, its help, previews, and one-line errors on bad input."""

import subprocess
import sys
import zipfile
from pathlib import Path

import imageio.v2 as imageio
import pytest
import zarr

from simgen.store import SCHEMA
from tests.conftest import assert_one_line_error, run_cli, run_realdiff, tree_digest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "pick.zarr"
    run_cli("render", "--task", "pick", "--episodes", 2, "--out", out, "--resolution", "64x64", check=True)
    return out


@pytest.mark.parametrize("sub", ["render", "info", "preview", "tasks"])
def test_help_explains_every_flag(sub):
    p = run_cli(sub, "--help", check=True)
    flags = {
        "render": [
            "--task",
            "--episodes",
            "--out",
            "--seed",
            "--cameras",
            "--resolution",
            "--rgb",
            "--no-rgb",
            "--seg",
            "--workers",
        ],
        "info": ["store"],
        "preview": ["--episode", "--out"],
        "tasks": [],
    }[sub]
    for f in flags:
        assert f in p.stdout, f


def test_tasks_lists_every_task():
    names = [line.split()[0] for line in run_cli("tasks", check=True).stdout.splitlines()]
    for t in ("pick", "place", "stack", "push", "drawer", "pick_clutter"):
        assert t in names


def test_info_reports_store(store):
    out = run_cli("info", store, check=True).stdout
    assert "episodes   2" in out and "success 2/2" in out
    for k in ("front_depth", "wrist_rgb", "action", "on disk", "per frame", "(1, 64, 64)"):
        assert k in out


def test_preview_png_and_mp4(store, tmp_path):
    png, mp4 = tmp_path / "p.png", tmp_path / "p.mp4"
    run_cli("preview", store, "--episode", 1, "--out", png, check=True)
    run_cli("preview", store, "--episode", 1, "--out", mp4, check=True)
    img = imageio.imread(png)
    assert img.ndim == 3 and img.shape[1] >= 4 * 64 and img.std() > 10
    frames = imageio.mimread(mp4)
    n = zarr.open_group(store)["meta/episode_ends"][:]
    assert len(frames) == n[1] - n[0]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--task", "fly"], "unknown task 'fly'"),
        (["--task", "pick", "--cameras", "front,top"], "unknown camera 'top'"),
        (["--task", "pick", "--resolution", "128by128"], "not WIDTHxHEIGHT"),
        (["--task", "pick", "--resolution", "0x0"], "out of range"),
        (["--task", "pick", "--episodes", "0"], "at least 1"),
    ],
)
def test_bad_render_arguments(tmp_path, args, fragment):
    out = tmp_path / "never.zarr"
    argv = ["render", "--out", out, *args]
    if "--episodes" not in args:
        argv += ["--episodes", "1"]
    assert_one_line_error(run_cli(*argv), fragment)
    assert not out.exists()


def test_refuses_paths_that_are_not_its_stores(tmp_path, store):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    d = tmp_path / "folder"
    d.mkdir()
    (d / "photo.png").write_bytes(b"\x89PNG")
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").attrs["creator"] = "someone else"
    old = tmp_path / "old.zarr"
    import shutil

    shutil.copytree(store, old)
    g = zarr.open_group(old, mode="r+")
    meta = dict(g.attrs[SCHEMA])
    meta["schema_version"] = 99
    g.attrs[SCHEMA] = meta
    cases = [
        (f, "not a zarr store"),
        (d, "not a zarr store"),
        (other, "not a simgen store"),
        (old, "schema version 99"),
    ]
    for path, fragment in cases:
        before = tree_digest(path) if path.is_dir() else path.read_bytes()
        p = run_cli("render", "--task", "pick", "--episodes", 1, "--out", path, "--quiet")
        assert_one_line_error(p, fragment)
        after = tree_digest(path) if path.is_dir() else path.read_bytes()
        assert before == after, path
    assert_one_line_error(run_cli("info", old), "schema version 99")
    assert_one_line_error(run_cli("info", tmp_path / "missing.zarr"), "no such store")


def test_refuses_a_store_made_with_other_settings(store):
    before = tree_digest(store)
    p = run_cli("render", "--task", "pick", "--episodes", 3, "--out", store, "--resolution", "32x32")
    assert_one_line_error(p, "different settings (height, width)")
    assert tree_digest(store) == before


def test_preview_bad_arguments(store, tmp_path):
    assert_one_line_error(
        run_cli("preview", store, "--episode", 9, "--out", tmp_path / "x.png"), "out of range"
    )
    assert_one_line_error(run_cli("preview", store, "--out", tmp_path / "x.gif"), "must end in .mp4 or .png")


def test_wheel_ships_tasks_and_assets(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("simgen-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for need in (
        "tasks/__init__.py",
        "tasks/pick.py",
        "tasks/base.py",
        "assets/__init__.py",
        "assets/scene.xml",
        "simgen/cli.py",
        "realdiff/__init__.py",
        "realdiff/params/reald2iff-texture-shift.sensor.json",
        "policies/__init__.py",
    ):
        assert need in names, need
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert "simgen = simgen.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_realdiff_sensors_lists_every_model_with_its_sensor_and_range():
    import json

    from realdiff.sensors import COMMITTED_MODELS, DEFAULT_NOISER, NOISERS

    names = [*NOISERS, *COMMITTED_MODELS]
    out = run_realdiff("sensors", check=True).stdout
    blocks = {b.splitlines()[0].split()[0]: b for b in out.strip().split("\n\n")}
    assert list(blocks) == names
    for name, block in blocks.items():
        first = block.splitlines()[0]
        assert first.endswith("(default)") == (name == DEFAULT_NOISER), first
        assert "validation  W1 " in block and "two-sample" in block
        if name == "identity":
            assert "sensor      none" in block and "range" not in block
        elif name == "reald2iff-d435":
            assert "sensor      Intel RealSense D435 (active IR stereo)" in block
            assert "range       0.45-3.3 m" in block and "realsense-d435-office" in block
        else:
            assert "sensor      Microsoft Kinect v1 (structured light)" in block
            assert "range       0.8-4.0 m" in block and "resolution  640x480" in block
            assert "frames 0-599" in block
    rows = json.loads(run_realdiff("sensors", "--json", check=True).stdout)
    assert [r["name"] for r in rows] == names
    assert [r["name"] for r in rows if r["default"]] == [DEFAULT_NOISER]
    assert all(r["range_m"] == [0.8, 4.0] for r in rows if r["name"] not in ("identity", "reald2iff-d435"))
    by_name = {r["name"]: r for r in rows}
    assert by_name["reald2iff-texture-shift"]["validation"]["two_sample_acc"] == 0.635
    assert by_name["identity"]["sensor"] is None
    assert "--json" in run_realdiff("sensors", "--help", check=True).stdout
