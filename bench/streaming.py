"""A scan larger than memory: train one epoch and infer from an HDF5 file, with bounded memory; prints JSON.

Writes `--n-patterns` simulated 64 x 64 patterns (default 200,000: 3.3 GB of float32 amplitudes)
chunk by chunk into a scan HDF5 file (`ptycho.datasource.write_scan_hdf5`), then, in a fresh child
process, trains one epoch from it (`HDF5Source`, batch by batch) and reconstructs the whole scan,
and reports the child's peak resident memory (target: < 2 GB) after training and at the end, and
timings. `--train-patterns K` trains on the first K patterns only, to measure the whole scan's
inference memory without the long epoch.

    python bench/streaming.py [--n-patterns 200000] [--gridsize 2 --network-layout stacked] [--train-patterns K]
                              [--workdir DIR] [--keep-file]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 4096


def write_scan(path: Path, n_patterns: int, n: int, seed: int = 0) -> float:
    """A raster scan of a random-phase object, amplitudes from the project's forward model."""
    from ptycho import physics
    from ptycho.datasource import write_scan_hdf5
    from ptycho.simulate import make_object, make_probe

    rng = np.random.default_rng(seed)
    side = math.ceil(math.sqrt(n_patterns))
    step = 6.0
    xs, ys = np.meshgrid(np.arange(side) * step, np.arange(side) * step)
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1)[:n_patterns] + n
    size = int(positions.max()) + n + 8
    obj = make_object("grf", (size, size), rng)
    probe = make_probe("disk", n) * 30.0

    def chunks():
        for start in range(0, n_patterns, CHUNK):
            yield physics.diffraction_amplitudes(obj, probe, positions[start:start + CHUNK], interpolation="bilinear")

    start = time.perf_counter()
    write_scan_hdf5(path, positions, probe, chunks())
    return time.perf_counter() - start


class FirstPatterns:
    """The first `count` patterns of a ScanSource (what `--train-patterns` trains on)."""

    def __init__(self, source, count: int) -> None:
        self._source = source
        self.source, self.probe, self.object, self.metadata = source.source, source.probe, None, source.metadata
        self.positions = source.positions[:count]

    @property
    def n_patterns(self) -> int:
        return len(self.positions)

    @property
    def N(self) -> int:
        return self._source.N

    def read_amplitudes(self, indices: np.ndarray) -> np.ndarray:
        return self._source.read_amplitudes(indices)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(path: str, gridsize: int, n_filters_scale: int, batch_size: int, layout: str,
          train_patterns: int | None) -> None:
    """Train one epoch and infer the whole scan, streaming from `path`; prints JSON timings and the
    process's peak resident memory after training and at the end."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.datasource import HDF5Source
    from ptycho.inference import reconstruct
    from ptycho.training import train

    source = HDF5Source(path)
    config = TrainingConfig(model=ModelConfig(N=source.N, gridsize=gridsize, n_filters_scale=n_filters_scale,
                                              network_layout=layout),
                            nepochs=1, batch_size=batch_size, validation_fraction=0.0)
    start = time.perf_counter()
    model = train(FirstPatterns(source, train_patterns) if train_patterns else source, config)
    train_seconds = time.perf_counter() - start
    after_training = peak_rss_mb()
    start = time.perf_counter()
    result = reconstruct(model, source)
    infer_seconds = time.perf_counter() - start
    print(json.dumps({"train_patterns": model.summary["n_patterns"], "train_one_epoch_seconds": round(train_seconds, 1),
                      "infer_seconds": round(infer_seconds, 1), "object_shape": list(result.object.shape),
                      "covered_fraction": round(float(np.mean(result.weights > 0)), 3),
                      "peak_rss_mb_after_training": after_training, "peak_rss_mb": peak_rss_mb()}))


def main(argv: list[str] | None = None) -> None:
    from ptycho.config.config import TrainingConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patterns", type=int, default=200_000)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--gridsize", type=int, default=1)
    parser.add_argument("--n-filters-scale", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=TrainingConfig.batch_size,
                        help="training batch (groups; default TrainingConfig's): also the fastest on a CPU, and it "
                             "keeps XLA's per-step buffers small (batch 64 adds ~0.35 GB)")
    parser.add_argument("--network-layout", default="per_pattern",
                        help="ModelConfig.network_layout ('stacked' trains gridsize 2 about 4x faster)")
    parser.add_argument("--train-patterns", type=int, default=None,
                        help="train the epoch on the first K patterns only (default: all); inference always "
                             "covers the whole scan, so this measures its memory without the long epoch")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep-file", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.gridsize, args.n_filters_scale, args.batch_size, args.network_layout,
              args.train_patterns)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ptychopinn-stream-"))
    path = workdir / "scan.h5"
    report = {"benchmark": "streaming", "n_patterns": args.n_patterns, "N": args.N, "gridsize": args.gridsize,
              "network_layout": args.network_layout, "n_filters_scale": args.n_filters_scale,
              "cpu_count": os.cpu_count()}
    try:
        # the file is written in a child too, so the parent's RSS never counts towards the measurement
        write = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
                                f"import streaming; print(streaming.write_scan(__import__('pathlib').Path({str(path)!r}),"
                                f" {args.n_patterns}, {args.N}))"], check=True, capture_output=True, text=True)
        report["write_seconds"] = round(float(write.stdout.split()[-1]), 1)
        report["file_gb"] = round(path.stat().st_size / 1e9, 2)
        run = subprocess.run([sys.executable, __file__, "--child", str(path), "--gridsize", str(args.gridsize),
                              "--n-filters-scale", str(args.n_filters_scale), "--batch-size", str(args.batch_size),
                              "--network-layout", args.network_layout,
                              *(["--train-patterns", str(args.train_patterns)] if args.train_patterns else [])],
                             check=True, capture_output=True, text=True)
        report.update(json.loads(run.stdout.strip().splitlines()[-1]))
        # RUSAGE_CHILDREN: the largest peak RSS among the finished children (the writer or the trainer)
        report["peak_rss_mb_children"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    finally:
        if not args.keep_file:
            path.unlink(missing_ok=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
