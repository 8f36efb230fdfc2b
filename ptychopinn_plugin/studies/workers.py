"""Running a study's trainings side by side, each in its own process.

A study's networks are small (N = 32, 16 base filters): one training step does not keep two CPU
cores busy. On a 2-core CPU one dose-study model trains at about 88 ms per step with both cores;
two models, each in its own process with one core, at about 125 ms per step each, so a pair of
models finishes in 0.7 of the time it takes one after the other.

`run_jobs` runs jobs in `workers` processes started with 'spawn' (fresh interpreters: no forked
TensorFlow state), each with cpu_count // workers TensorFlow threads. Jobs and their results travel
between the processes through `multiprocessing` (in memory, never through files). The workers'
`ptychopinn` log records are handled by the parent's handlers, so `-v` shows every worker's epochs.
On a GPU the models train one after the other (`default_workers`): processes do not share a GPU's
memory.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

logger = logging.getLogger("ptychopinn")


def default_workers() -> int:
    """2 on a CPU-only machine with at least 2 cores, else 1 (a GPU is not shared between processes)."""
    from ptycho import backend

    return 2 if (os.cpu_count() or 1) >= 2 and not backend.has_accelerator() else 1


def run_jobs(function: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int, *,
             on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """[function(*job) for job in jobs], with up to `workers` jobs running at once.

    workers == 1 runs the jobs here, one after the other. Otherwise function must be importable
    by name and jobs and results picklable. on_result(index, result) is called in this process as
    each job finishes (in finishing order); the returned list is in job order. The first failing
    job's exception is raised here once the jobs running beside it have finished; jobs not yet
    started are cancelled.
    """
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")
    results: list[Any] = [None] * len(jobs)
    if workers == 1 or len(jobs) <= 1:
        for index, job in enumerate(jobs):
            results[index] = function(*job)
            if on_result is not None:
                on_result(index, results[index])
        return results

    workers = min(workers, len(jobs))
    n_threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    records = context.Queue()
    listener = logging.handlers.QueueListener(records, _HandleInParent())
    listener.start()
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(n_threads, records, logger.getEffectiveLevel())) as pool:
            pending = {pool.submit(function, *job): index for index, job in enumerate(jobs)}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        results[index] = future.result()
                        if on_result is not None:
                            on_result(index, results[index])
            except BaseException:
                pool.shutdown(cancel_futures=True)  # jobs not yet started never start
                raise
    finally:
        listener.stop()
        records.close()
    return results


def _start_worker(n_threads: int, records: Any, level: int) -> None:
    """Worker start: its TensorFlow thread count, and its log records sent to the parent."""
    worker_logger = logging.getLogger("ptychopinn")
    worker_logger.handlers = [logging.handlers.QueueHandler(records)]
    worker_logger.setLevel(level)
    worker_logger.propagate = False
    from ptycho import backend

    backend.configure_threads(n_threads)


class _HandleInParent(logging.Handler):
    """Hands a worker's log record to the parent's logger of the same name."""

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = f"[worker {record.process}] {record.msg}"
        logging.getLogger(record.name).handle(record)
