"""Reconstruction quality of PINN and supervised models against ground truth; prints JSON.

On a standard simulated scan (N=64, 'lines' object, 1e9 photons per pattern, from our simulator) and
on the independent simulator's `../shared/data/lines-1e9.npz`: train on the top half of the scan
(at most --n-train patterns, those nearest the bottom half), reconstruct the bottom half, for each
gridsize and model type with the same training budget (epochs, batch size), and score amplitude and
phase (SSIM, PSNR, FRC50 as a fraction of Nyquist) in the bottom half's held-out region (the split of
`ptychopinn study`: no scored pixel is touched by a training patch).

Targets (see the project's issue): PINN gridsize 2 amplitude and phase SSIM >= 0.90; gridsize 2
better than gridsize 1; PINN better than the supervised baseline at 512 training patterns. Results
and the GPU runner (bench/device_quality.sh): docs/quality.md.

    python bench/quality.py [--datasets simulated,shared] [--epochs 60] [--n-train 512]
    KERAS_BACKEND=jax python bench/quality.py ...    # the same model on a GPU
    python bench/quality.py --datasets simulated --models pinn --gridsizes 2 --N 32 --step 3 \
        --n-images 2400 --n-train 1200 --n-filters-scale 1 --epochs 11    # docs/quality.md's CPU check

--set KEY=VALUE sets any other TrainingConfig or ModelConfig field (e.g. --set pad_object=false).
--score-epochs 20,60 also scores each model at the end of those epochs (logged as training goes on;
the run's `epoch_scores`); --figures DIR writes each run's held-out comparison figure. --fine-tune-epochs K then fine-tunes each
PINN on the held-out half's own diffraction (self-supervised: no ground truth) for K epochs and scores
it again (the run's `fine_tuned`). Each run is printed to stderr as one JSON line as soon as it ends;
the whole report goes to stdout at the end. --symmetry-average scores symmetry-averaged
reconstructions (`reconstruct(..., symmetry_average=True)`) and adds the one-pass scores of the same
model (the run's `without_symmetry_average`). --self-synthetic COUNT then trains each PINN a second time
(from scratch, same settings) with COUNT synthetic patterns of a mosaic of the first model's
reconstruction of its own training half (`--synthetic-object RECON.npz`: no ground truth), and scores
that model (the run's `self_synthetic`). --refine-steps 3,30 also scores each PINN's reconstruction with
that many data-consistency steps per pattern after the network (`reconstruct(..., refine_steps=K)`; the
run's `refined`, one entry per K).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

from ptycho import metrics
from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.npz_io import load_scan_npz
from ptycho.scan import ScanData
from ptycho.simulate import SimulationConfig, simulate
from ptychopinn_plugin.studies.common import METRIC_KEYS, HeldOutSplit, score, split_top_bottom, train_and_score

DATASETS = ("simulated", "shared")
"""What --datasets may name: our simulator's standard scan and the independent simulator's lines-1e9.npz."""

SHARED = Path(os.environ.get("PTYCHOPINN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load_dataset(name: str, n_images: int, n: int, step: float) -> ScanData:
    """The 'simulated' scan (our simulator: 'lines', 1e9 photons, seed 0; N, positions and step in px
    as given) or the 'shared' one (N = 64 whatever n is)."""
    if name == "simulated":
        return simulate(SimulationConfig(object_kind="lines", N=n, n_images=n_images, step=step, nphotons=1e9,
                                         seed=0))
    if name == "shared":
        return load_scan_npz(SHARED / "lines-1e9.npz")
    raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")


def dataset_list(text: str) -> list[str]:
    """--datasets 'simulated,shared' -> ['simulated', 'shared']; an unknown name is a usage error."""
    names = text.split(",")
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown dataset(s) {', '.join(map(repr, unknown))}: "
                                         f"expected names from {', '.join(DATASETS)}")
    return names


def held_out_split(scan: ScanData, n_train: int) -> HeldOutSplit:
    """The study split with at most n_train training patterns (the shared scan's top half has 450)."""
    return split_top_bottom(scan, min(n_train, scan.n_patterns // 2))


OWN_OPTIONS = {"N": "--N (simulated) or the dataset", "gridsize": "--gridsizes", "model_type": "--models",
               "n_filters_scale": "--n-filters-scale", "nepochs": "--epochs", "batch_size": "--batch-size",
               "seed": "(fixed at 0)"}
"""Config fields that --set may not change, and what sets them instead."""


def config_option(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' for a field of TrainingConfig or ModelConfig -> (KEY, VALUE as the field's type)."""
    key, _, value = text.partition("=")
    if key in OWN_OPTIONS:
        raise argparse.ArgumentTypeError(f"{key!r} is set by {OWN_OPTIONS[key]}, not --set")
    for config_class in (TrainingConfig, ModelConfig):
        default = {f.name: f.default for f in fields(config_class)}.get(key, MISSING)
        if default is not MISSING and isinstance(default, (bool, int, float, str)):
            if isinstance(default, bool):
                return key, value.lower() in ("1", "true", "yes")
            return key, type(default)(value)
    raise argparse.ArgumentTypeError(f"{key!r} is no number, flag or text field of TrainingConfig or ModelConfig")


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def run_one(dataset: str, split: HeldOutSplit, model_type: str, gridsize: int, args: argparse.Namespace) -> dict:
    options = dict(args.set)
    model_fields = {f.name for f in fields(ModelConfig)}
    model_options = {k: options.pop(k) for k in list(options) if k in model_fields}
    config = TrainingConfig(model=ModelConfig(N=split.train.N, gridsize=gridsize, n_filters_scale=args.n_filters_scale,
                                              model_type=model_type, **model_options),
                            nepochs=args.epochs, batch_size=args.batch_size, seed=0, **options)
    record, trained = train_and_score(split, config, epoch_scores=args.score_epochs or False,
                                      keep_model=bool(args.fine_tune_epochs or args.symmetry_average
                                                      or args.self_synthetic or args.refine_steps),
                                      symmetry_average=args.symmetry_average)
    if args.figures:
        aligned, truth, _ = metrics.align(trained.object[split.region], split.test.object[split.region])
        name = f"{dataset}_{model_type}_g{gridsize}.png"
        metrics.comparison_figure(aligned, truth, Path(args.figures) / name,
                                  {k: record[k] for k in METRIC_KEYS})
    keys = ("n_train", "n_test", "epochs_run", "train_seconds", "reconstruct_seconds", *METRIC_KEYS)
    run = {"dataset": dataset, "model": model_type, "gridsize": gridsize, "N": split.train.N,
           **_rounded({k: record[k] for k in keys}), **_extra_scores(split, record, trained.model, args)}
    if args.self_synthetic and model_type == "pinn":
        run["self_synthetic"] = self_synthetic_scores(split, trained.model, config, args)
    if args.fine_tune_epochs and model_type == "pinn":  # on the measured patterns only
        tuning = replace(config, nepochs=args.fine_tune_epochs, synthetic_patterns=0)
        run["fine_tuned"] = _rounded(fine_tuned_scores(split, trained.model, tuning))
    return run


def self_synthetic_scores(split: HeldOutSplit, model, config: TrainingConfig, args: argparse.Namespace) -> dict:
    """Train again with args.self_synthetic synthetic patterns of a mosaic of `model`'s reconstruction of
    the training half (symmetry-averaged with --symmetry-average) and score it as the first model is:
    {'n_synthetic', 'train_seconds', *METRIC_KEYS, 'epoch_scores'?, 'without_symmetry_average'?}."""
    import tempfile

    from ptycho.inference import reconstruct
    from ptychopinn_plugin.reconstruction_files import write_reconstruction

    train_grid = (split.train.object.shape, (0.0, 0.0))
    own = reconstruct(model, split.train, grid=train_grid, symmetry_average=args.symmetry_average)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "training_half.npz"
        write_reconstruction(path, split.train, own.object, own.weights)
        second = replace(config, synthetic_patterns=args.self_synthetic, synthetic_object=str(path))
        record, trained = train_and_score(split, second, epoch_scores=args.score_epochs or False,
                                          keep_model=bool(args.symmetry_average or args.refine_steps),
                                          symmetry_average=args.symmetry_average)
    return {"n_synthetic": args.self_synthetic, **_rounded({k: record[k] for k in ("train_seconds", *METRIC_KEYS)}),
            **_extra_scores(split, record, trained.model, args)}


def _extra_scores(split: HeldOutSplit, record: dict, model, args: argparse.Namespace) -> dict[str, Any]:
    """A run's optional entries: its `epoch_scores` (with --score-epochs); with --symmetry-average, the
    same model's one-pass scores (`without_symmetry_average`, for comparison); with --refine-steps (PINN
    only), its scores after K data-consistency steps per pattern (`refined`: [{'steps': K, ...}])."""
    from ptycho.inference import reconstruct

    extra: dict[str, Any] = {}
    grid = (split.test.object.shape, (0.0, 0.0))
    if "epoch_scores" in record:
        extra["epoch_scores"] = [_rounded(e) for e in record["epoch_scores"]]
    if args.symmetry_average:
        obj = reconstruct(model, split.test, grid=grid).object
        extra["without_symmetry_average"] = _rounded(score(obj, split.test.object, split.region))
    if args.refine_steps and model.config.model_type == "pinn":
        extra["refined"] = []
        for steps in args.refine_steps:
            obj = reconstruct(model, split.test, grid=grid, symmetry_average=args.symmetry_average,
                              refine_steps=steps).object
            extra["refined"].append({"steps": steps, **_rounded(score(obj, split.test.object, split.region))})
    return extra


def fine_tuned_scores(split: HeldOutSplit, model, config: TrainingConfig) -> dict[str, Any]:
    """Fine-tune `model` on the held-out scan's own diffraction for config.nepochs (no ground truth) and
    score its reconstruction of the held-out region: {'epochs', 'train_seconds', *METRIC_KEYS}."""
    from ptycho.inference import reconstruct
    from ptycho.training import train

    tuned = train(split.test, config, initial=model)
    obj = reconstruct(tuned, split.test, grid=(split.test.object.shape, (0.0, 0.0))).object
    return {"epochs": int(tuned.summary["epochs_run"]), "train_seconds": float(tuned.summary["train_seconds"]),
            **score(obj, split.test.object, split.region)}


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (also what each line of a GPU plan, bench/plans/*.txt, holds)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=dataset_list, default=",".join(DATASETS),
                        help=f"comma-separated, from {', '.join(DATASETS)}")
    parser.add_argument("--models", default="pinn,supervised")
    parser.add_argument("--gridsizes", default="1,2")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--set", type=config_option, action="append", default=[], metavar="KEY=VALUE",
                        help="any other TrainingConfig or ModelConfig field, e.g. groups_per_position=4 (repeatable)")
    parser.add_argument("--n-train", type=int, default=512)
    parser.add_argument("--n-images", type=int, default=1100, help="simulated scan size")
    parser.add_argument("--N", type=int, default=64, help="simulated scan's pattern size (32 for a quick CPU check)")
    parser.add_argument("--step", type=float, default=6.0, help="simulated scan's step in pixels")
    parser.add_argument("--n-filters-scale", type=int, default=2)
    parser.add_argument("--symmetry-average", action="store_true",
                        help="reconstruct with the average over the probe's symmetries (the run's scores); "
                             "the one-pass scores go to the run's `without_symmetry_average`")
    parser.add_argument("--score-epochs", type=lambda text: sorted({int(e) for e in text.split(",")}), default=None,
                        help="comma-separated epochs at which every model is also scored")
    parser.add_argument("--figures", help="folder for each run's held-out comparison figure")
    parser.add_argument("--refine-steps", type=lambda text: sorted({int(k) for k in text.split(",")}), default=None,
                        help="comma-separated numbers of data-consistency steps per pattern at which every PINN's "
                             "reconstruction is also scored")
    parser.add_argument("--self-synthetic", type=int, default=0, metavar="COUNT",
                        help="then train each PINN again with COUNT synthetic patterns of a mosaic of its own "
                             "reconstruction of the training half, and score it")
    parser.add_argument("--fine-tune-epochs", type=int, default=0, metavar="K",
                        help="then fine-tune each PINN on the held-out half's own diffraction for K epochs and score it")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("ptychopinn").setLevel(logging.INFO)  # per-epoch losses and scores, as they come
    if args.figures:
        Path(args.figures).mkdir(parents=True, exist_ok=True)
    import keras

    settings = {k: v for k, v in vars(args).items() if k not in ("datasets", "models", "gridsizes", "figures", "set")}
    settings.update(args.set)
    report = {"benchmark": "quality", "backend": keras.backend.backend(), **settings, "runs": []}
    for dataset in args.datasets:
        split = held_out_split(load_dataset(dataset, args.n_images, args.N, args.step), args.n_train)
        for gridsize in (int(g) for g in args.gridsizes.split(",")):
            for model_type in args.models.split(","):
                try:
                    run = run_one(dataset, split, model_type, gridsize, args)
                except ValueError as error:  # a model too poor to register to the truth
                    run = {"dataset": dataset, "model": model_type, "gridsize": gridsize, "error": str(error)}
                report["runs"].append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
