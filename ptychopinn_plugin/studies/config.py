"""The studies' settings: the training budget and the studies' scales.

Light to import (no TensorFlow, PyTorch, scikit-image or matplotlib), so the CLI takes its defaults
from here without importing the studies' numerical code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ptycho.config.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.simulate import SimulationConfig

from .lsqml import LsqmlSettings

LOSSES = ("nll", "mae")
"""The PINN's losses: Poisson negative log-likelihood of counts, mean absolute error of amplitudes."""
SHOW = ("amplitude", "phase")
"""What a figure can show of a complex reconstruction."""


@dataclass
class TrainingBudget:
    """The training budget every trained model of a study gets (same data, same budget).

    The studies' defaults spend it on many patterns, few epochs and small batches: on a 'lines' scan
    (N=32, same cost) 2400 training patterns x 5 epochs reach held-out phase SSIM 0.93, 600 x 20 only
    0.68; batches of 8 groups instead of 16 (twice the steps at about the same cost on a CPU) raise
    held-out amplitude SSIM from 0.42 to 0.57 at 1e9 photons (batches of 4 cost 50 % more and fit worse).

    gridsize: patterns per group side (groups hold gridsize**2); n_filters_scale: network width;
    epochs, batch_size (groups per step), learning_rate: the optimiser; seed: weights and batching.
    """

    gridsize: int = 2
    n_filters_scale: int = 1
    epochs: int = 5
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 0

    def training_config(self, N: int, model_type: str = "pinn", loss: str = "nll") -> TrainingConfig:
        """A validated TrainingConfig for N x N patterns; loss 'nll' or 'mae' (PINN only)."""
        if loss not in LOSSES:
            raise ConfigError(f"loss: expected one of {LOSSES}, got {loss!r}")
        config = TrainingConfig(
            model=ModelConfig(N=N, gridsize=self.gridsize, n_filters_scale=self.n_filters_scale,
                              model_type=model_type),
            nepochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
            nll_weight=1.0 if loss == "nll" else 0.0, mae_weight=1.0 if loss == "mae" else 0.0)
        return config.validate()


DOSE_STUDY_EPOCHS = 11
"""The dose study's default epochs: by then both losses have converged at 1e4 photons (held-out scores
after each epoch, docs/studies.md). Before that the study measures how fast each loss trains."""


@dataclass
class DoseStudyConfig:
    """Scale of the dose study.

    doses: photons per pattern (mean total counts), at least two; the figure contrasts the highest
    and the lowest. N, n_images, step (object pixels), object_kind, scan_seed: the simulated scan.
    budget: the training budget of every model. show: 'phase' or 'amplitude' in dose_comparison.png.
    epoch_scores: also score every model after each epoch on the held-out half (results.json
    `epoch_scores` per run, and convergence.png); costs one reconstruction per epoch and model.
    workers: models trained at once, each in its own process with cpu_count // workers TensorFlow
    threads (`workers.run_jobs`); 1 trains them one after the other in this process; None: 2 on a
    CPU-only machine with at least 2 cores, else 1 (`workers.default_workers`).
    """

    doses: tuple[float, ...] = (1e9, 1e4)
    N: int = 32
    n_images: int = 4800
    step: float = 3.0
    object_kind: str = "lines"
    scan_seed: int = 0
    show: str = "phase"
    budget: TrainingBudget = field(default_factory=lambda: TrainingBudget(epochs=DOSE_STUDY_EPOCHS))
    epoch_scores: bool = False
    workers: int | None = None

    def validate(self) -> DoseStudyConfig:
        if len(self.doses) < 2 or len(set(self.doses)) != len(self.doses):
            raise ValueError(f"doses: expected at least two different doses, got {list(self.doses)}")
        if not all(math.isfinite(d) and d > 0 for d in self.doses):
            raise ValueError(f"doses: expected positive photons per pattern, got {list(self.doses)}")
        if self.show not in SHOW:
            raise ValueError(f"show: expected one of {SHOW}, got {self.show!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers: expected at least 1, got {self.workers}")
        return self


@dataclass
class CompareStudyConfig:
    """Scale of the comparison study.

    Simulated scan: N, n_images, step (object pixels), dose (photons per pattern), object_kind,
    scan_seed. budget: every trained model's budget; loss: the PINN's loss ('nll' or 'mae').
    lsqml: LSQML settings, or None to skip LSQML. data: a scan file (any `load_scan` input) compared
    as well; data_has_truth: its object is ground truth (else it is treated as measured, see the
    module docstring); real_n: detector crop of a measured scan (pattern side); real_patterns: keep
    only this many central patterns (None: all). train_sizes: data-efficiency sizes (empty: skip).
    """

    N: int = 32
    n_images: int = 4800
    step: float = 3.0
    dose: float = 1e6
    object_kind: str = "lines"
    scan_seed: int = 0
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    loss: str = "nll"
    lsqml: LsqmlSettings | None = field(default_factory=LsqmlSettings)
    data: Path | None = None
    data_has_truth: bool = False
    real_n: int = 64
    real_patterns: int | None = None
    train_sizes: tuple[int, ...] = ()

    def validate(self) -> CompareStudyConfig:
        if self.lsqml is not None:
            self.lsqml.validate()
        if any(size < 1 for size in self.train_sizes):
            raise ValueError(f"train_sizes: expected positive pattern counts, got {list(self.train_sizes)}")
        if self.real_patterns is not None and self.real_patterns < 2:
            raise ValueError(f"real_patterns: expected at least 2 patterns, got {self.real_patterns}")
        self.budget.training_config(self.N, "pinn", self.loss)  # raises for a bad budget or loss
        return self

    def simulation(self, n_images: int | None = None) -> SimulationConfig:
        return SimulationConfig(object_kind=self.object_kind, N=self.N, n_images=n_images or self.n_images,
                                step=self.step, nphotons=self.dose, seed=self.scan_seed)
