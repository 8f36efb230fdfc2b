"""Inference: group -> one network pass per batch -> stitch onto the object grid.

Coverage: groups are chosen to cover the scan (`grouping.cover_positions`): every pattern is
predicted at least `passes` times (>= 1), so the whole scan is always reconstructed, with about
n / C groups per pass (a gridsize-2 'stacked' network predicts 4 patterns per pass through the network).
A 'per_pattern' network maps each pattern on its own, so it runs as its gridsize-1 twin
(`networks.single_pattern_twin`), once per pattern and pass, and the stitcher's weighted mean of
overlapping patches does what the group merge does in training. The stitcher weights every patch
pixel by the model probe's intensity (`stitching.illumination_weight`), so each object pixel is
mostly decided by the patterns that illuminated it well.

Optionally (`refine_steps`), each predicted patch then takes a few data-consistency steps towards its
own measured pattern before stitching (`physics.data_consistency_step`: ePIE on each pattern alone, with
the model's probe and intensity scale; no overlap, no training). This is no longer the network's output
alone: the network gives the starting point, the physics the correction.

The compiled prediction function is built on a model's first `reconstruct` call and reused by later
calls (no second XLA compilation); it takes the model's weights as arguments, so it always predicts
with the model's current weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

from ptycho import backend, physics
from ptycho.batches import GroupedBatches
from ptycho.datasource import ScanSource, open_source
from ptycho.grouping import cover_positions, int_in_range
from ptycho.networks import single_pattern_twin
from ptycho.scan import ScanData
from ptycho.stitching import Stitcher, canvas_covering, illumination_weight
from ptycho.symmetry import DIHEDRAL_OPS, DihedralOp, inverse, required_symmetries, transform_images, transform_offsets
from ptycho.training import TrainedModel


@dataclass
class Reconstruction:
    """A reconstructed object.

    object: complex64 (H, W) on the target grid; weights: float64 (H, W) coverage (0 = not covered);
    origin: (x, y) object-pixel coordinates of object[0, 0] ((0, 0) when the input's object grid is
    the target, so the result overlays the input object pixel for pixel).
    patches: optional complex64 (n, N, N) per-pattern predicted patches (averaged over groups).
    predicted_amplitudes: optional float32 (n, N, N) predicted diffraction AMPLITUDES (PINN only).
    """

    object: np.ndarray
    weights: np.ndarray
    origin: tuple[float, float]
    patches: np.ndarray | None = None
    predicted_amplitudes: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def reconstruct(
    model: TrainedModel,
    data: ScanData | ScanSource | str,
    *,
    grid: tuple[tuple[int, int], tuple[float, float]] | None = None,
    n_nearest_neighbors: int = 7,
    passes: int = 1,
    batch_size: int = 64,
    keep: int | None = None,
    illumination_weighted: bool = True,
    return_patches: bool = False,
    return_diffraction: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    stream: bool = False,
    symmetry_average: bool = False,
    refine_steps: int = 0,
) -> Reconstruction:
    """Reconstruct the object of a scan with a trained model.

    grid: ((H, W), origin (x, y)) of the target canvas; default: the input's object grid when it has
        one, else the smallest canvas covering the scan.
    n_nearest_neighbors: K, the neighbours (besides the anchor) a group's members are drawn from.
    passes: every pattern is predicted at least this many times, in different groups (predictions are
        averaged); a network that maps patterns one at a time predicts each once.
    keep: side of the central region of each patch that is stitched (default N/2).
    illumination_weighted: weight each patch pixel by the probe intensity when stitching (default);
        False: a plain mean.
    on_batch(done, total): progress callback.
    symmetry_average: predict every group once per mirror or quarter turn that leaves the model's probe
        unchanged (`ptycho.symmetry`), turn each prediction back and average them (exact: the turned
        patterns are those of the turned object); costs one network pass per symmetry. ConfigError when
        the probe has no symmetry besides the identity.
    refine_steps: after the network (and the symmetry average), move each pattern's patch this many
        data-consistency steps towards its own measured diffraction (`refiner`; two FFTs per pattern and
        step). The predicted diffraction, when asked for, is then that of the refined patches.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    source = open_source(data, stream=stream)
    config = model.config
    if source.N != config.N:
        raise ValueError(f"{source.source}: 'diff3d': the model was trained on {config.N} x {config.N} patterns, "
                         f"the data have {source.N} x {source.N}")
    refine_steps = int_in_range("refine_steps", refine_steps, 0, None)
    if refine_steps and config.model_type != "pinn":
        raise ValueError("refine_steps: needs a PINN model (its learned intensity scale), got a "
                         f"{config.model_type!r} model")
    refine = refiner(model, refine_steps) if refine_steps else None
    predict, gridsize = predictor(model, return_diffraction and refine is None)
    groups = cover_positions(source.positions, gridsize, n_neighbors=n_nearest_neighbors + 1,
                             passes=passes if gridsize > 1 else 1)
    timings["grouping_seconds"] = time.perf_counter() - start

    if grid is None:
        grid = ((source.object.shape), (0.0, 0.0)) if source.object is not None else \
            canvas_covering(source.positions, config.N, keep)
    shape, origin = grid
    symmetries = required_symmetries(model.probe, "symmetry_average", "the model's probe") if symmetry_average \
        else DIHEDRAL_OPS[:1]
    weight = illumination_weight(model.probe) if illumination_weighted else None
    stitcher = Stitcher(tuple(shape), patch_size=config.N, origin=origin, keep=keep, weight=weight)
    batches = GroupedBatches(source, groups, batch_size)
    n = config.N
    patch_sum = np.zeros((source.n_patterns, n, n), np.complex64) if return_patches else None
    diffraction_sum = np.zeros((source.n_patterns, n, n), np.float32) if return_diffraction else None
    counts = np.zeros(source.n_patterns, np.int64)
    predict_seconds = 0.0
    for index in range(len(batches)):
        (inputs,) = batches[index]
        valid = batches.n_valid(index)
        members = groups.indices[batches.group_ids(index)[:valid]]
        t0 = time.perf_counter()
        patches, diffraction = predict_averaged(predict, inputs, symmetries, valid)
        if refine is not None:
            patches, diffraction = refine(patches, inputs["diffraction"][:valid].transpose(0, 3, 1, 2))
        predict_seconds += time.perf_counter() - t0
        stitcher.add(patches, source.positions[members])
        np.add.at(counts, members.ravel(), 1)
        if patch_sum is not None:
            np.add.at(patch_sum, members.ravel(), patches.reshape(-1, n, n))
        if diffraction_sum is not None:
            np.add.at(diffraction_sum, members.ravel(), diffraction.reshape(-1, n, n))
        if on_batch is not None:
            on_batch(index + 1, len(batches))
    stitched = stitcher.result()
    timings["predict_seconds"] = predict_seconds
    timings["total_seconds"] = time.perf_counter() - start
    per_pattern = np.maximum(counts, 1)[:, None, None]
    return Reconstruction(
        object=stitched.image,
        weights=stitched.weights,
        origin=stitched.origin,
        patches=None if patch_sum is None else patch_sum / per_pattern,
        predicted_amplitudes=None if diffraction_sum is None else diffraction_sum / per_pattern,
        timings=timings,
    )


