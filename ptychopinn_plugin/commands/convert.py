"""`ptychopinn convert IN OUT`: convert a scan between the reference NPZ and Ptychodus formats.

IN: a reference or Ptychodus training-data NPZ, a Ptychodus batch folder, a product .h5 with
diffraction.h5 beside it, or the Siemens-star .npz.bz2. OUT: a folder (an existing folder or a name
without suffix) = Ptychodus batch folder; .h5 = product file; .npz = reference NPZ.
"""

from __future__ import annotations

import argparse
import logging

from ..convert import GeometryDefaults, convert, output_kind

logger = logging.getLogger(__name__)
_DEFAULTS = GeometryDefaults()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a scan between NPZ and Ptychodus formats",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="scan to read (.npz, .npz.bz2, product .h5, or a batch folder)")
    parser.add_argument("output", help="folder (Ptychodus batch folder), .h5 (product) or .npz (reference NPZ)")
    parser.add_argument("--name", help="product name (default: the input's, else 'ptychopinn')")
    parser.add_argument("--energy-ev", type=float, default=_DEFAULTS.photon_energy_eV,
                        help="photon energy in eV where the input has none (default %(default)g)")
    parser.add_argument("--distance-m", type=float, default=_DEFAULTS.detector_distance_m,
                        help="detector distance in m where the input has none (default %(default)g)")
    parser.add_argument("--detector-pixel-m", type=float, default=_DEFAULTS.detector_pixel_size_m,
                        help="detector pixel size in m where the input has none (default %(default)g); the "
                             "object pixel size is then wavelength * distance / (N * detector pixel)")
    parser.add_argument("--model", metavar="ZIP", help="PtychoPINN model archive to copy into a batch folder "
                        "as model.zip (needed by `ptychodus -b reconstruct`)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for option, value in (("--energy-ev", args.energy_ev), ("--distance-m", args.distance_m),
                          ("--detector-pixel-m", args.detector_pixel_m)):
        if not value > 0:
            raise ValueError(f"{option}: expected a value > 0, got {value}")
    defaults = GeometryDefaults(args.energy_ev, args.distance_m, args.detector_pixel_m)
    scan = convert(args.input, args.output, name=args.name, defaults=defaults, model_path=args.model)
    logger.info("wrote %s (%s): %d patterns of %d x %d", args.output, output_kind(args.output),
                scan.n_patterns, scan.N, scan.N)
    return 0
