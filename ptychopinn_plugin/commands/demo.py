"""`ptychopinn demo [-o DIR]`: simulate the embedded default scan, train a PINN on it (no ground
truth used), reconstruct, and score the reconstruction against the ground truth.

The default (resources/demo.json) finishes in under 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.resources import files
from pathlib import Path

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.simulate import SimulationConfig
from ptychopinn_plugin.commands.evaluate import evaluate_files
from ptychopinn_plugin.commands.infer import infer_to_file
from ptychopinn_plugin.commands.simulate import simulate_to_file
from ptychopinn_plugin.commands.train import train_to_directory


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="simulate, train, reconstruct and evaluate the embedded default",
                              description=__doc__)
    p.add_argument("-o", "--output", type=Path, default=Path("ptychopinn-demo"), help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    p.set_defaults(func=run)


def demo_settings() -> dict:
    return json.loads(files("ptychopinn_plugin.resources").joinpath("demo.json").read_text())


def run_demo(output: Path, *, epochs: int | None = None, quiet: bool = False) -> dict:
    """Run the whole demo into `output`; returns {'metrics': ..., 'paths': ..., 'seconds': ...}."""
    settings = demo_settings()
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scan_path = output / "scan.npz"
    scan = simulate_to_file(SimulationConfig(**settings["simulation"]), scan_path)
    training = dict(settings["training"], **({"nepochs": epochs} if epochs else {}))
    config = TrainingConfig(model=ModelConfig(N=scan.N, **settings["model"]), **training)
    model = train_to_directory(scan, config, output / "model", quiet=quiet)
    reconstruction = output / "reconstruction.h5"
    infer_to_file(model, scan, reconstruction, quiet=quiet)
    metrics_path = output / "metrics.json"
    scores = evaluate_files(reconstruction, str(scan_path), metrics_path)
    paths = {"scan": scan_path, "model": output / "model" / "wts.h5.zip", "loss_curve": output / "model" / "loss.png",
             "reconstruction": reconstruction, "reconstruction_png": reconstruction.with_suffix(".png"),
             "metrics": metrics_path, "comparison_png": metrics_path.with_suffix(".png")}
    return {"metrics": scores, "paths": paths, "seconds": time.perf_counter() - start}


def run(args: argparse.Namespace) -> int:
    result = run_demo(args.output, epochs=args.epochs)
    m = result["metrics"]
    print(f"demo finished in {result['seconds']:.0f} s: amplitude SSIM {m['amp_ssim']:.3f}, "
          f"phase SSIM {m['phase_ssim']:.3f}, phase FRC50 {m['phase_frc50']:.3f}")
    for name, path in result["paths"].items():
        print(f"  {name:20s} {path}")
    return 0
