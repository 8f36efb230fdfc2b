"""Comparison study: PINN vs the supervised baseline vs pty-chi's iterative LSQML.

Scan with ground truth (simulated, or `data` with `data_has_truth`): the PINN and the supervised
model train with the same budget on the top half of the scan and reconstruct the held-out bottom half;
LSQML reconstructs the bottom half's data directly. All are scored against the truth in the held-out
region (`common.split_top_bottom`).

Measured scan without ground truth (`data`, e.g. the Siemens star): the patterns are cropped to the
central `real_n` pixels (`real_scan.crop_detector`) and optionally reduced to the `real_patterns`
most central ones. The PINN trains on the scan itself (self-supervised: no ground truth needed) and
reconstructs it. The supervised model needs ground truth, so it trains on a simulated twin (the
measured probe, dose, pattern count and scan step with a 'lines' object, `real_scan.simulated_twin`)
and is applied to the measured scan. LSQML starts from the measured probe rescaled to the data
(`lsqml.probe_on_data_scale`). Reported: FRC50/SSIM of each method against LSQML (registered) and
each method's data residual (`residual.poisson_deviance` with its object and probe: the PINN's probe,
the measured probe for the supervised model, LSQML's probe) on the patterns every reconstruction covers.

Data efficiency (`train_sizes`): PINN and supervised models trained on 256, 512, ... patterns of the
top half (those nearest the held-out half) of a simulated scan large enough for the largest size.

Outputs: results.json, results.md, comparison_<scan>.png, and data_efficiency.png with train_sizes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptycho import metrics
from ptycho.scan import ScanData
from ptycho.simulate import simulate

from . import figures, report
from .common import (
    aligned_crops,
    run_record,
    score,
    settings_dict,
    split_top_bottom,
    train_and_reconstruct,
    train_and_score,
    write_json,
)
from .config import CompareStudyConfig
from .lsqml import probe_on_data_scale, run_lsqml
from .real_scan import central_patterns, crop_detector, simulated_twin
from .residual import interior_patterns, poisson_deviance

OnRun = Callable[[dict[str, Any]], None]


def run_compare_study(config: CompareStudyConfig, output: Path, on_run: OnRun | None = None) -> dict[str, Any]:
    """Run the study into `output` (created); returns the results.json payload.

    on_run(record): called after each method with its `runs` entry (progress reporting).
    """
    config.validate()
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report_on = on_run or (lambda record: None)
    runs: list[dict[str, Any]] = []
    files = {"results": "results.json", "table": "results.md"}
    sections = []

    scans: list[tuple[str, ScanData, bool]] = [("simulated", simulate(config.simulation()), True)]
    if config.data is not None:
        from ptychopinn_plugin.convert import load_scan

        scans.append((Path(config.data).name.split(".")[0], load_scan(config.data), config.data_has_truth))
    for name, scan, has_truth in scans:
        figure = f"comparison_{name}.png"
        if has_truth:
            part, note = compare_with_truth(scan, name, config, output / figure, report_on)
        else:
            part, note = compare_measured(scan, name, config, output / figure, report_on)
        runs += part
        files[f"comparison_{name}"] = figure
        sections.append((f"{name}: comparison", note, part))

    if config.train_sizes:
        part = data_efficiency(config, report_on)
        runs += part
        files["data_efficiency"] = "data_efficiency.png"
        figures.data_efficiency(output / files["data_efficiency"], part)
        note = ("PINN and supervised models trained on the given numbers of top-half patterns, scored on the "
                "held-out bottom half.")
        sections.append(("simulated: data efficiency", note, part))

    payload = {"study": "compare", "settings": settings_dict(config), "runs": runs, "files": files,
               "total_seconds": round(time.perf_counter() - start, 1)}
    report.write_markdown(output / files["table"], "PINN vs supervised vs LSQML", sections)
    write_json(output / files["results"], payload)
    return payload


def compare_with_truth(scan: ScanData, name: str, config: CompareStudyConfig, figure: Path, on_run: OnRun
                       ) -> tuple[list[dict[str, Any]], str]:
    """PINN, supervised and LSQML on a scan with ground truth (held-out bottom half); returns (runs, note)."""
    split = split_top_bottom(scan)
    dose = scan.metadata.nphotons
    runs, objects = [], {}
    for method in ("pinn", "supervised"):
        record, trained = train_and_score(split, config.budget.training_config(scan.N, method, config.loss),
                                          scan=name, part="comparison")
        runs.append(record)
        objects[method] = trained.object
        on_run(record)
    if config.lsqml is not None:
        result = run_lsqml(split.test, config.lsqml)
        objects["lsqml"] = result.object
        runs.append(run_record("lsqml", loss=None, dose=dose, n_train=0, train_seconds=0.0,
                               reconstruct_seconds=result.seconds, scan=name, part="comparison",
                               n_test=split.test.n_patterns, epochs_run=config.lsqml.epochs,
                               process_seconds=round(result.process_seconds, 3),
                               **score(result.object, split.test.object, split.region)))
        on_run(runs[-1])
    aligned, truth = aligned_crops(objects, split.test.object, split.region)
    figures.method_comparison(figure, [("ground truth", truth)] + [
        (f"{r['method']}: amp/phase SSIM {r['amp_ssim']:.3f}/{r['phase_ssim']:.3f}", aligned[r["method"]])
        for r in runs], title=f"{name}: held-out bottom half ({split.test.n_patterns} patterns)")
    note = (f"Trained on the top half ({split.train.n_patterns} patterns), reconstructed the held-out bottom half "
            f"({split.test.n_patterns} patterns); scores against the ground truth in the held-out region. "
            "reconstruct s: PINN/supervised inference only (one call, XLA compilation included), LSQML epochs only.")
    return runs, note


def compare_measured(scan: ScanData, name: str, config: CompareStudyConfig, figure: Path, on_run: OnRun
                     ) -> tuple[list[dict[str, Any]], str]:
    """PINN, supervised (trained on a simulated twin) and LSQML on a measured scan; returns (runs, note)."""
    scan = crop_detector(scan, min(config.real_n, scan.N))
    if config.real_patterns is not None:
        scan = central_patterns(scan, config.real_patterns)
    dose = float(scan.counts_per_pattern.mean())
    region = metrics.covered_region(scan.positions, scan.N, scan.object.shape)
    pinn = train_and_reconstruct(scan, scan, config.budget.training_config(scan.N, "pinn", config.loss))
    twin = simulate(simulated_twin(scan, config.scan_seed, config.object_kind))
    supervised = train_and_reconstruct(twin, scan, config.budget.training_config(scan.N, "supervised"))
    interior = interior_patterns(scan, pinn.weights, supervised.weights)
    entries = [  # (method, object, probe for the data residual, run keys)
        ("pinn", pinn.object, pinn.probe,
         {"loss": config.loss, "n_train": scan.n_patterns, "trained_on": name,
          "train_seconds": pinn.train_seconds, "reconstruct_seconds": pinn.reconstruct_seconds}),
        ("supervised", supervised.object, scan.probe,
         {"loss": None, "n_train": twin.n_patterns, "trained_on": "simulated twin",
          "train_seconds": supervised.train_seconds, "reconstruct_seconds": supervised.reconstruct_seconds}),
    ]
    lsqml = None
    if config.lsqml is not None:
        lsqml = run_lsqml(scan, config.lsqml, initial_probe=probe_on_data_scale(scan))
        entries.append(("lsqml", lsqml.object, lsqml.probe,
                        {"loss": None, "n_train": 0, "train_seconds": 0.0, "reconstruct_seconds": lsqml.seconds,
                         "process_seconds": round(lsqml.process_seconds, 3)}))
    runs = []
    for method, obj, probe, timing in entries:
        versus = {}
        if lsqml is not None and method != "lsqml":
            versus = {f"{k}_vs_lsqml": v for k, v in score(obj, lsqml.object, region).items()}
        runs.append(run_record(method, dose=dose, scan=name, part="comparison", n_patterns=scan.n_patterns,
                               data_residual=poisson_deviance(scan, obj, probe, interior),
                               n_residual_patterns=len(interior), **timing, **versus))
        on_run(runs[-1])
    reference = "lsqml" if lsqml is not None else "pinn"
    objects = {method: obj for method, obj, _, _ in entries}
    aligned, _ = aligned_crops(objects, objects[reference], region)
    order = [reference] + [method for method in objects if method != reference]
    figures.method_comparison(figure, [(f"{m} (reference)" if m == reference else m, aligned[m]) for m in order],
                              title=f"{name}: {scan.n_patterns} patterns of {scan.N} x {scan.N}, "
                                    f"registered to {reference}")
    note = (f"Measured scan, no ground truth: patterns cropped to the central {scan.N} x {scan.N} pixels, "
            f"{scan.n_patterns} patterns, {dose:.3g} photons per pattern. The PINN trains on this scan itself; the "
            f"supervised model on a simulated twin ({twin.n_patterns} patterns, measured probe and dose). "
            "'vs LSQML': scores against the LSQML reconstruction (registered). data residual: mean Poisson "
            f"deviance per pixel of the measured counts (global scale fitted) over the {len(interior)} patterns "
            "every reconstruction covers.")
    return runs, note


def data_efficiency(config: CompareStudyConfig, on_run: OnRun) -> list[dict[str, Any]]:
    """PINN and supervised models trained on each of config.train_sizes patterns; returns their runs."""
    scan = simulate(config.simulation(max(config.n_images, 2 * max(config.train_sizes) + 2)))
    runs = []
    for size in sorted(config.train_sizes):
        split = split_top_bottom(scan, size)
        for method in ("pinn", "supervised"):
            record, _ = train_and_score(split, config.budget.training_config(scan.N, method, config.loss),
                                        scan="simulated", part="data_efficiency")
            runs.append(record)
            on_run(record)
    return runs

