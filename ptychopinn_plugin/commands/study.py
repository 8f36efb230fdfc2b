"""`ptychopinn study dose|compare -o DIR`: the scientific studies that check the reconstructor.

  dose     PINN with Poisson NLL vs amplitude MAE loss at high and low dose (simulated, ground truth)
  compare  PINN vs supervised baseline vs pty-chi LSQML on a simulated scan and, with --data, on a
           measured scan (e.g. the Siemens star); --train-sizes adds a data-efficiency curve
Each writes DIR/results.json and figures; see docs/studies.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ptychopinn_plugin.cli import CliError
from ptychopinn_plugin.studies.config import (
    LOSSES,
    SHOW,
    CompareStudyConfig,
    DoseStudyConfig,
    TrainingBudget,
)
from ptychopinn_plugin.studies.lsqml import NOISE_MODELS, LsqmlSettings

DESCRIPTIONS = {
    "dose": "Simulate one scan at each dose, train a PINN with each loss (NLL, MAE) on its top half and score "
            "the held-out bottom half. Writes results.json, dose_comparison.png (and frc_vs_dose.png for "
            "more than two doses). The default finishes in under 20 minutes on a 2-core CPU.",
    "compare": "Train the PINN and the supervised baseline with the same budget and run pty-chi's LSQML "
               "(pip install 'ptychopinn[compare]'; skipped when absent) on a simulated scan with ground truth "
               "and, with --data, on a measured scan. Writes results.json, results.md and comparison_*.png.",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="run a scientific study (dose response, method comparison)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    studies = p.add_subparsers(dest="study", required=True)

    dose = studies.add_parser("dose", help="Poisson NLL vs MAE loss at high and low dose",
                              description=DESCRIPTIONS["dose"], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dose_defaults = DoseStudyConfig()
    _add_common_options(dose, dose_defaults)
    dose.add_argument("--doses", type=_floats, default=",".join(f"{d:g}" for d in dose_defaults.doses),
                      help="photons per pattern, comma-separated")
    dose.add_argument("--show", choices=SHOW, default=dose_defaults.show,
                      help="what dose_comparison.png shows of each reconstruction")
    dose.add_argument("--epoch-scores", action="store_true",
                      help="score every model after each epoch (results.json epoch_scores, convergence.png); "
                           "one extra reconstruction per epoch")
    dose.add_argument("--workers", type=int, default=dose_defaults.workers,
                      help="models trained at once, each in its own process with an equal share of the cores "
                           "(1: one after the other; default: 2 on a CPU-only machine with 2 or more cores, else 1)")
    dose.set_defaults(func=run_dose)

    compare = studies.add_parser("compare", help="PINN vs supervised vs LSQML", description=DESCRIPTIONS["compare"],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults, lsqml = CompareStudyConfig(), LsqmlSettings()
    _add_common_options(compare, defaults)
    compare.add_argument("--dose", type=float, default=defaults.dose, help="photons per pattern of the simulated scan")
    compare.add_argument("--loss", choices=LOSSES, default=defaults.loss, help="the PINN's loss")
    compare.add_argument("--data", type=Path, default=None,
                         help="also compare on this scan (any input `ptychopinn convert` reads)")
    compare.add_argument("--data-has-truth", action="store_true",
                         help="the --data scan's object is ground truth (e.g. a simulated reference NPZ)")
    compare.add_argument("--real-n", type=int, default=defaults.real_n,
                         help="crop a measured scan's patterns to the central N x N pixels")
    compare.add_argument("--real-patterns", type=int, default=None,
                         help="use only this many central patterns of a measured scan (default: all)")
    compare.add_argument("--train-sizes", type=_ints, default="",
                         help="data efficiency: training-set sizes, e.g. 256,512,1024; empty: none")
    compare.add_argument("--no-lsqml", action="store_true", help="skip pty-chi's LSQML")
    compare.add_argument("--lsqml-epochs", type=int, default=lsqml.epochs, help="LSQML epochs")
    compare.add_argument("--lsqml-batch-size", type=int, default=lsqml.batch_size, help="patterns per LSQML update")
    compare.add_argument("--lsqml-noise", choices=NOISE_MODELS, default=lsqml.noise_model, help="LSQML noise model")
    compare.add_argument("--lsqml-refine-probe", action="store_true", help="let LSQML refine the probe")
    compare.add_argument("--lsqml-device", choices=("auto", "cpu", "gpu"), default=lsqml.device,
                         help="where pty-chi runs (auto: a GPU when PyTorch sees one)")
    compare.set_defaults(func=run_compare)


def _add_common_options(p: argparse.ArgumentParser, defaults: DoseStudyConfig | CompareStudyConfig) -> None:
    """-o, the simulated scan's options and the training budget, with the study's defaults."""
    budget_defaults = defaults.budget
    p.add_argument("-o", "--output", required=True, type=Path, default=argparse.SUPPRESS,
                   help="study folder (created)")
    scan = p.add_argument_group("simulated scan")
    scan.add_argument("--N", type=int, default=defaults.N, help="pattern side in pixels (32, 64, 128)")
    scan.add_argument("--n-images", type=int, default=defaults.n_images, help="scan positions")
    scan.add_argument("--step", type=float, default=defaults.step, help="scan step in object pixels")
    scan.add_argument("--object", default=defaults.object_kind, choices=("lines", "grf", "points"),
                      help="object kind")
    scan.add_argument("--scan-seed", type=int, default=defaults.scan_seed,
                      help="seed of the object, positions and noise")
    budget = p.add_argument_group("training budget (every model)")
    budget.add_argument("--gridsize", type=int, default=budget_defaults.gridsize,
                        help="groups hold gridsize**2 patterns")
    budget.add_argument("--n-filters-scale", type=int, default=budget_defaults.n_filters_scale,
                        help="network width (1..4)")
    budget.add_argument("--epochs", type=int, default=budget_defaults.epochs, help="training epochs")
    budget.add_argument("--batch-size", type=int, default=budget_defaults.batch_size, help="groups per training step")
    budget.add_argument("--learning-rate", type=float, default=budget_defaults.learning_rate, help="Adam learning rate")
    budget.add_argument("--seed", type=int, default=budget_defaults.seed, help="training seed")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _budget(args: argparse.Namespace) -> TrainingBudget:
    return TrainingBudget(gridsize=args.gridsize, n_filters_scale=args.n_filters_scale, epochs=args.epochs,
                          batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed)


def _print_run(record: dict[str, Any]) -> None:
    label = " ".join(str(record[k]) for k in ("scan", "method", "loss") if record.get(k))
    dose = f" dose {record['dose']:.0e}" if record.get("dose") else ""
    scores = " ".join(f"{k} {record[k]:.3f}" for k in ("amp_ssim", "phase_ssim", "phase_frc50",
                                                        "phase_frc50_vs_lsqml", "data_residual") if k in record)
    print(f"{label}{dose} (n_train {record['n_train']}): {scores}; train {record['train_seconds']:.0f} s, "
          f"reconstruct {record['reconstruct_seconds']:.2f} s", flush=True)


def run_dose(args: argparse.Namespace) -> int:
    from ptychopinn_plugin.studies.dose import run_dose_study

    config = DoseStudyConfig(doses=args.doses, N=args.N, n_images=args.n_images, step=args.step,
                             object_kind=args.object, scan_seed=args.scan_seed, show=args.show, budget=_budget(args),
                             epoch_scores=args.epoch_scores, workers=args.workers)
    payload = run_dose_study(config, args.output, on_run=_print_run)
    for row in payload["contrast"]:
        print(f"dose {row['dose']:.0e}: NLL - MAE: amp SSIM {row['amp_ssim']:+.3f}, "
              f"phase SSIM {row['phase_ssim']:+.3f}, amp FRC50 {row['amp_frc50']:+.3f}, "
              f"phase FRC50 {row['phase_frc50']:+.3f}")
    print(f"wrote {args.output} ({', '.join(payload['files'].values())}) in {payload['total_seconds']:.0f} s")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ptychopinn_plugin.studies.compare import run_compare_study
    from ptychopinn_plugin.studies.lsqml import ptychi_available

    lsqml = None
    if not args.no_lsqml:
        if ptychi_available():
            lsqml = LsqmlSettings(epochs=args.lsqml_epochs, batch_size=args.lsqml_batch_size,
                                  refine_probe=args.lsqml_refine_probe, noise_model=args.lsqml_noise,
                                  device=args.lsqml_device, seed=args.seed)
        else:
            print("pty-chi is not installed: LSQML skipped (pip install 'ptychopinn[compare]')", file=sys.stderr)
    if args.data is not None and not args.data.exists():
        raise CliError(f"{args.data}: no such file or folder")
    config = CompareStudyConfig(N=args.N, n_images=args.n_images, step=args.step, dose=args.dose,
                                object_kind=args.object, scan_seed=args.scan_seed, budget=_budget(args),
                                loss=args.loss, lsqml=lsqml, data=args.data, data_has_truth=args.data_has_truth,
                                real_n=args.real_n, real_patterns=args.real_patterns, train_sizes=args.train_sizes)
    payload = run_compare_study(config, args.output, on_run=_print_run)
    print(f"wrote {args.output} ({', '.join(payload['files'].values())}) in {payload['total_seconds']:.0f} s")
    return 0
