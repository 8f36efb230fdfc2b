"""The few backend-specific helpers. Everything else uses `keras.ops` only.

TensorFlow is the default Keras backend; JAX and PyTorch branches exist so the same model runs there
(GPU checks run with KERAS_BACKEND=jax).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np


def name() -> str:
    return keras.backend.backend()


def compile_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile a function of tensors with XLA on TensorFlow/JAX; eager on PyTorch."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def has_accelerator() -> bool:
    """Whether the backend computes on a GPU (or another accelerator) rather than the CPU."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() != "cpu"
    import torch

    return bool(torch.cuda.is_available())


def configure_threads(n_threads: int | None = None) -> None:
    """Use all cores for intra-op parallelism (TensorFlow defaults are fine elsewhere)."""
    if name() != "tensorflow":
        return
    import tensorflow as tf

    n = n_threads or os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, n)))
    except RuntimeError:
        pass  # already initialised: keep the existing setting


def to_numpy(x: Any) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
