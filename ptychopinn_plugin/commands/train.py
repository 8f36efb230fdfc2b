"""`ptychopinn train DATA -o MODEL_DIR`: train a PINN (or the supervised baseline) on a scan.

Writes MODEL_DIR/wts.h5.zip (the model bundle Ptychodus loads), MODEL_DIR/loss.png and
MODEL_DIR/history.json. DATA: a reference NPZ, a Ptychodus training-data NPZ, a Ptychodus batch
folder, a product .h5 with diffraction.h5 beside it, or (with --stream) a scan .h5 / uncompressed NPZ.

With --checkpoint-every K the bundle is also written every K epochs, so a run stopped with Ctrl-C keeps
its latest model (its manifest's training_summary.checkpoint gives the epoch and learning rate): continue
it with `--init MODEL_DIR --learning-rate LR`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ptycho.atomic import atomic_output
from ptycho.config.config import (DECODER_BLOCKS, LOSSES, MODEL_TYPES, NETWORK_LAYOUTS, SYNTHETIC_OBJECTS,
                                  ConfigError, ModelConfig, TrainingConfig)
from ptychopinn_plugin import figures
from ptychopinn_plugin.commands import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a model on a scan", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="scan to train on")
    p.add_argument("-o", "--output", required=True, type=Path, help="model directory (created)")
    p.add_argument("--model", choices=MODEL_TYPES, help=f"default {ModelConfig.model_type}")
    p.add_argument("--gridsize", type=int, help=f"default {ModelConfig.gridsize}")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size)
    p.add_argument("--loss", choices=LOSSES, default="nll", help="PINN loss: Poisson NLL or amplitude MAE")
    p.add_argument("--n-filters-scale", type=int, help=f"default {ModelConfig.n_filters_scale}")
    p.add_argument("--network-layout", choices=NETWORK_LAYOUTS,
                   help="gridsize > 1: one shared network per pattern (better) or the group's patterns "
                        f"stacked as channels (faster); default {ModelConfig.network_layout}")
    p.add_argument("--decoder-block", choices=DECODER_BLOCKS,
                   help="convolve then upsample (faster) or upsample then convolve; default "
                        f"{ModelConfig.decoder_block}")
    p.add_argument("--init", type=Path, metavar="MODEL_DIR",
                   help="start from this trained model (fine-tuning, e.g. on a new scan); the model options "
                        "are its own")
    p.add_argument("--learning-rate", type=float, default=TrainingConfig.learning_rate)
    p.add_argument("--early-stopping", type=int, default=None, metavar="EPOCHS",
                   help="stop after this many epochs without validation improvement")
    p.add_argument("--synthetic-patterns", type=int, default=TrainingConfig.synthetic_patterns, metavar="COUNT",
                   help="PINN: add COUNT training patterns of a generated object simulated through the scan's own "
                        "probe at its counts and step (helps a small scan generalise; docs/quality.md)")
    p.add_argument("--synthetic-object", default=TrainingConfig.synthetic_object, metavar="KIND|PNG|RECON.npz",
                   help=f"object of the synthetic patterns: one of {', '.join(SYNTHETIC_OBJECTS)}, a PNG image, or "
                        "randomly turned pieces of a reconstruction NPZ (ptychopinn infer -o RECON.npz, e.g. of this "
                        "scan by a first model)")
    p.add_argument("--symmetry-augmentation", action="store_true",
                   help="turn each training group by a random mirror or 90-degree rotation that leaves the probe "
                        "unchanged (exact; simulated probes have them, measured ones usually not)")
    p.add_argument("--seed", type=int, default=TrainingConfig.seed)
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="EPOCHS",
                   help="also write MODEL_DIR/wts.h5.zip every EPOCHS epochs, so an interrupted run leaves its "
                        "latest model (continue it with --init MODEL_DIR)")
    common.add_data_options(p)
    p.set_defaults(func=run)


MODEL_OPTIONS = {"model": "model_type", "gridsize": "gridsize", "n_filters_scale": "n_filters_scale",
                 "network_layout": "network_layout", "decoder_block": "decoder_block"}
"""Command-line model options and the ModelConfig fields they set."""


def training_config(args: argparse.Namespace, initial: ModelConfig | None = None) -> TrainingConfig:
    """The run's configuration: the model options given override ModelConfig's defaults, or, with an
    initial model, must agree with its configuration (ConfigError naming the option otherwise)."""
    given = {field: getattr(args, option) for option, field in MODEL_OPTIONS.items()
             if getattr(args, option) is not None}
    if initial is None:
        model = replace(ModelConfig(N=0), **given)
    else:
        for option, field in MODEL_OPTIONS.items():
            if field in given and given[field] != getattr(initial, field):
                raise ConfigError(f"--{option.replace('_', '-')} {given[field]}: the initial model (--init) has "
                                  f"{field} {getattr(initial, field)}")
        model = replace(initial)
    return TrainingConfig(
        model=model, nepochs=args.epochs, batch_size=args.batch_size,
        nll_weight=1.0 if args.loss == "nll" else 0.0, mae_weight=1.0 if args.loss == "mae" else 0.0,
        learning_rate=args.learning_rate, early_stopping_patience=args.early_stopping,
        synthetic_patterns=args.synthetic_patterns, synthetic_object=args.synthetic_object,
        symmetry_augmentation=args.symmetry_augmentation, seed=args.seed,
        output_dir=args.output)


def train_to_directory(data, config: TrainingConfig, output: Path, *, stream: bool = False, quiet: bool = False,
                       initial=None, checkpoint_every: int = 0):
    """Train (from the TrainedModel `initial`, if given) and write the bundle, loss curve and history
    into `output`; returns the TrainedModel.

    checkpoint_every: also write the bundle after every that many epochs (0: never); a KeyboardInterrupt
    after a checkpoint is raised again with a message naming the checkpoint's epoch and how to continue.
    """
    from ptycho.bundle import save_bundle
    from ptycho.datasource import open_source
    from ptycho.training import check_training_inputs, train

    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every: expected a number of epochs >= 0, got {checkpoint_every}")
    source = open_source(data, stream=stream)
    check_training_inputs(source, config, initial)  # bad settings fail before the progress bar appears
    saved: dict[str, float] = {}
    with common.epoch_progress(config.nepochs, disable=quiet) as show_progress:
        def on_epoch(report) -> None:
            show_progress(report)
            if checkpoint_every and report.epoch % checkpoint_every == 0 and report.epoch < report.total_epochs:
                saved.update(epoch=report.epoch, learning_rate=report.losses["learning_rate"])
                report.model.summary = {"checkpoint": {**saved, "of_epochs": report.total_epochs}}
                save_bundle(report.model, output)

        try:
            model = train(source, config, on_epoch=on_epoch, initial=initial)
        except KeyboardInterrupt as interrupt:
            if not saved:
                raise
            raise KeyboardInterrupt(f"the model of epoch {saved['epoch']} is in {output / 'wts.h5.zip'}; continue "
                                    f"with --init {output} --learning-rate {saved['learning_rate']}") from interrupt
    output.mkdir(parents=True, exist_ok=True)  # only now: a failed run leaves its checkpoints at most
    save_bundle(model, output)
    figures.loss_curve(model.history, output / "loss.png")
    with atomic_output(output / "history.json") as tmp:
        tmp.write_text(json.dumps({"history": model.history, "summary": model.summary}, indent=2, default=str))
    return model


def run(args: argparse.Namespace) -> int:
    initial = None
    if args.init is not None:
        from ptycho.bundle import load_bundle

        initial = load_bundle(args.init)
    config = training_config(args, None if initial is None else initial.config)
    data = common.open_data(args.data, stream=args.stream)
    model = train_to_directory(data, config, args.output, stream=args.stream, initial=initial,
                               checkpoint_every=args.checkpoint_every)
    losses = model.history.get("loss", [])
    print(f"wrote {args.output / 'wts.h5.zip'} ({len(losses)} epochs, final loss {losses[-1]:.5g}, "
          f"{model.summary['train_seconds']:.1f} s) and {args.output / 'loss.png'}")
    return 0
