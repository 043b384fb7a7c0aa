import os
import subprocess
import sys

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


def run_cli(*args, timeout=300, check=False):
    """Run `python -m simgen ARGS` in a subprocess; returns CompletedProcess (text)."""
    p = subprocess.run([sys.executable, "-m", "simgen", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"simgen {' '.join(map(str, args))} failed:\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def pick_env():
    from simgen.cameras import get_cameras
    from simgen.env import Env
    from tasks import get_task

    env = Env(get_task("pick"), get_cameras(["front", "wrist"], 128, 96), rgb=True, seg=True)
    yield env
    env.close()
