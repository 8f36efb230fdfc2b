"""The legacy global parameter dictionary of the Ptychodus 1.7 compatibility facade.

Ptychodus 1.7's built-in PtychoPINN integration drives a module-level API in a spawned child process
(see docs/ptychodus.md). The facade modules (`raw_data`, `probe`, `loader`, `tf_helper`,
`model_manager`, `workflows.components`) keep ALL of their state in the one dictionary `cfg` below;
the core (`ptycho.training`, `ptycho.inference`, ...) never reads it.

Keys:
  configuration fields   copied by `ptycho.config.config.update_legacy_dict(cfg, config)` (flattened:
                         `N`, `gridsize`, `n_filters_scale`, `model_type`, `nepochs`, ...)
  intensity_scale        float: the scale between the facade's normalised diffraction `X` and the
                         measured amplitudes (`X * intensity_scale` = amplitudes = sqrt(counts)); set by
                         `workflows.components.load_inference_bundle` and `run_cdi_example`
  probe                  complex64 (N, N): the probe guess recorded by `probe.set_probe_guess`
  object_shape           (H, W) of the object grid of the data last grouped by `loader.load`, or None;
                         `tf_helper.reassemble_position` stitches onto this grid
  trained_model          the `ptycho.training.TrainedModel` of the last `run_cdi_example`, written by
                         `model_manager.save`
  stitch_weight          float32 (N, N): the patch-pixel weights `tf_helper.reassemble_position` stitches
                         with, the intensity of the model's probe (`stitching.illumination_weight`); set
                         with intensity_scale
"""

from __future__ import annotations

from typing import Any

cfg: dict[str, Any] = {}


def get(key: str) -> Any:
    """The value of `cfg[key]`; raises KeyError naming the key when it is unset."""
    try:
        return cfg[key]
    except KeyError:
        raise KeyError(f"ptycho.params.cfg[{key!r}] is not set") from None
