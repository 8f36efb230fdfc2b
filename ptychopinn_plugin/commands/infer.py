"""`ptychopinn infer MODEL_DIR DATA -o OUT`: reconstruct a scan with a trained model.

OUT ending in .h5 is a Ptychodus product (metadata, positions and probe of DATA when it is a product
or batch folder; the training loss history as its losses), .npz a reconstruction NPZ; an
amplitude/phase PNG is written beside it. The object lies on DATA's object grid when DATA has one.
--refine-steps K moves each predicted patch K data-consistency (ePIE) steps towards its own measured
pattern before stitching: a network-plus-physics hybrid, no longer the network's output alone.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ptycho.config.config import InferenceConfig
from ptychopinn_plugin.commands import common


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("infer", help="reconstruct a scan with a trained model", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model directory (holding wts.h5.zip) or bundle file")
    p.add_argument("data", help="scan to reconstruct")
    p.add_argument("-o", "--output", required=True, type=Path, help="output .h5 (product) or .npz")
    p.add_argument("--batch-size", type=int, default=InferenceConfig.batch_size)
    p.add_argument("--neighbors", type=int, default=InferenceConfig.n_nearest_neighbors,
                   help=f"K nearest neighbours for grouping (default {InferenceConfig.n_nearest_neighbors})")
    p.add_argument("--passes", type=int, default=InferenceConfig.passes,
                   help="predict every pattern at least this many times and average "
                        f"(default {InferenceConfig.passes})")
    p.add_argument("--symmetry-average", action="store_true",
                   help="also predict every pattern mirrored and turned by each symmetry of the probe and "
                        "average (exact; one network pass per symmetry, up to 8x slower)")
    p.add_argument("--refine-steps", type=int, default=InferenceConfig.refine_steps, metavar="K",
                   help="then move each predicted patch K data-consistency steps towards its own measured pattern "
                        "(ePIE on each pattern alone with the model's probe; PINN models; default 0: the network's "
                        "patches as they are)")
    common.add_data_options(p)
    p.set_defaults(func=run)


def input_product(data_path: str):
    """The Ptychodus product DATA came from, if it is a product file or batch folder."""
    from ptychopinn_plugin.batch_folder import read_batch_folder
    from ptychopinn_plugin.product_hdf5 import read_product

    path = Path(data_path)
    if path.is_dir():
        return read_batch_folder(path)[0]
    if path.suffix.lower() in (".h5", ".hdf5") and path.name != "diffraction.h5":
        return read_product(path)
    return None


def object_grid(scan) -> tuple[tuple[int, int], tuple[float, float]]:
    """The scan's object grid, or a grid from object pixel (0, 0) that covers every patch."""
    if scan.object is not None:
        return scan.object.shape, (0.0, 0.0)
    reach = scan.positions.max(axis=0) + scan.N
    return (int(math.ceil(reach[1])), int(math.ceil(reach[0]))), (0.0, 0.0)


def infer_to_file(model, scan, output: Path, *, product=None, batch_size: int = 64, neighbors: int = 7,
                  passes: int = 1, symmetry_average: bool = False, refine_steps: int = 0, quiet: bool = False):
    """Reconstruct `scan` and write OUT (+ PNG); returns the Reconstruction."""
    from ptycho.inference import reconstruct
    from ptychopinn_plugin.reconstruction_files import write_reconstruction

    if output.suffix.lower() not in (".h5", ".hdf5", ".npz"):
        raise ValueError(f"{output}: unsupported output (expected .h5/.hdf5 for a Ptychodus product or .npz)")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"{output}: folder '{output.parent}' does not exist")
    with common.batch_progress(disable=quiet) as on_batch:
        result = reconstruct(model, scan, grid=object_grid(scan), n_nearest_neighbors=neighbors,
                             passes=passes, batch_size=batch_size, on_batch=on_batch,
                             symmetry_average=symmetry_average, refine_steps=refine_steps)
    losses = list(enumerate(model.history.get("loss", []), start=1))
    write_reconstruction(output, scan, result.object, result.weights, losses=losses, input_product=product)
    return result


def run(args: argparse.Namespace) -> int:
    from ptycho.bundle import load_bundle

    model = load_bundle(args.model)
    scan = common.open_data(args.data, stream=args.stream)
    if args.stream:
        raise ValueError("--stream: streamed inference writes need a scan with an object grid; use the Python API")
    result = infer_to_file(model, scan, args.output, product=input_product(args.data), batch_size=args.batch_size,
                           neighbors=args.neighbors, passes=args.passes, symmetry_average=args.symmetry_average,
                           refine_steps=args.refine_steps)
    covered = float(np.mean(result.weights > 0))
    print(f"wrote {args.output} and {args.output.with_suffix('.png')} ({scan.n_patterns} patterns, "
          f"{result.timings['total_seconds']:.1f} s, {covered:.0%} of the object covered)")
    return 0
