"""Forward-model throughput under XLA on this machine, and stitching of the same patches; prints JSON.

Forward model: `ptycho.physics.diffraction_amplitudes` (patch extraction from a 1024 x 1024 object,
probe illumination, orthonormal centred FFT) in compiled batches of 256, for bilinear and Fourier
sub-pixel extraction; the first (compiling) call is excluded. Stitching: `ptycho.stitching` of the
same number of 64 x 64 patches (central N/2 kept) onto the same object grid. The target: stitching
10,000 patches takes less wall time than the forward model on them.

    python bench/forward.py [--n-patches 10000] [--N 64] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from ptycho import physics
from ptycho.stitching import stitch_patches


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patches", type=int, default=10_000)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    size = 1024
    obj = np.exp(1j * rng.uniform(-1, 1, (size, size))).astype(np.complex64)
    probe = (rng.normal(size=(args.N, args.N)) + 1j * rng.normal(size=(args.N, args.N))).astype(np.complex64)
    positions = rng.uniform(args.N, size - args.N, (args.n_patches, 2))
    report = {"benchmark": "forward_model", "cpu_count": os.cpu_count(), "N": args.N,
              "batch_size": args.batch_size, "n_patches": args.n_patches}
    for interpolation in ("bilinear", "fourier"):
        def run():
            physics.diffraction_amplitudes(obj, probe, positions, batch_size=args.batch_size,
                                           interpolation=interpolation)
        physics.diffraction_amplitudes(obj, probe, positions[: args.batch_size], batch_size=args.batch_size,
                                       interpolation=interpolation)  # compile
        seconds = best_time(run, args.repeats)
        report[f"forward_{interpolation}_seconds"] = round(seconds, 3)
        report[f"forward_{interpolation}_patterns_per_second"] = round(args.n_patches / seconds, 1)
    patches = physics.object_patches(obj, positions, args.N, interpolation="bilinear")
    stitch_seconds = best_time(lambda: stitch_patches(patches, positions, shape=(size, size)), args.repeats)
    report["stitch_seconds"] = round(stitch_seconds, 3)
    report["stitch_faster_than_forward"] = stitch_seconds < report["forward_bilinear_seconds"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
