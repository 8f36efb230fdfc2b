"""Pieces the sub-commands share: reading DATA arguments and progress bars."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", action="store_true",
                        help="read patterns batch by batch from disk (scan .h5 or uncompressed .npz)")


def open_data(path: str, *, stream: bool = False):
    """A ScanData (any format the project reads), or a streamed source with `stream`."""
    if stream:
        from ptycho.datasource import open_source

        return open_source(Path(path), stream=True)
    from ptychopinn_plugin.convert import load_scan

    return load_scan(path)


@contextmanager
def epoch_progress(total: int, *, disable: bool = False) -> Iterator[Callable]:
    """A tqdm bar over epochs; yields the `on_epoch` callback for `ptycho.training.train`."""
    with tqdm(total=total, desc="training", unit="epoch", disable=disable) as bar:
        def on_epoch(report) -> None:
            bar.set_postfix({**{k: f"{v:.4g}" for k, v in report.losses.items() if k.endswith("loss")},
                             "lr": f"{report.losses['learning_rate']:.3g}"})
            bar.update(1)

        yield on_epoch


@contextmanager
def batch_progress(*, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar over inference batches; yields the `on_batch(done, total)` callback."""
    bar = tqdm(desc="inference", unit="batch", disable=disable)
    try:
        def on_batch(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield on_batch
    finally:
        bar.close()