def predict_averaged(predict: Callable[[dict], dict], inputs: dict, symmetries: tuple[DihedralOp, ...],
                     valid: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over `symmetries` of the predictions for the turned groups, each turned back.

    Returns complex64 patches (valid, C, N, N) and, when `predict` gives it, the predicted diffraction
    amplitudes float32 (valid, C, N, N); else None.
    """
    patch_sum, diffraction_sum = 0, None
    for op in symmetries:
        turned = {"diffraction": np.ascontiguousarray(transform_images(inputs["diffraction"], op, axes=(1, 2))),
                  "offsets": transform_offsets(inputs["offsets"], op)}
        outputs = {k: backend.to_numpy(v)[:valid] for k, v in predict(turned).items()}
        patch_sum = patch_sum + transform_images(complex_patches(outputs), inverse(op))
        if "diffraction" in outputs:
            diffraction = transform_images(outputs["diffraction"].transpose(0, 3, 1, 2), inverse(op))
            diffraction_sum = diffraction if diffraction_sum is None else diffraction_sum + diffraction
    scale = 1.0 / len(symmetries)
    return (patch_sum * scale).astype(np.complex64), None if diffraction_sum is None else diffraction_sum * scale


def refiner(model: TrainedModel, steps: int) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A compiled function (patches, measured) -> (refined patches, their predicted diffraction).

    patches: complex64 (B, C, N, N); measured: float32 (B, C, N, N) measured AMPLITUDES. Each patch takes
    `steps` `physics.data_consistency_step`s (step size 1) with the model's probe and intensity scale as
    they are when `refiner` is called; returns complex64 (B, C, N, N) and float32 (B, C, N, N) predicted
    AMPLITUDES. The compiled steps are built once per number of steps and kept in `model.compiled`.
    """
    key = ("refine", steps)
    if key not in model.compiled:
        def run(patch_pairs, measured, probe, scale):
            target = measured / scale
            refined = ops.fori_loop(0, steps, lambda _, p: physics.data_consistency_step(p, probe, target, 1.0),
                                    patch_pairs)
            return refined, physics.far_field_amplitude(physics.illuminate(refined, probe)) * scale

        model.compiled[key] = backend.compile_function(run)
    compiled = model.compiled[key]
    probe, scale = physics.complex_to_pair(model.probe), np.float32(model.intensity_scale)  # read once per call

    def refine(patches: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        refined, amplitudes = compiled(physics.complex_to_pair(patches), np.asarray(measured, np.float32), probe, scale)
        return physics.pair_to_complex(refined), backend.to_numpy(amplitudes)

    return refine


def complex_patches(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """complex64 (B, C, N, N): the PINN's consistent patches, else the heads' amplitude and phase."""
    if "object_patches" in outputs:
        pair = outputs["object_patches"]
        return (pair[..., 0] + 1j * pair[..., 1]).astype(np.complex64)
    patches = outputs["object_amplitude"] * np.exp(1j * outputs["object_phase"])
    return patches.astype(np.complex64).transpose(0, 3, 1, 2)


def inference_network(model: TrainedModel) -> tuple[keras.Model, int]:
    """The network inference runs and the gridsize of the groups it takes."""
    config = model.config
    if config.network_layout == "per_pattern" and config.gridsize > 1:
        return single_pattern_twin(model.keras_model, model.spec), 1
    return model.keras_model, config.gridsize


def predictor(model: TrainedModel, with_diffraction: bool = False) -> tuple[Callable[[dict], dict], int]:
    """The compiled prediction function of a trained model and the gridsize of the groups it takes.

    Built on first use and kept in `model.compiled`. A per-pattern network predicts through its
    gridsize-1 twin, which reads the model's own weights (by variable path), so the cached function
    follows any later change of the model's weights.
    """
    key = ("predict", with_diffraction)
    if key not in model.compiled:
        network, gridsize = inference_network(model)
        model.compiled[key] = (compiled_predictor(network, with_diffraction, weights_of=model.keras_model), gridsize)
    return model.compiled[key]


def compiled_predictor(keras_model: keras.Model, with_diffraction: bool,
                       weights_of: keras.Model | None = None) -> Callable[[dict], dict]:
    """A compiled function: inputs -> object outputs (and predicted diffraction when asked).

    The weights are arguments of the compiled function, read from `weights_of` (default: the network
    itself; a model whose variables have the same paths, e.g. the network a twin was built from) on
    every call: no recompilation, and never stale weights.
    """
    is_pinn = "diffraction" in keras_model.output
    if with_diffraction and not is_pinn:
        raise ValueError("predicted diffraction is only available for PINN models")
    names = ["object_patches"] if is_pinn else ["object_amplitude", "object_phase"]
    names += ["diffraction"] if with_diffraction else []
    sub_model = keras.Model(keras_model.input, {k: keras_model.output[k] for k in names})
    source = {v.path: v for v in (weights_of or keras_model).variables}
    trainable = [source[v.path] for v in sub_model.trainable_variables]
    non_trainable = [source[v.path] for v in sub_model.non_trainable_variables]

    def run(trainable_values, non_trainable_values, inputs):
        outputs, _ = sub_model.stateless_call(trainable_values, non_trainable_values, inputs, training=False)
        return outputs

    compiled = backend.compile_function(run)
    return lambda inputs: compiled([v.value for v in trainable], [v.value for v in non_trainable], inputs)
