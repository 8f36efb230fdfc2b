"""`ptychopinn evaluate RECON --truth DATA [-o metrics.json]`: score a reconstruction against ground truth.

Restricts to the scanned region, removes the global phase offset, matches the amplitude scale and
registers with sub-pixel cross-correlation, then prints amplitude/phase SSIM, PSNR, MAE and FRC
(as JSON) and writes them with a comparison figure (metrics .png beside the JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptycho.atomic import atomic_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="score a reconstruction against ground truth", description=__doc__)
    p.add_argument("reconstruction", type=Path, help="reconstruction .npz or product .h5")
    p.add_argument("--truth", required=True, help="scan with a ground-truth object (e.g. a simulated NPZ)")
    p.add_argument("-o", "--output", type=Path, default=None, help="metrics JSON (default RECON.metrics.json)")
    p.add_argument("--phase-plane", action="store_true", help="also remove a linear phase ramp")
    p.set_defaults(func=run)


def evaluate_files(reconstruction: Path, truth_path: str, output: Path, *, phase_plane: bool = False) -> dict:
    from ptycho import metrics
    from ptychopinn_plugin.convert import load_scan
    from ptychopinn_plugin.reconstruction_files import read_reconstruction

    obj = read_reconstruction(reconstruction)
    truth = load_scan(truth_path)
    if truth.object is None:
        raise ValueError(f"{truth_path}: 'objectGuess': no ground-truth object to compare with")
    if obj.shape != truth.object.shape:
        raise ValueError(f"{reconstruction}: 'object': expected the truth's grid {truth.object.shape}, got {obj.shape}")
    region = metrics.covered_region(truth.positions, truth.N, truth.object.shape)
    scores = metrics.evaluate(obj, truth.object, region=region, remove_phase_plane=phase_plane)
    aligned, truth_crop, _ = metrics.align(obj[region], truth.object[region], remove_phase_plane=phase_plane)
    metrics.comparison_figure(aligned, truth_crop, output.with_suffix(".png"), scores)
    with atomic_output(output) as tmp:
        tmp.write_text(json.dumps(scores, indent=2))
    return scores


def run(args: argparse.Namespace) -> int:
    output = args.output or args.reconstruction.with_suffix(".metrics.json")
    scores = evaluate_files(args.reconstruction, args.truth, output, phase_plane=args.phase_plane)
    print(json.dumps(scores, indent=2))
    print(f"wrote {output} and {output.with_suffix('.png')}")
    return 0
