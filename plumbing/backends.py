"""Independent jobs on this machine's cores or on a Ray cluster, written once.

`run_jobs(fn, jobs, record, backend=...)` calls `fn(*job)` for every job and `record(result)` here, in
this process, as results come (in any order):

- `local`: spawned worker processes (plumbing.procs.spawn_pool); this process works on jobs too
  while the workers start up (importing torch takes them seconds). A worker that dies stops the
  run with WorkerFailed (what was recorded is kept).
- `ray`: one Ray task per job (one CPU each) on a local Ray started for the run, or on the cluster at
  `address` ("auto": the one this machine belongs to). A job's exception stops the run with that
  exception (what was recorded is kept).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from plumbing.procs import WORKER_ENV, WorkerFailed, spawn_pool

BACKENDS = ("local", "ray")


def check_backend(backend: str, address: str | None = None) -> None:
    """ValueError for an unknown backend, or a Ray address given to the local backend."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise ValueError("--address is a Ray setting: use --backend ray")


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator:
    """The `ray` module with Ray running: the cluster at `address`, else a local Ray of `workers`
    CPUs (default all), started here and shut down at the end (one already running is reused)."""
    try:
        import ray
    except ImportError:
        raise ValueError("backend \"ray\" needs Ray: pip install 'ray>=2.9'") from None
    started = not ray.is_initialized()
    if started:
        # A local Ray runs its workers at nice 15 by default: beside any other work they would
        # starve, where the local backend's processes run at the user's own priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        kw = (
            {"address": address}
            if address
            else {
                "num_cpus": workers or os.cpu_count() or 1,
                "include_dashboard": False,
                "object_store_memory": 128 << 20,
            }
        )
        ray.init(runtime_env={"env_vars": dict(WORKER_ENV)}, log_to_driver=False, logging_level="ERROR", **kw)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_local(fn: Callable, jobs: list[tuple], record: Callable, workers: int) -> None:
    queue = deque(jobs)
    if workers <= 1:
        while queue:
            record(fn(*queue.popleft()))
        return
    try:
        _pool_jobs(fn, queue, record, workers)
    except BrokenProcessPool:
        raise WorkerFailed("a worker process died") from None


def _pool_jobs(fn: Callable, queue: deque, record: Callable, workers: int) -> None:
    with spawn_pool(workers - 1) as pool:
        running: set = set()
        while queue or running:
            while queue and len(running) < 2 * (workers - 1):  # a job queued behind each running one
                running.add(pool.submit(fn, *queue.popleft()))
            if queue:
                record(fn(*queue.popleft()))
                finished, _ = wait(running, timeout=0)
            else:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                running.discard(f)
                record(f.result())


def _run_ray(fn: Callable, jobs: list[tuple], record: Callable, workers: int | None, address: str | None):
    with ray_session(address, workers) as ray:
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(*job) for job in jobs]
        while refs:
            done, refs = ray.wait(refs, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:  # the job's own exception, as one line
                raise e.cause if isinstance(e.cause, Exception) else RuntimeError(str(e)) from None
            record(result)


def run_jobs(
    fn: Callable,
    jobs: list[tuple],
    record: Callable,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> None:
    """fn(*job) for each job on `backend` with `workers` processes or Ray CPUs (default: all cores;
    never more processes than jobs locally); record(result) here for each. `fn` must be importable
    by name (a module-level function) and its arguments picklable."""
    check_backend(backend, address)
    if not jobs:
        return
    if backend == "ray":
        _run_ray(fn, jobs, record, workers, address)
    else:
        _run_local(fn, jobs, record, min(workers or os.cpu_count() or 1, len(jobs)))
