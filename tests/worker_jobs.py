"""Jobs for the tests of `ptychopinn_plugin.studies.workers` (importable by name in a spawned worker)."""

from __future__ import annotations

import logging
import os


def describe_worker(job: int) -> tuple[int, int, int]:
    """Logs the job; returns (process id, TensorFlow intra-op threads, 2 * job)."""
    import tensorflow as tf

    logging.getLogger("ptychopinn").info("job %d ran", job)
    return os.getpid(), tf.config.threading.get_intra_op_parallelism_threads(), 2 * job


def fail(job: int) -> None:
    raise ValueError(f"job {job} failed")
