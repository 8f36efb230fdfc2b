"""The iterative reference: pty-chi's LSQML engine on a ScanData (optional extra `ptychopinn[compare]`).

Convention bridge (ours: docs/conventions.md; pty-chi 2.x: its `ptychi.api` source):
- data: pty-chi wants measured INTENSITIES (counts), not amplitudes; ours have zero frequency at the
  centre, so pty-chi's `fft_shift=True` moves it to the corner where its unshifted FFT puts it;
- far field: pty-chi propagates with an unnormalised FFT, ours with norm='ortho', so for N x N
  patterns its probe is ours / N (and ours is its probe * N);
- positions: pty-chi takes (y, x) relative to an origin pixel of the object buffer and its patch of
  position p starts at p - (N - 1) / 2; ours (x, y) start at x - N/2, i.e. pty-chi's buffer position is
  ours - 0.5. We give positions relative to the object centre (x - W/2, y - H/2) and the origin
  (H/2 - 0.5, W/2 - 0.5) explicitly (`SPECIFIED`), so the result lies on the scan's own object grid;
- LSQML's first epoch rescales the probe to the data unless told not to: we switch that off and pass
  a probe on the data's scale (a simulated scan's true probe, or `probe_on_data_scale` for a measured
  probe estimate of arbitrary scale).

Process isolation: pty-chi imports torchvision, which loads Triton's LLVM-based library; loading that
after TensorFlow in one process crashes it (segmentation fault, torch 2.14.1 / triton 3.8 /
TensorFlow 2.21). So `run_lsqml` runs pty-chi in a child Python process (`lsqml_worker`), exchanging
arrays through NPZ files in a temporary folder; this process never imports PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ptycho.scan import ScanData

NOISE_MODELS = ("gaussian", "poisson")
WORKER = "ptychopinn_plugin.studies.lsqml_worker"
"""The child process's module (run as `python -m WORKER REQUEST.npz RESULT.npz`)."""


def ptychi_available() -> bool:
    """True when pty-chi (and so PyTorch) can be imported."""
    return importlib.util.find_spec("ptychi") is not None


@dataclass
class LsqmlSettings:
    """LSQML run.

    epochs: LSQML epochs (each visits every pattern once); batch_size: patterns per update.
    refine_probe: also update the probe (from the second epoch on); else the probe stays fixed.
    noise_model: 'gaussian' (amplitude least squares, PtychoShelves' default) or 'poisson'.
    device: 'cpu', 'gpu' or 'auto' (a GPU when PyTorch sees one).
    seed: seed of pty-chi's random batching.
    """

    epochs: int = 50
    batch_size: int = 64
    refine_probe: bool = False
    noise_model: str = "gaussian"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> LsqmlSettings:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"LsqmlSettings.epochs: expected an integer >= 1, got {self.epochs!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"LsqmlSettings.batch_size: expected an integer >= 1, got {self.batch_size!r}")
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(f"LsqmlSettings.noise_model: expected one of {NOISE_MODELS}, got {self.noise_model!r}")
        if self.device not in ("cpu", "gpu", "auto"):
            raise ValueError(f"LsqmlSettings.device: expected 'cpu', 'gpu' or 'auto', got {self.device!r}")
        return self


@dataclass
class LsqmlResult:
    """object: complex64 (H, W) on the scan's object grid; probe: complex64 (N, N) in OUR convention
    (expected counts = |fftshift(fft2(probe * patch, norm='ortho'))|^2); seconds: wall time of the
    LSQML epochs; build_seconds: building pty-chi's task (data to tensors); process_seconds: the whole
    child process (Python and PyTorch start-up, file exchange, build and epochs)."""

    object: np.ndarray
    probe: np.ndarray
    seconds: float
    build_seconds: float
    process_seconds: float


def probe_on_data_scale(scan: ScanData) -> np.ndarray:
    """The scan's probe rescaled so a unit-transmission object explains the mean counts per pattern.

    complex64 (N, N): probe * sqrt(mean counts per pattern / sum |probe|^2). A simulated probe is
    already on this scale up to the object's mean transmission; a measured probe estimate (arbitrary
    scale, e.g. the Siemens star's) gets its scale here.
    """
    energy = float(np.sum(np.abs(scan.probe.astype(np.complex128)) ** 2))
    if not energy > 0:
        raise ValueError(f"{scan.source}: 'probeGuess': the probe is zero everywhere")
    return (scan.probe * math.sqrt(float(scan.counts_per_pattern.mean()) / energy)).astype(np.complex64)


def to_ptychi_positions(positions: np.ndarray, object_shape: tuple[int, int]) -> tuple[np.ndarray, list[float]]:
    """Our (n, 2) (x, y) object-pixel positions -> (pty-chi (n, 2) (y, x) positions, origin [y, x]).

    pty-chi's buffer position is origin + position; it must equal ours - 0.5 (see the module docstring).
    """
    h, w = object_shape
    relative = np.stack([positions[:, 1] - h / 2, positions[:, 0] - w / 2], axis=1)
    return relative, [h / 2 - 0.5, w / 2 - 0.5]


def run_lsqml(scan: ScanData, settings: LsqmlSettings, *, object_shape: tuple[int, int] | None = None,
              initial_probe: np.ndarray | None = None) -> LsqmlResult:
    """Reconstruct a scan with pty-chi's LSQML from a unit object (ones), in a child process.

    object_shape: (H, W) of the object buffer, default the scan's object grid (positions are on it).
    initial_probe: complex (N, N) in our convention on the data's scale, default the scan's probe
        (right for simulated scans; use `probe_on_data_scale(scan)` for a probe of arbitrary scale).
    Raises ModuleNotFoundError (naming the extra to install) when pty-chi is missing and RuntimeError
    with the child's last output lines when it fails.
    """
    settings.validate()
    if not ptychi_available():
        raise ModuleNotFoundError("pty-chi is not installed: pip install 'ptychopinn[compare]'", name="ptychi")
    if object_shape is None:
        if scan.object is None:
            raise ValueError(f"{scan.source}: 'objectGuess': no object grid; pass object_shape")
        object_shape = scan.object.shape
    object_shape = (int(object_shape[0]), int(object_shape[1]))
    probe = scan.probe if initial_probe is None else np.asarray(initial_probe, np.complex64)
    if probe.shape != (scan.N, scan.N):
        raise ValueError(f"initial_probe: expected shape ({scan.N}, {scan.N}), got {probe.shape}")
    positions, origin = to_ptychi_positions(scan.positions, object_shape)
    with tempfile.TemporaryDirectory(prefix="ptychopinn-lsqml-") as folder:
        request, result = Path(folder) / "request.npz", Path(folder) / "result.npz"
        np.savez(request, counts=np.square(scan.amplitudes, dtype=np.float32), positions_yx=positions,
                 origin_yx=np.asarray(origin), probe=(probe / scan.N).astype(np.complex64),
                 object_shape=np.asarray(object_shape), settings=np.asarray(json.dumps(asdict(settings))))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", WORKER, str(request), str(result)], capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"pty-chi LSQML failed (exit status {done.returncode}):\n{tail}")
        with np.load(result, allow_pickle=False) as out:
            return LsqmlResult(object=out["object"].astype(np.complex64),
                               probe=(out["probe"] * scan.N).astype(np.complex64),
                               seconds=float(out["seconds"]), build_seconds=float(out["build_seconds"]),
                               process_seconds=wall)
