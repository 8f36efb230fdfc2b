"""Dose-response study: does the Poisson NLL loss beat the amplitude MAE loss when photons are scarce?

One object and one scan are simulated at each dose (same seed: same object and positions, only the
Poisson noise differs). For every dose and loss a PINN is trained with the same budget on the top half
of the scan and reconstructs the held-out bottom half, scored against the ground truth there
(`common.split_top_bottom`). Expected physics: at low dose (few counts per pixel, where the median of
Poisson counts is far from their mean) NLL wins on SSIM and FRC50; at high dose the two agree.

Outputs in the study folder: results.json (`runs`: one entry per model; `contrast`: NLL minus MAE
per dose), dose_comparison.png, frc_vs_dose.png when more than two doses are studied, and
convergence.png when every epoch is scored (`DoseStudyConfig.epoch_scores`): a comparison made before
the models converge measures how fast each loss trains, not what it can resolve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.scan import ScanData
from ptycho.simulate import SimulationConfig, simulate

from . import figures
from .common import (
    METRIC_KEYS,
    aligned_crops,
    settings_dict,
    split_top_bottom,
    train_and_score,
    write_json,
)
from .config import LOSSES, DoseStudyConfig
from .workers import default_workers, run_jobs


def simulate_dose(config: DoseStudyConfig, dose: float) -> ScanData:
    """The study's scan at one dose (the object and positions do not depend on the dose)."""
    return simulate(SimulationConfig(object_kind=config.object_kind, N=config.N, n_images=config.n_images,
                                     step=config.step, nphotons=dose, seed=config.scan_seed))


def run_dose_study(config: DoseStudyConfig, output: Path,
                   on_run: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the study into `output` (created); returns the results.json payload.

    on_run(record): called after each model with its `runs` entry (progress reporting).
    """
    config.validate()
    if config.workers is None:
        config = replace(config, workers=default_workers())
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    doses = sorted(config.doses, reverse=True)
    keys = [(dose, loss) for dose in doses for loss in LOSSES]
    splits = {dose: split_top_bottom(simulate_dose(config, dose)) for dose in doses}
    jobs = [(splits[dose], config.budget.training_config(config.N, "pinn", loss)) for dose, loss in keys]
    results = run_jobs(partial(train_and_score, epoch_scores=config.epoch_scores), jobs, config.workers,
                       on_result=None if on_run is None else lambda _, result: on_run(result[0]))
    runs = [record for record, _ in results]
    objects = {key: trained.object for key, (_, trained) in zip(keys, results)}
    shown = {dose: (split.test.amplitudes[split.test.n_patterns // 2], {loss: objects[(dose, loss)] for loss in LOSSES})
             for dose, split in splits.items()}
    truth, region = splits[doses[0]].test.object, splits[doses[0]].region  # the same at every dose (same seed)

    paths = {"results": "results.json", "dose_comparison": "dose_comparison.png"}
    _comparison_figure(output / paths["dose_comparison"], config, shown, truth, region, runs)
    if len(doses) > 2:
        paths["frc_vs_dose"] = "frc_vs_dose.png"
        figures.frc_vs_dose(output / paths["frc_vs_dose"], runs)
    if config.epoch_scores:
        paths["convergence"] = "convergence.png"
        figures.convergence(output / paths["convergence"], runs)
    payload = {
        "study": "dose",
        "settings": settings_dict(config),
        "runs": runs,
        "contrast": nll_minus_mae(runs),
        "files": paths,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    write_json(output / paths["results"], payload)
    return payload


def nll_minus_mae(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dose, each score of the NLL model minus that of the MAE model (> 0: NLL is better)."""
    by_key = {(r["dose"], r["loss"]): r for r in runs}
    contrast = []
    for dose in sorted({r["dose"] for r in runs}, reverse=True):
        if (dose, "nll") in by_key and (dose, "mae") in by_key:
            nll, mae = by_key[(dose, "nll")], by_key[(dose, "mae")]
            contrast.append({"dose": dose, **{k: round(nll[k] - mae[k], 4) for k in METRIC_KEYS}})
    return contrast


def _comparison_figure(path: Path, config: DoseStudyConfig, shown: dict, truth: np.ndarray,
                       region: tuple[slice, slice], runs: list[dict[str, Any]]) -> None:
    """dose_comparison.png: the highest and the lowest dose, each with both losses' reconstructions."""
    key = "phase_ssim" if config.show == "phase" else "amp_ssim"
    ssim = {(r["dose"], r["loss"]): r[key] for r in runs}
    extremes = (max(shown), min(shown))
    images = {f"{dose}|{loss}": obj for dose in extremes for loss, obj in shown[dose][1].items()}
    aligned, reference = aligned_crops(images, truth, region)
    reference_channel = figures.channel(reference, config.show)
    rows = [[(f"{loss.upper()} loss, {dose:.0e} ph\n{config.show} SSIM {ssim[(dose, loss)]:.3f}",
              aligned[f"{dose}|{loss}"]) for loss in LOSSES] for dose in extremes]
    patterns = [(f"diffraction, {dose:.0e} photons", shown[dose][0]) for dose in extremes]
    figures.dose_comparison(path, patterns, rows, config.show,
                            (float(reference_channel.min()), float(reference_channel.max())))
