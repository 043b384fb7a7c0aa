"""Worker processes, written once: a spawned process pool whose workers exit when their parent
dies, and the environment variables worker processes start with."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

# A render worker is single-threaded by design (parallelism comes from more workers): Mesa's CPU
# rasteriser and the BLAS behind numpy's small solves would otherwise each start threads that
# busy-wait on every core. LP_NUM_THREADS=0 makes llvmpipe rasterise in the calling thread.
WORKER_ENV = {
    "LP_NUM_THREADS": "0",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@contextmanager
def child_environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables for the processes started inside the block (a user's own setting wins)."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class WorkerFailed(RuntimeError):
    """A worker process raised or died: the run stops, keeping what is finished."""


def exit_when_orphaned(parent: int, poll_s: float = 0.5) -> None:
    """In a worker started by process `parent`: a daemon thread ends this process once the parent
    has died, so a killed run leaves no worker computing, writing or blocked on a queue."""

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _start_worker(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    exit_when_orphaned(parent)
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def spawn_pool(
    workers: int, initializer: Callable | None = None, initargs: tuple = (), env: dict[str, str] | None = None
) -> Iterator[ProcessPoolExecutor]:
    """A ProcessPoolExecutor of `workers` spawned processes (not forked: GL contexts and zarr's
    event-loop thread do not survive a fork) that exit when this process dies, each running
    `initializer(*initargs)` first and started with the environment variables `env`."""
    with child_environment(env or {}):
        with ProcessPoolExecutor(
            workers,
            mp.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(), initializer, initargs),
        ) as pool:
            yield pool
