"""`ptychopinn simulate -o OUT.npz`: write a simulated scan with ground truth as a reference NPZ."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptycho.npz_io import save_scan_npz
from ptycho.scan import ScanData
from ptycho.simulate import OBJECT_KINDS, PROBE_KINDS, SCAN_KINDS, SimulationConfig, simulate


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simulate", help="simulate a scan with ground truth (reference NPZ)",
                              description=__doc__)
    p.add_argument("-o", "--output", required=True, type=Path, help="output .npz")
    p.add_argument("--object", default=SimulationConfig.object_kind,
                   help=f"object: one of {', '.join(k for k in OBJECT_KINDS if k != 'image')}, or a PNG file")
    p.add_argument("--N", type=int, default=SimulationConfig.N,
                   help=f"pattern size in pixels (default {SimulationConfig.N})")
    p.add_argument("--n-images", type=int, default=SimulationConfig.n_images,
                   help=f"number of scan positions (default {SimulationConfig.n_images})")
    p.add_argument("--nphotons", type=float, default=SimulationConfig.nphotons,
                   help=f"mean photons per pattern (default {SimulationConfig.nphotons:g}); 0 = no noise")
    p.add_argument("--seed", type=int, default=SimulationConfig.seed)
    p.add_argument("--step", type=float, default=None, help="scan step in pixels (default N/10)")
    p.add_argument("--scan", choices=SCAN_KINDS, default=SimulationConfig.scan_kind)
    p.add_argument("--probe", choices=[k for k in PROBE_KINDS if k != "array"], default=SimulationConfig.probe_kind)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    kinds = [k for k in OBJECT_KINDS if k != "image"]
    is_image = args.object not in kinds
    if is_image and not Path(args.object).is_file():
        raise ValueError(f"--object: expected one of {kinds} or an existing PNG file, got {args.object!r}")
    return SimulationConfig(
        object_kind="image" if is_image else args.object, image=args.object if is_image else None,
        N=args.N, n_images=args.n_images, step=args.step or args.N / 10, scan_kind=args.scan,
        probe_kind=args.probe, nphotons=args.nphotons or None, seed=args.seed)


def simulate_to_file(config: SimulationConfig, output: Path) -> ScanData:
    scan = simulate(config)
    save_scan_npz(scan, output)
    return scan


def run(args: argparse.Namespace) -> int:
    scan = simulate_to_file(config_from_args(args), args.output)
    print(f"wrote {args.output}: {scan.n_patterns} patterns of {scan.N}x{scan.N}, object {scan.object.shape}")
    return 0
