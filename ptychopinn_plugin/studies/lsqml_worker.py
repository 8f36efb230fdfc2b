"""Child process of `studies.lsqml.run_lsqml`: one pty-chi LSQML reconstruction, NPZ in, NPZ out.

    python -m ptychopinn_plugin.studies.lsqml_worker REQUEST.npz RESULT.npz

REQUEST (already in pty-chi's conventions, see `studies.lsqml`): counts float32 (n, N, N) with zero
frequency at the centre; positions_yx float64 (n, 2) relative to origin_yx (2,) object pixels;
probe complex64 (N, N) for pty-chi's unnormalised FFT; object_shape int (2,); settings: a JSON string
of `LsqmlSettings`. RESULT: object complex64 (H, W), probe complex64 (N, N) (pty-chi's convention),
seconds (the epochs) and build_seconds (building the task). Never imports TensorFlow.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def reconstruct(request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Build pty-chi's LSQML task from a request's arrays, run it, return the result's arrays."""
    import torch
    from ptychi import api
    from ptychi.api.task import PtychographyTask

    settings = json.loads(str(request["settings"]))
    object_shape = tuple(int(v) for v in request["object_shape"])
    counts = request["counts"]
    options = api.LSQMLOptions()
    options.data_options.fft_shift = True  # the counts have zero frequency at the centre
    options.object_options.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    options.object_options.position_origin_coords = [float(v) for v in request["origin_yx"]]
    options.object_options.remove_object_probe_ambiguity.enabled = settings["refine_probe"]
    options.probe_options.optimizable = settings["refine_probe"]
    options.probe_options.optimization_plan.start = 1
    options.probe_position_options.optimizable = False
    reconstructor = options.reconstructor_options
    reconstructor.num_epochs = settings["epochs"]
    reconstructor.batch_size = min(settings["batch_size"], len(counts))
    reconstructor.noise_model = api.NoiseModels(settings["noise_model"])
    reconstructor.rescale_probe_intensity_in_first_epoch = False  # the probe is on the data's scale
    reconstructor.random_seed = settings["seed"]
    use_gpu = settings["device"] == "gpu" or (settings["device"] == "auto" and torch.cuda.is_available())
    reconstructor.default_device = api.Devices.GPU if use_gpu else api.Devices.CPU

    start = time.perf_counter()
    task = PtychographyTask(
        options,
        diffraction_data=counts,
        object_data=np.ones((1, *object_shape), np.complex64),
        probe_data=request["probe"][None, None],
        probe_position_x_px=request["positions_yx"][:, 1],
        probe_position_y_px=request["positions_yx"][:, 0],
    )
    built = time.perf_counter()
    task.run()
    if use_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - built
    return {
        "object": task.get_data_to_cpu("object", as_numpy=True)[0].astype(np.complex64),
        "probe": task.get_data_to_cpu("probe", as_numpy=True)[0, 0].astype(np.complex64),
        "seconds": np.float64(seconds),
        "build_seconds": np.float64(built - start),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m ptychopinn_plugin.studies.lsqml_worker REQUEST.npz RESULT.npz", file=sys.stderr)
        return 2
    with np.load(argv[0], allow_pickle=False) as npz:
        request = {key: npz[key] for key in npz.files}
    result = reconstruct(request)
    out = Path(argv[1])
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
