"""The probe guess of the Ptychodus 1.7 compatibility facade (TensorFlow-free).

Legacy PtychoPINN kept the probe in global state; here it is recorded in `ptycho.params.cfg['probe']`.
Inference does not read it: a trained model carries its own probe (`ptycho.bundle`).
"""

from __future__ import annotations

import numpy as np

from ptycho import params
from ptycho.scan import first_probe_mode


def set_probe_guess(X_train: np.ndarray | None = None,
                    probe_guess: np.ndarray | None = None) -> np.ndarray:
    """Record the probe guess: complex (N, N) or (modes, N, N) (first mode kept); returns it (N, N).

    X_train: accepted for compatibility and ignored (legacy PtychoPINN could estimate a probe from the
    data; this facade needs the probe itself).
    """
    if probe_guess is None:
        raise ValueError("set_probe_guess: probe_guess: expected a complex (N, N) probe, got None")
    probe = first_probe_mode(probe_guess, "set_probe_guess", "probe_guess")
    params.cfg["probe"] = probe
    return probe


def get_probe_guess() -> np.ndarray:
    """The probe recorded by `set_probe_guess`, complex64 (N, N); KeyError when none was set."""
    return params.get("probe")
