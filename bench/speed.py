"""Training and inference speed on this machine; prints JSON.

For N=64, n_filters_scale 2, batch 16 and each gridsize (and network layout, for gridsize > 1) and
decoder block:
training patterns/s (patterns = groups x C, measured on the second epoch, after compilation),
inference patterns/s predict-only and end-to-end (grouping + prediction + stitching + writing the
product file), time from process start to the first training step (in a fresh child process running
`ptychopinn train`), grouping of 100,000 positions, and peak resident memory.

    python bench/speed.py [--n-images 1024] [--gridsizes 1,2] [--layouts per_pattern,stacked]
        [--decoder-blocks conv_upsample,upsample_conv]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.grouping import group_positions
from ptycho.inference import reconstruct
from ptycho.npz_io import save_scan_npz
from ptycho.simulate import SimulationConfig, simulate
from ptycho.training import train
from ptychopinn_plugin.reconstruction_files import write_reconstruction


def training_speed(scan, gridsize: int, n_filters_scale: int, layout: str, block: str) -> tuple[dict, object]:
    epochs: list[float] = []
    config = TrainingConfig(model=ModelConfig(N=scan.N, gridsize=gridsize, n_filters_scale=n_filters_scale,
                                              network_layout=layout, decoder_block=block),
                            nepochs=2, batch_size=16, validation_fraction=0.0)
    model = train(scan, config, on_epoch=lambda report: epochs.append(report.seconds))
    patterns = model.summary["n_train_groups"] * gridsize * gridsize
    return {"train_patterns_per_second": round(patterns / epochs[-1], 1),
            "train_groups_per_second": round(model.summary["n_train_groups"] / epochs[-1], 1),
            "first_epoch_seconds": round(epochs[0], 1)}, model


def inference_speed(model, scan, out_dir: Path) -> dict:
    reconstruct(model, scan.subset(np.arange(64)))  # compile outside the timing
    start = time.perf_counter()
    result = reconstruct(model, scan)
    write_reconstruction(out_dir / "speed.h5", scan, result.object, result.weights)
    end_to_end = time.perf_counter() - start
    return {"infer_predict_only_patterns_per_second": round(scan.n_patterns / result.timings["predict_seconds"], 1),
            "infer_end_to_end_patterns_per_second": round(scan.n_patterns / end_to_end, 1)}


def first_step_seconds(data: Path, out_dir: Path, gridsize: int, layout: str, block: str) -> float:
    """Seconds from launching `ptychopinn train` in a fresh process to its first finished training step."""
    code = ("import time, sys; t0 = float(sys.argv[1]);"
            "from ptychopinn_plugin.cli import main;"
            "import ptycho.training as tr;"
            "orig = tr.ProgressCallback.on_train_batch_end\n"
            "def hook(self, batch, logs=None):\n"
            "    if self.first_step_seconds is None: print('FIRST_STEP', time.time() - t0, flush=True)\n"
            "    orig(self, batch, logs)\n"
            "tr.ProgressCallback.on_train_batch_end = hook\n"
            "main(sys.argv[2:])")
    args = [sys.executable, "-c", code, repr(time.time()), "train", str(data), "-o", str(out_dir / "first"),
            "--gridsize", str(gridsize), "--epochs", "1", "--network-layout", layout, "--decoder-block", block]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("FIRST_STEP")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=1024)
    parser.add_argument("--gridsizes", default="1,2")
    parser.add_argument("--n-filters-scale", type=int, default=2)
    parser.add_argument("--layouts", default="per_pattern,stacked",
                        help="network layouts measured for gridsize > 1 (ModelConfig.network_layout)")
    parser.add_argument("--decoder-blocks", default=ModelConfig.decoder_block,
                        help="decoder blocks measured (ModelConfig.decoder_block), e.g. conv_upsample,upsample_conv")
    args = parser.parse_args(argv)
    scan = simulate(SimulationConfig(N=64, n_images=args.n_images, step=6.0, nphotons=1e6, seed=0))
    report: dict = {"benchmark": "speed", "cpu_count": os.cpu_count(), "N": 64, "batch_size": 16,
                    "n_filters_scale": args.n_filters_scale, "n_images": args.n_images}
    positions = np.random.default_rng(0).uniform(0, 3000, (100_000, 2))
    start = time.perf_counter()
    group_positions(positions, 2, n_neighbors=8)
    report["grouping_100k_seconds"] = round(time.perf_counter() - start, 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "scan.npz"
        save_scan_npz(scan, data)
        for gridsize in (int(g) for g in args.gridsizes.split(",")):
            for layout in args.layouts.split(",") if gridsize > 1 else ["per_pattern"]:
                for block in args.decoder_blocks.split(","):
                    speed, model = training_speed(scan, gridsize, args.n_filters_scale, layout, block)
                    speed.update(inference_speed(model, scan, tmp_path))
                    speed["first_training_step_seconds"] = round(
                        first_step_seconds(data, tmp_path, gridsize, layout, block), 1)
                    report[f"gridsize_{gridsize}" + (f"_{layout}" if gridsize > 1 else "") + f"_{block}"] = speed
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
