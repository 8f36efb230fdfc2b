"""What both studies share: the held-out split, timed training and reconstruction, scoring, run
records, registered crops for figures and the atomic results.json.

Held-out evaluation: a scan is split at the median row of its positions; models train on the top half
(y < median) and reconstruct the bottom half. Scores are taken in the bottom half's covered region
(`ptycho.metrics.covered_region`: the box that the patches' central parts cover completely) minus
every row a training patch touches, so no scored pixel was ever illuminated in the training data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptycho import metrics
from ptycho.atomic import atomic_output
from ptycho.config.config import TrainingConfig
from ptycho.scan import ScanData

logger = logging.getLogger("ptychopinn")

METRIC_KEYS = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "amp_frc50", "phase_frc50")
"""The scores every run with ground truth carries (SSIM, PSNR in dB, FRC50 as a fraction of Nyquist)."""

MIN_REGION_ROWS = 24
"""Fewest rows a held-out region may have (registration crops a few pixels, SSIM needs 7, FRC some rings)."""


@dataclass
class HeldOutSplit:
    """train: the top-half scan; test: the bottom-half scan; region: (rows, cols) slices of the scored
    held-out region on the object grid."""

    train: ScanData
    test: ScanData
    region: tuple[slice, slice]


def split_top_bottom(scan: ScanData, n_train: int | None = None) -> HeldOutSplit:
    """Split at the median row: train on y < median (at most n_train patterns, those nearest the
    bottom half first), test on the rest; the region excludes rows touched by training patches.

    Raises ValueError when the scan is too small to leave MIN_REGION_ROWS held-out rows.
    """
    if scan.object is None:
        raise ValueError(f"{scan.source}: 'objectGuess': the held-out split needs the object grid")
    order = np.argsort(scan.y, kind="stable")
    half = scan.n_patterns // 2
    top, bottom = order[:half], order[half:]
    if n_train is not None:
        if n_train > len(top):
            raise ValueError(f"{scan.source}: {n_train} training patterns requested, the top half has {len(top)}")
        top = top[len(top) - n_train:]
    train, test = scan.subset(np.sort(top)), scan.subset(np.sort(bottom))
    rows, cols = metrics.covered_region(test.positions, scan.N, scan.object.shape)
    first_unseen = math.ceil(scan.y[order[:half]].max() + scan.N / 2)  # below every training patch
    rows = slice(max(rows.start, first_unseen), rows.stop)
    if rows.stop - rows.start < MIN_REGION_ROWS:
        raise ValueError(f"{scan.source}: the held-out region has {rows.stop - rows.start} rows (< {MIN_REGION_ROWS}) "
                         f"below the training patches; simulate more positions (n_images)")
    return HeldOutSplit(train, test, (rows, cols))


@dataclass
class TrainedRun:
    """A trained model's reconstruction of a scan: object complex64 (H, W) on the scan's object grid,
    weights float64 (H, W) coverage, probe complex64 (N, N) and intensity scale of the model (the
    predicted amplitude is intensity_scale * |F(probe * patch)|), wall times in seconds, when asked
    for, the scores of the model after each epoch (see `train_and_reconstruct`), and the model."""

    object: np.ndarray
    weights: np.ndarray
    probe: np.ndarray
    intensity_scale: float
    train_seconds: float
    reconstruct_seconds: float
    epochs_run: int
    epoch_scores: list[dict[str, float]] = field(default_factory=list)
    model: Any = field(default=None, repr=False)  # the TrainedModel with keep_model (not picklable)


def train_and_reconstruct(train_scan: ScanData, test_scan: ScanData, config: TrainingConfig, *,
                          score_epochs: Callable[[np.ndarray], dict[str, float]] | None = None,
                          scored_epochs: Collection[int] | None = None, keep_model: bool = False,
                          symmetry_average: bool = False) -> TrainedRun:
    """Train on one scan, reconstruct another on its object grid.

    reconstruct_seconds is the whole inference call (grouping, network, stitching), including the
    XLA compilation of the network's prediction function on the model's first reconstruction.

    score_epochs(object) -> scores: when given, the model reconstructs the test scan at the end of
    each epoch in `scored_epochs` (default: every epoch) and is scored: TrainedRun.epoch_scores =
    [{'epoch': e, **scores}, ...], each also logged as it is made. An epoch whose reconstruction
    cannot be scored (an early model too poor to register to the truth: score_epochs raises
    ValueError) gets None scores. The scoring time is left out of train_seconds.
    keep_model: also return the TrainedModel (TrainedRun.model); off by default, because the studies'
    worker processes pickle their TrainedRun and a Keras model cannot be pickled.
    symmetry_average: every reconstruction averages over the probe's symmetries (`reconstruct`).
    """
    from ptycho.inference import reconstruct
    from ptycho.training import EpochReport, train

    grid = (test_scan.object.shape, (0.0, 0.0))
    options = {"grid": grid, "symmetry_average": symmetry_average}
    epoch_scores: list[dict[str, Any]] = []
    scoring_seconds = 0.0

    def score_epoch(report: EpochReport) -> None:
        nonlocal scoring_seconds
        if scored_epochs is not None and report.epoch not in scored_epochs:
            return
        start = time.perf_counter()
        scores = _scores_or_none(score_epochs, reconstruct(report.model, test_scan, **options).object)
        epoch_scores.append({"epoch": report.epoch, **scores})
        scoring_seconds += time.perf_counter() - start
        logger.info("epoch %d held-out scores: %s", report.epoch, json.dumps(epoch_scores[-1]))

    model = train(train_scan, config, on_epoch=score_epoch if score_epochs is not None else None)
    result = reconstruct(model, test_scan, **options)
    return TrainedRun(object=result.object, weights=result.weights, probe=model.probe,
                      intensity_scale=model.intensity_scale,
                      train_seconds=float(model.summary["train_seconds"]) - scoring_seconds,
                      reconstruct_seconds=float(result.timings["total_seconds"]),
                      epochs_run=int(model.summary["epochs_run"]), epoch_scores=epoch_scores,
                      model=model if keep_model else None)


def _scores_or_none(scorer: Callable[[np.ndarray], dict[str, float]], obj: np.ndarray) -> dict[str, float | None]:
    """scorer(obj), or None for every score where it raises ValueError (logged)."""
    try:
        return scorer(obj)
    except ValueError as error:  # e.g. metrics.align: no overlap left after registration
        logger.info("epoch not scored: %s", error)
        return dict.fromkeys(METRIC_KEYS)


def train_and_score(split: HeldOutSplit, config: TrainingConfig, *, epoch_scores: bool | Collection[int] = False,
                    keep_model: bool = False, symmetry_average: bool = False,
                    **extra: Any) -> tuple[dict[str, Any], TrainedRun]:
    """Train on split.train, reconstruct split.test, score in split.region against the truth.

    epoch_scores: also score the model after every epoch (True) or after the epochs given (the
    record's `epoch_scores`, a list of {'epoch': e, **METRIC_KEYS}; a last epoch's entry equals the
    record's own scores).
    symmetry_average: reconstruct with the average over the probe's symmetries (`reconstruct`).
    Returns (the run's `runs` entry, with `extra` keys added; the TrainedRun).
    """
    def held_out_scores(obj: np.ndarray) -> dict[str, float]:
        return score(obj, split.test.object, split.region)

    scored_epochs = None if isinstance(epoch_scores, bool) else set(epoch_scores)
    trained = train_and_reconstruct(split.train, split.test, config,
                                    score_epochs=held_out_scores if epoch_scores else None,
                                    scored_epochs=scored_epochs, keep_model=keep_model,
                                    symmetry_average=symmetry_average)
    method = config.model.model_type
    loss = None if method != "pinn" else ("nll" if config.nll_weight > 0 else "mae")
    record = run_record(method, loss=loss, dose=split.test.metadata.nphotons, n_train=split.train.n_patterns,
                        train_seconds=trained.train_seconds, reconstruct_seconds=trained.reconstruct_seconds,
                        **extra, n_test=split.test.n_patterns, epochs_run=trained.epochs_run,
                        **held_out_scores(trained.object))
    if epoch_scores:
        record["epoch_scores"] = trained.epoch_scores
    return record, trained


def score(obj: np.ndarray, reference: np.ndarray, region: tuple[slice, slice]) -> dict[str, float]:
    """METRIC_KEYS of a complex (H, W) reconstruction against a complex (H, W) reference in a region."""
    scores = metrics.evaluate(obj, reference, region=region)
    return {key: float(scores[key]) for key in METRIC_KEYS}


def run_record(method: str, *, loss: str | None, dose: float | None, n_train: int, train_seconds: float,
               reconstruct_seconds: float, **extra: Any) -> dict[str, Any]:
    """One entry of results.json's `runs` (extra keys: scores, scan name, ...)."""
    return {"method": method, "loss": loss, "dose": dose, "n_train": int(n_train),
            "train_seconds": round(float(train_seconds), 3),
            "reconstruct_seconds": round(float(reconstruct_seconds), 3),
            **extra}


def aligned_crops(images: dict[str, np.ndarray], reference: np.ndarray, region: tuple[slice, slice]
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Register each complex (H, W) image to the reference inside the region (`metrics.align`: shift,
    phase offset, amplitude scale) and centre-crop all to one shape, so they overlay pixel for pixel.

    Returns ({name: aligned complex128 (h, w)}, reference cropped the same way).
    """
    aligned, crops = {}, []
    for name, image in images.items():
        recon, truth, _ = metrics.align(image[region], reference[region])
        aligned[name] = recon
        crops.append(truth)
    if not crops:
        return {}, reference[region]
    h = min(c.shape[0] for c in crops)
    w = min(c.shape[1] for c in crops)

    def centre(image: np.ndarray) -> np.ndarray:
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        return image[top:top + h, left:left + w]

    # every crop is the region less a symmetric margin, so equal-size centre crops coincide
    return {name: centre(image) for name, image in aligned.items()}, centre(crops[0])


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write payload as indented JSON atomically; NaN/inf are refused (every number must be finite)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def settings_dict(*configs: Any) -> dict[str, Any]:
    """Merge dataclass settings into one JSON-friendly dict (tuples -> lists, paths -> strings)."""
    merged: dict[str, Any] = {}
    for config in configs:
        for key, value in asdict(config).items():
            merged[key] = str(value) if isinstance(value, os.PathLike) else value
    return merged
