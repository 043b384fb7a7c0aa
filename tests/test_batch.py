"""`simgen batch`: job files, local and Ray backends giving the same stores, resuming a killed
job, retrying a crashed worker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error, child_pids, cmdline, run_cli

from simgen.batch import JobError, load_job, run_job
from simgen.runner import RenderConfig, render_dataset
from simgen.store import Store

JOB = """
out = "out"
shard_episodes = 2
workers = 2

[defaults]
cameras = ["front", "wrist"]
resolution = "48x48"
rgb = false

[[task]]
task = "pick"
episodes = 5
seed = 10

[[task]]
name = "pick_dr"
task = "pick"
episodes = 2
seed = 100
randomize = {{ lighting = true, camera_jitter = true, table_height = true }}
{extra}
"""


def write_job(folder: Path, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.toml").write_text(JOB.format(extra=extra))
    return folder / "job.toml"


def assert_same_store(a, b):
    sa, sb = Store(a), Store(b)
    assert sa.keys() == sb.keys()
    for k in sa.keys():
        assert np.array_equal(sa.array(k)[:], sb.array(k)[:]), k
    assert np.array_equal(
        zarr.open_group(a)["meta/episode_ends"][:], zarr.open_group(b)["meta/episode_ends"][:]
    )
    assert dict(sa.meta) == dict(sb.meta)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    job = load_job(write_job(tmp_path_factory.mktemp("local")))
    summary = run_job(job, progress=False)
    return job, summary


def test_job_file_parsed_into_render_settings(tmp_path):
    job = load_job(write_job(tmp_path))
    assert job.out == tmp_path / "out" and job.backend == "local" and job.workers == 2
    pick, dr = job.tasks
    assert (pick.name, pick.render.episodes, pick.render.seed, pick.render.width) == ("pick", 5, 10, 48)
    assert dr.render.randomize.camera_jitter and not pick.render.randomize.camera_jitter
    assert [(c.seed, c.episodes) for _, c in job.shards(pick)] == [(10, 2), (12, 2), (14, 1)]


def test_local_job_equals_plain_render(local_run, tmp_path):
    job, summary = local_run
    assert summary["rendered"]["episodes"] == 7
    assert summary["stores"]["pick"]["episodes"] == 5 and summary["stores"]["pick_dr"]["episodes"] == 2
    assert not job.shard_dir(job.tasks[0]).exists()  # merged, then removed
    ref = tmp_path / "ref.zarr"
    render_dataset(
        RenderConfig(task="pick", episodes=5, seed=10, width=48, height=48, rgb=False), ref, progress=False
    )
    assert_same_store(job.store_path(job.tasks[0]), ref)
    # a finished job run again does nothing and changes nothing
    again = run_job(job, progress=False)
    assert again["rendered"]["episodes"] == 0
    assert_same_store(job.store_path(job.tasks[0]), ref)


def test_ray_job_equals_local_job(local_run, tmp_path):
    pytest.importorskip("ray")
    job, _ = local_run
    ray_job = load_job(write_job(tmp_path), backend="ray")
    run_job(ray_job, progress=False)
    for t, rt in zip(job.tasks, ray_job.tasks):
        assert_same_store(job.store_path(t), ray_job.store_path(rt))


def _wait_for(cond, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_killed_job_rerun_gives_the_same_store(local_run, tmp_path):
    job, _ = local_run
    path = write_job(tmp_path)
    p = subprocess.Popen(
        [sys.executable, "-m", "simgen", "batch", str(path), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    shards = tmp_path / "out" / "pick.shards"
    # kill the whole job (driver and workers) once the first shard is published
    assert _wait_for(lambda: any(shards.glob("*.zarr")), 240), p.stderr.read() if p.poll() else ""
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "out" / "pick.zarr").exists()
    r = run_cli("batch", path, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "rendered" in r.stdout
    for t in job.tasks:
        assert_same_store(job.store_path(t), tmp_path / "out" / f"{t.name}.zarr")


def test_crashed_worker_is_retried(local_run, tmp_path):
    """SIGKILL a render worker mid-shard: the pool breaks, its shards are retried and the
    job still ends with the same stores."""
    job, _ = local_run
    path = write_job(tmp_path)
    p = subprocess.Popen(
        [sys.executable, "-m", "simgen", "batch", str(path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def workers():
        return [c for c in child_pids(p.pid) if b"spawn_main" in cmdline(c)]

    assert _wait_for(lambda: workers() and any((tmp_path / "out").glob("*.shards/*.partial")), 120)
    victims = workers()
    os.kill(victims[0], signal.SIGKILL)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    for t in job.tasks:
        assert_same_store(job.store_path(t), tmp_path / "out" / f"{t.name}.zarr")


def test_job_file_mistakes(tmp_path):
    bad = {
        "unknown setting(s) colour": 'colour = "red"\n[[task]]\ntask = "pick"\nepisodes = 1\n',
        "unknown task 'fly'": '[[task]]\ntask = "fly"\nepisodes = 1\n',
        "is not WIDTHxHEIGHT": '[[task]]\ntask = "pick"\nepisodes = 1\nresolution = "big"\n',
        "`episodes` is required": '[[task]]\ntask = "pick"\n',
        "unknown randomize setting": '[[task]]\ntask = "pick"\nepisodes = 1\nrandomize = { fog = true }\n',
        "backend 'slurm'": 'backend = "slurm"\n[[task]]\ntask = "pick"\nepisodes = 1\n',
        "share a store name": '[[task]]\ntask = "pick"\nepisodes = 1\n'
        '[[task]]\ntask = "pick"\nepisodes = 2\n',
        "not valid TOML": "[[task]\n",
    }
    for i, (fragment, text) in enumerate(bad.items()):
        f = tmp_path / f"bad{i}.toml"
        f.write_text(text)
        with pytest.raises(JobError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            load_job(f)
    # on the command line: one line, exit code 2
    assert_one_line_error(run_cli("batch", tmp_path / "bad1.toml"), "unknown task 'fly'")
    assert_one_line_error(run_cli("batch", tmp_path / "missing.toml"), "no such job file")


def test_changing_shard_size_of_a_started_job_is_refused(tmp_path):
    path = write_job(tmp_path)
    job = load_job(path)
    (job.shard_dir(job.tasks[0])).mkdir(parents=True)
    (job.shard_dir(job.tasks[0]) / "plan.json").write_text('{"shard_episodes": 3}')
    with pytest.raises(JobError, match="cut at 3 episodes"):
        run_job(job, progress=False)


def test_documented_job_example_is_the_shipped_file_and_valid():
    root = Path(__file__).resolve().parents[1]
    text = (root / "jobs" / "example.toml").read_text()
    assert text in (root / "docs" / "batch.md").read_text()
    job = load_job(root / "jobs" / "example.toml")
    assert [t.name for t in job.tasks] == ["pick_clutter", "stack_jitter", "robosuite_Lift"]
    assert job.tasks[1].render.randomize.camera_jitter and job.tasks[1].render.randomize.lighting
    assert not job.tasks[2].render.randomize.lighting
