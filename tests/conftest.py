import contextlib
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

import simgen  # noqa: F401  (sets MUJOCO_GL before any test imports mujoco)


def run_cli(*args, timeout=300, check=False, prog="simgen"):
    """Run `python -m simgen ARGS` (or another prog) in a subprocess; returns CompletedProcess."""
    p = subprocess.run(
        [sys.executable, "-m", prog, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    if check and p.returncode != 0:
        raise AssertionError(f"{prog} {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p


def run_realdiff(*args, check=False, **kw):
    """`realdiff ARGS` run in this process (its `main`, stdout and stderr captured): what a
    subprocess would print and return, without the seconds each one spends importing torch."""
    from realdiff.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            rc = e.code if isinstance(e.code, int) else 1
    p = subprocess.CompletedProcess(["realdiff", *map(str, args)], rc, out.getvalue(), err.getvalue())
    if check and rc != 0:
        raise AssertionError(f"realdiff {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p


KINECT7 = Path(__file__).parent / "fixtures" / "kinect7"  # 3 real 7-Scenes frames, 320x240
TINY_PRESET = str(Path(__file__).parent / "fixtures" / "realdiff-tiny.toml")  # RealD²iff in seconds


def make_fixture_pairs(out, **kw) -> dict:
    """A pair store from the committed 7-Scenes fixture (frames 0, 300, 650); returns the summary."""
    from realdiff.pairs import make_pairs

    return make_pairs(
        KINECT7 / "frames",
        KINECT7 / "camera-intrinsics.txt",
        KINECT7 / "scene_mesh.ply",
        out,
        progress=False,
        **kw,
    )


def tree_digest(path) -> str:
    """Hash of every file's name and bytes under path (the write lock file excepted)."""
    h = hashlib.sha1()
    for f in sorted(Path(path).rglob("*")):
        if f.name == ".simgen.lock":
            continue
        h.update(str(f.relative_to(path)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def assert_one_line_error(p, fragment):
    """Exit code 2 and exactly one non-empty stderr line containing fragment."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], p.stderr


@pytest.fixture(scope="session")
def pick_env():
    from tasks import make_env

    env = make_env("pick", ["front", "wrist"], 128, 96, rgb=True, seg=True)
    yield env
    env.close()


def child_pids(pid: int) -> list[int]:
    """Pids of the live processes whose parent is pid (from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cmdline(pid: int) -> bytes:
    """A process's command line (b"" once it has exited)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # exited meanwhile
        return b""


def spawned_workers(pid: int) -> list[int]:
    """The multiprocessing (spawn) worker processes of pid."""
    return [c for c in child_pids(pid) if b"spawn_main" in cmdline(c)]


def assert_workers_exit(workers: list[int], timeout: float = 30.0) -> None:
    """The given worker processes all exit within timeout (their parent was killed)."""
    import time

    t0 = time.time()
    while any(cmdline(w) for w in workers) and time.time() - t0 < timeout:
        time.sleep(0.1)
    assert not any(cmdline(w) for w in workers), "worker processes outlived their killed parent"
