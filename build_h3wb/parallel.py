"""Sequences of a stage processed side by side, in worker processes.

A stage whose sequences are independent (each writes its own artifact, atomically) hands them to
:func:`map_sequences`, which runs them in a pool of processes on the CPUs this process may use (its affinity mask,
so a Slurm allocation is respected) and reports progress as they finish. Processes, not threads: the per-sequence
work is many small numpy operations, where threads would wait on each other for the interpreter. Workers are started
with ``spawn`` (a clean interpreter, safe whatever threads the parent runs) and use one BLAS thread each.

An error in one sequence stops the stage with that error once the sequences already running have finished; every
artifact written before stays (atomic writes), so the next run resumes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from build_h3wb.progress import progress

log = logging.getLogger(__name__)

#: Sequences per worker below which ``workers=0`` (automatic) does not start another process: starting one costs
#: about a second (a fresh interpreter importing numpy and h5py), the work of a few short sequences.
MIN_SEQUENCES_PER_WORKER = 4

_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's console format


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a Slurm allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_count(setting: int, jobs: int) -> int:
    """Processes to use for ``jobs`` sequences: ``setting`` if positive (never more than the jobs), else automatic.

    Automatic (0): one per usable CPU, but only as many as keep :data:`MIN_SEQUENCES_PER_WORKER` sequences each.
    Inside a worker process (see :func:`in_worker_process`): always 1.
    """
    if setting < 0:
        raise ValueError(f"workers must be 0 (automatic) or a positive count, got {setting}")
    if in_worker_process():
        return 1
    if setting > 0:
        return max(1, min(setting, jobs))
    return max(1, min(usable_cpus(), jobs // MIN_SEQUENCES_PER_WORKER))


def in_worker_process() -> bool:
    """True inside a pool's worker (e.g. a job of Hydra's joblib launcher).

    Such a process already shares the CPUs with its siblings, so it starts no processes of its own (Slurm jobs run
    as their own main process, on their own allocation).
    """
    return multiprocessing.current_process().name != "MainProcess"


def _init_worker(level: int) -> None:
    logging.basicConfig(level=level, format=_LOG_FORMAT)
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl is a core dependency
        pass


def map_sequences(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, desc: str, unit: str = "seq",
                  ) -> list[Any]:
    """Call ``fn(*job)`` for every job, in ``worker_count(workers, len(jobs))`` processes (1: in this process).

    Args:
        fn: a module-level function (it is pickled by reference) that writes its own output.
        jobs: its arguments, one tuple per sequence (picklable).
        workers: the stage's ``workers`` setting (0: automatic).
        desc: the progress line's label.
        unit: what a job is, for the progress line.

    Returns:
        What ``fn`` returned for each job, in the order of ``jobs``.
    """
    n = worker_count(workers, len(jobs))
    if n <= 1:
        return [fn(*job) for job in progress(jobs, desc=desc, unit=unit)]
    log.info("%s: %d %ss in %d worker processes", desc, len(jobs), unit, n)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                             initargs=(logging.getLogger().getEffectiveLevel(),)) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for f in progress(as_completed(futures), desc=desc, total=len(futures), unit=unit):
                f.result()  # raises the sequence's error here
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # let the running ones finish their atomic writes
            raise
    return [f.result() for f in futures]
