"""Reconstruction quality of PINN and supervised models against ground truth; prints JSON.

On a standard simulated scan (N=64, 'lines' object, 1e9 photons per pattern, from our simulator) and
on the independent simulator's `../shared/data/lines-1e9.npz`: train on the top half of the scan
(positions above the median row; at most --n-train patterns), reconstruct the bottom half, for each
gridsize and model type with the same training budget (epochs, batch size), and score amplitude and
phase (SSIM, PSNR, FRC50 as a fraction of Nyquist) in the bottom half's scanned region.

Targets (see the project's issue): PINN gridsize 2 amplitude and phase SSIM >= 0.90; gridsize 2
better than gridsize 1; PINN better than the supervised baseline at 512 training patterns.

    python bench/quality.py [--datasets simulated,shared] [--epochs 60] [--n-train 512]
    KERAS_BACKEND=jax python bench/quality.py ...    # the same model on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ptycho import metrics
from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.inference import reconstruct
from ptycho.npz_io import load_scan_npz
from ptycho.scan import ScanData
from ptycho.simulate import SimulationConfig, simulate
from ptycho.training import train

SHARED = Path(os.environ.get("PTYCHOPINN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_dataset(name: str, n_images: int) -> ScanData:
    if name == "simulated":
        return simulate(SimulationConfig(object_kind="lines", N=64, n_images=n_images, step=6.0, nphotons=1e9, seed=0))
    if name == "shared":
        return load_scan_npz(SHARED / "lines-1e9.npz")
    raise SystemExit(f"unknown dataset {name!r}")


def split_halves(scan: ScanData, n_train: int) -> tuple[ScanData, ScanData]:
    """Top half (at most n_train patterns, nearest the top first) for training, bottom half for testing."""
    order = np.argsort(scan.y, kind="stable")
    half = len(order) // 2
    top, bottom = order[:half], order[half:]
    return scan.subset(np.sort(top[-n_train:])), scan.subset(np.sort(bottom))


def run_one(train_scan: ScanData, test_scan: ScanData, model_type: str, gridsize: int, args) -> dict:
    config = TrainingConfig(model=ModelConfig(N=train_scan.N, gridsize=gridsize, n_filters_scale=args.n_filters_scale,
                                              model_type=model_type),
                            nepochs=args.epochs, batch_size=args.batch_size, seed=0)
    model = train(train_scan, config)
    start = time.perf_counter()
    result = reconstruct(model, test_scan, grid=(test_scan.object.shape, (0.0, 0.0)))
    seconds = time.perf_counter() - start
    region = metrics.covered_region(test_scan.positions, test_scan.N, test_scan.object.shape)
    scores = metrics.evaluate(result.object, test_scan.object, region=region)
    keys = ("amp_ssim", "phase_ssim", "amp_psnr", "phase_psnr", "amp_frc50", "phase_frc50")
    return {"model": model_type, "gridsize": gridsize, "n_train": train_scan.n_patterns,
            "n_test": test_scan.n_patterns, "epochs_run": model.summary["epochs_run"],
            "train_seconds": round(model.summary["train_seconds"], 1), "reconstruct_seconds": round(seconds, 2),
            **{k: round(scores[k], 4) for k in keys}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="simulated,shared")
    parser.add_argument("--models", default="pinn,supervised")
    parser.add_argument("--gridsizes", default="1,2")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-images", type=int, default=1100, help="simulated scan size")
    parser.add_argument("--n-filters-scale", type=int, default=2)
    args = parser.parse_args(argv)
    import keras

    report = {"benchmark": "quality", "backend": keras.backend.backend(), "epochs": args.epochs,
              "batch_size": args.batch_size, "n_filters_scale": args.n_filters_scale, "runs": []}
    for dataset in args.datasets.split(","):
        train_scan, test_scan = split_halves(load_dataset(dataset, args.n_images), args.n_train)
        for gridsize in (int(g) for g in args.gridsizes.split(",")):
            for model_type in args.models.split(","):
                run = {"dataset": dataset, **run_one(train_scan, test_scan, model_type, gridsize, args)}
                report["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
