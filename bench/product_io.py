"""Benchmark: write and read a large product HDF5 file; prints one JSON object.

Default size: an 8192 x 8192 complex64 object (512 MiB) and 100,000 probe positions. Each phase runs
in its own subprocess so its peak resident memory (ru_maxrss) is its own; `*_overhead` is
(peak RSS - RSS before the data existed) / data size, so 1.0 means no copy beyond the data itself.

    python bench/product_io.py [--size 8192] [--positions 100000] [--folder /tmp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ptychopinn_plugin.product import ProductData, ProductMetadata
from ptychopinn_plugin.product_hdf5 import read_product, write_product


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _make_product(size: int, n_positions: int) -> ProductData:
    rng = np.random.default_rng(0)
    obj = np.empty((1, size, size), dtype=np.complex64)
    obj.real, obj.imag = 1.0, 0.0
    obj[0, :, ::97] = 0.5 + 0.25j  # some structure; values do not matter for uncompressed I/O
    return ProductData(
        metadata=ProductMetadata(detector_distance_m=2.0, photon_energy_eV=10_000.0, name="bench"),
        position_indexes=np.arange(n_positions, dtype=np.int64),
        position_x_m=rng.uniform(-1e-4, 1e-4, n_positions),
        position_y_m=rng.uniform(-1e-4, 1e-4, n_positions),
        probe=np.ones((1, 1, 128, 128), dtype=np.complex64),
        probe_pixel_width_m=1e-8, probe_pixel_height_m=1e-8,
        object=obj, object_center_x_m=0.0, object_center_y_m=0.0,
        object_pixel_width_m=1e-8, object_pixel_height_m=1e-8,
    )


def _phase(phase: str, path: Path, size: int, n_positions: int) -> dict[str, float]:
    baseline = _rss_bytes()
    if phase == "write":
        product = _make_product(size, n_positions)
        start = time.perf_counter()
        write_product(path, product)
    else:
        start = time.perf_counter()
        product = read_product(path)
        if product.object.shape != (1, size, size) or product.n_positions != n_positions:
            raise SystemExit(f"read back shapes {product.object.shape}, {product.n_positions} positions")
    seconds = time.perf_counter() - start
    data = product.object.nbytes + product.probe.nbytes + 3 * product.position_x_m.nbytes
    return {"seconds": seconds, "peak_rss_bytes": _peak_rss_bytes(), "baseline_rss_bytes": baseline, "data_bytes": data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=None, help="where the temporary file goes")
    parser.add_argument("--phase", choices=("write", "read"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.path, args.size, args.positions)))
        return
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        path = Path(tmp) / "product.h5"
        results = {}
        for phase in ("write", "read"):
            out = subprocess.run([sys.executable, __file__, "--phase", phase, "--path", str(path),
                                  "--size", str(args.size), "--positions", str(args.positions)],
                                 check=True, capture_output=True, text=True).stdout
            results[phase] = json.loads(out)
        file_bytes = path.stat().st_size
    data = results["write"]["data_bytes"]
    report = {"object_shape": [args.size, args.size], "positions": args.positions,
              "data_mib": round(data / 2**20, 1), "file_mib": round(file_bytes / 2**20, 1)}
    for phase, r in results.items():
        report[f"{phase}_s"] = round(r["seconds"], 3)
        report[f"{phase}_peak_rss_mib"] = round(r["peak_rss_bytes"] / 2**20, 1)
        report[f"{phase}_overhead"] = round((r["peak_rss_bytes"] - r["baseline_rss_bytes"]) / data, 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
