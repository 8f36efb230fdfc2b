"""Benchmark of ptycho.stitching; prints one JSON object to stdout.

Timing: stitch `--n-patches` random complex64 N x N patches at random sub-pixel positions onto a
`--canvas` x `--canvas` grid (best and median of `--repeats` runs, patches already in memory).
Memory: a child process streams `--memory-patches` patches chunk by chunk through a `Stitcher`
(100,000 x 64 x 64 complex64 would be 3.3 GB in one array) and the parent reads the child's peak
resident set size (`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`). The child reuses one random
chunk of patches with fresh positions for every chunk, so the time goes to stitching, not to the
random generator; the child also reports its RSS after imports, before stitching.

    python bench/stitching.py [--n-patches 10000] [--memory-patches 100000] [--N 64] [--keep K]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np

from ptycho.stitching import DEFAULT_CHUNK_SIZE, Stitcher, default_keep, stitch_patches

STREAM_CHUNK = 1024  # patches per chunk handed to the Stitcher by the streaming generator


def random_patches(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """complex64 (n, size, size) with standard normal real and imaginary parts."""
    return rng.standard_normal((n, size, size, 2), dtype=np.float32).view(np.complex64)[..., 0]


def random_positions(rng: np.random.Generator, n: int, size: int, canvas: int) -> np.ndarray:
    """float64 (n, 2) sub-pixel (x, y) keeping every patch inside the canvas."""
    return rng.uniform(size / 2, canvas - size / 2, size=(n, 2))


def stream(n: int, size: int, canvas: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(patches, positions) chunks totalling n patches; one random chunk of patches is reused."""
    rng = np.random.default_rng(seed)
    pool = random_patches(rng, min(n, STREAM_CHUNK), size)
    for start in range(0, n, STREAM_CHUNK):
        count = min(STREAM_CHUNK, n - start)
        yield pool[:count], random_positions(rng, count, size, canvas)


def kept_side(args: argparse.Namespace) -> int:
    return default_keep(args.N) if args.keep is None else args.keep


def time_in_memory(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    patches = random_patches(rng, args.n_patches, args.N)
    positions = random_positions(rng, args.n_patches, args.N, args.canvas)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = stitch_patches(patches, positions, shape=(args.canvas, args.canvas), keep=args.keep,
                                chunk_size=args.chunk_size)
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    return {
        "n_patches": args.n_patches,
        "N": args.N,
        "keep": kept_side(args),
        "canvas": [args.canvas, args.canvas],
        "chunk_size": args.chunk_size,
        "seconds": round(best, 4),
        "seconds_median": round(float(np.median(seconds)), 4),
        "patches_per_second": round(args.n_patches / best, 1),
        "covered_fraction": round(float(result.covered.mean()), 4),
    }


def stream_child(args: argparse.Namespace) -> None:
    """Run inside the child process: stitch a stream and print its own timing as JSON."""
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    stitcher = Stitcher((args.canvas, args.canvas), patch_size=args.N, keep=args.keep,
                        chunk_size=args.chunk_size)
    for patches, positions in stream(args.memory_patches, args.N, args.canvas, args.seed):
        stitcher.add(patches, positions)
    stitcher.result()
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_before_mb": rss_before_mb}))


def measure_streamed_memory(args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--stream-child", "--memory-patches", str(args.memory_patches),
               "--N", str(args.N), "--canvas", str(args.canvas), "--chunk-size", str(args.chunk_size),
               "--seed", str(args.seed)] + (["--keep", str(args.keep)] if args.keep is not None else [])
    child = subprocess.run(command, check=True, capture_output=True, text=True)
    report = json.loads(child.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    return {
        "memory_n_patches": args.memory_patches,
        "memory_seconds": round(report["seconds"], 3),
        "memory_patches_per_second": round(args.memory_patches / report["seconds"], 1),
        "rss_after_imports_mb": round(report["rss_before_mb"], 1),
        "peak_rss_mb": round(peak_mb, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-patches", type=int, default=10_000)
    parser.add_argument("--memory-patches", type=int, default=100_000)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--keep", type=int, default=None, help="kept central region (default N // 2)")
    parser.add_argument("--canvas", type=int, default=1000)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stream_child:
        stream_child(args)
        return
    report = {"benchmark": "stitching", "cpu_count": os.cpu_count(), "machine": platform.machine()}
    # Memory first: a forked child starts with the parent's resident pages counted in its peak RSS,
    # so the child must be started before the parent holds the in-memory patches.
    memory = measure_streamed_memory(args)
    report.update(time_in_memory(args))
    report.update(memory)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
