"""Exact augmentation from the probe's symmetries (`ptycho.symmetry`) and training with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ptycho import physics
from ptycho.batches import GroupedBatches
from ptycho.config.config import ConfigError, ModelConfig, TrainingConfig
from ptycho.datasource import InMemorySource
from ptycho.grouping import group_positions
from ptycho.simulate import SimulationConfig, make_probe, simulate
from ptycho.inference import predict_averaged, predictor, reconstruct
from ptycho.symmetry import (DIHEDRAL_OPS, inverse, probe_symmetries, transform_images, transform_offsets,
                             turn_groups)
from ptycho.training import TrainedModel, train


@pytest.fixture(scope="module")
def measured():
    return simulate(SimulationConfig(N=32, n_images=120, step=3.0, nphotons=1e6, seed=0))


@pytest.mark.parametrize("op", DIHEDRAL_OPS[1:], ids=str)
def test_a_turned_group_diffracts_exactly_like_the_turned_object(op):
    """|F(probe * patch)| turned by g == the patterns of the object turned by g at the turned offsets."""
    probe = make_probe("disk", 32)
    rng = np.random.default_rng(0)
    obj = ((0.5 + 0.5 * rng.random((96, 96))) * np.exp(1j * rng.random((96, 96)))).astype(np.complex64)
    centre, local = 48.0, np.array([[3.0, -5.0], [-4.0, 2.0], [6.0, 7.0], [-5.0, -4.0]])  # (x, y)
    patterns = physics.diffraction_amplitudes(obj, probe, centre + local)
    turned = physics.diffraction_amplitudes(transform_images(obj, op), probe, centre + transform_offsets(local, op))
    np.testing.assert_allclose(turned, transform_images(patterns, op), atol=1e-5 * patterns.max())
    assert np.linalg.norm(turned - patterns) > 0.05 * np.linalg.norm(patterns)  # the patterns did change


def test_probe_symmetries_finds_exactly_the_operations_that_keep_the_probe():
    disk = make_probe("disk", 32)
    assert probe_symmetries(disk) == probe_symmetries(make_probe("gaussian", 64)) == DIHEDRAL_OPS
    y, x = np.mgrid[-16:16, -16:16]
    ellipse = np.exp(-(x / 6.0) ** 2 - (y / 3.0) ** 2).astype(np.complex64)  # mirrors only, no 90-degree turn
    assert probe_symmetries(ellipse) == tuple(op for op in DIHEDRAL_OPS if not op.transpose)
    assert probe_symmetries(np.roll(disk, (1, 2), axis=(0, 1))) == DIHEDRAL_OPS[:1]  # off-centre: identity only
    with pytest.raises(ValueError, match="square complex"):
        probe_symmetries(np.zeros((4, 6)))


@pytest.mark.parametrize("op", DIHEDRAL_OPS, ids=str)
def test_inverse_undoes_each_operation(op):
    images = np.random.default_rng(0).random((3, 8, 8))
    offsets = np.random.default_rng(1).normal(size=(5, 2))
    np.testing.assert_array_equal(transform_images(transform_images(images, op), inverse(op)), images)
    np.testing.assert_allclose(transform_offsets(transform_offsets(offsets, op), inverse(op)), offsets)
    assert inverse(inverse(op)) == op


def test_turn_groups_turns_offsets_and_images_of_each_group_together():
    rng = np.random.default_rng(1)
    offsets = rng.normal(size=(64, 4, 2)).astype(np.float32)
    images = rng.random((64, 8, 8, 4)).astype(np.float32)
    patches = rng.random((64, 8, 8, 4)).astype(np.float32)
    originals = offsets.copy(), images.copy(), patches.copy()
    op = DIHEDRAL_OPS[5]
    turns = np.random.default_rng(2).integers(2, size=64)
    out_offsets, out_images, out_patches = turn_groups(turns, (DIHEDRAL_OPS[0], op), offsets, images, patches)
    for i, was_turned in enumerate(turns == 1):
        expected = [transform_images(a[i], op, axes=(0, 1)) if was_turned else a[i] for a in (images, patches)]
        np.testing.assert_array_equal(out_images[i], expected[0])
        np.testing.assert_array_equal(out_patches[i], expected[1])
        np.testing.assert_array_equal(out_offsets[i], transform_offsets(offsets[i], op) if was_turned else offsets[i])
    for array, original in zip((offsets, images, patches), originals):  # the inputs are left untouched
        np.testing.assert_array_equal(array, original)


def test_training_batches_are_turned_and_validation_batches_are_not(measured):
    groups = group_positions(measured.positions, 2, n_neighbors=8, seed=0)
    ops = probe_symmetries(measured.probe)
    source = InMemorySource(measured)
    plain = GroupedBatches(source, groups, 16, targets="supervised")
    augmented = GroupedBatches(source, groups, 16, targets="supervised", symmetries=ops, seed=3)
    (inputs, targets), (turned_inputs, turned_targets) = plain[0], augmented[0]
    changed = ~np.all(np.isclose(turned_inputs["offsets"], inputs["offsets"]), axis=(1, 2))
    assert changed.sum() >= 8
    for i in np.flatnonzero(changed):  # some operation maps each group's inputs and targets alike
        matches = [op for op in ops
                   if np.allclose(transform_offsets(inputs["offsets"][i], op), turned_inputs["offsets"][i])
                   and np.array_equal(transform_images(inputs["diffraction"][i], op, axes=(0, 1)),
                                      turned_inputs["diffraction"][i])
                   and np.array_equal(transform_images(targets["object_phase"][i], op, axes=(0, 1)),
                                      turned_targets["object_phase"][i])]
        assert matches, f"group {i} was not turned consistently"
    again = GroupedBatches(source, groups, 16, targets="supervised", symmetries=ops, seed=3)
    np.testing.assert_array_equal(again[0][0]["diffraction"], turned_inputs["diffraction"])  # seeded
    augmented.on_epoch_end()  # new turns every epoch
    assert not np.array_equal(augmented[0][0]["offsets"], turned_inputs["offsets"])


AUGMENTED_TRAINING = TrainingConfig(model=ModelConfig(N=32, gridsize=2, n_filters_scale=1), nepochs=1,
                                    batch_size=16, symmetry_augmentation=True)


@pytest.fixture(scope="module")
def augmented_model(measured):
    """Shared by the tests below: one epoch of augmented training, done once."""
    return train(measured, AUGMENTED_TRAINING)


def test_training_with_symmetry_augmentation(measured, augmented_model):
    plain = train(measured, dataclasses.replace(AUGMENTED_TRAINING, symmetry_augmentation=False))
    assert augmented_model.summary["n_augmentation_symmetries"] == 8
    assert plain.summary["n_augmentation_symmetries"] == 0
    assert np.isfinite(augmented_model.history["loss"]).all()
    assert augmented_model.history["loss"] != plain.history["loss"]
    assert train(measured, AUGMENTED_TRAINING).history == augmented_model.history  # seeded and repeatable
    off_centre = dataclasses.replace(measured, probe=np.roll(measured.probe, (1, 2), axis=(0, 1)))
    with pytest.raises(ConfigError, match="symmetry_augmentation.*no mirror or 90-degree symmetry"):
        train(off_centre, AUGMENTED_TRAINING)


def test_symmetry_averaged_prediction_is_exactly_equivariant(measured, augmented_model):
    """Averaging over the probe's symmetries makes the prediction of a turned pattern the turned
    prediction, as the physics demands; the network alone is only roughly so."""
    predict, gridsize = predictor(augmented_model)
    groups = group_positions(measured.positions, gridsize, n_neighbors=8, seed=0)
    (inputs,) = GroupedBatches(InMemorySource(measured), groups, 16)[0]
    ops = probe_symmetries(augmented_model.probe)
    op = DIHEDRAL_OPS[5]  # a transpose and a mirror: a quarter turn
    turned_inputs = {"diffraction": np.ascontiguousarray(transform_images(inputs["diffraction"], op, axes=(1, 2))),
                     "offsets": transform_offsets(inputs["offsets"], op)}
    averaged, _ = predict_averaged(predict, inputs, ops, 16)
    turned_averaged, _ = predict_averaged(predict, turned_inputs, ops, 16)
    np.testing.assert_allclose(turned_averaged, transform_images(averaged, op), atol=1e-5)
    single, _ = predict_averaged(predict, inputs, ops[:1], 16)
    turned_single, _ = predict_averaged(predict, turned_inputs, ops[:1], 16)
    assert np.max(np.abs(turned_single - transform_images(single, op))) > 1e-3
    assert averaged.shape == (16, gridsize ** 2, 32, 32) and averaged.dtype == np.complex64


def test_reconstruct_with_symmetry_average(measured, augmented_model, monkeypatch):
    plain = reconstruct(augmented_model, measured, return_diffraction=True)
    averaged = reconstruct(augmented_model, measured, symmetry_average=True, return_diffraction=True)
    covered = plain.weights > 0
    np.testing.assert_array_equal(averaged.weights > 0, covered)
    difference = np.abs(averaged.object - plain.object)[covered]
    assert 1e-4 < difference.mean() < 0.5 * np.abs(plain.object[covered]).mean()
    assert averaged.predicted_amplitudes.shape == plain.predicted_amplitudes.shape
    assert not np.allclose(averaged.predicted_amplitudes, plain.predicted_amplitudes)
    off_centre = np.roll(augmented_model.probe, (1, 2), axis=(0, 1))
    monkeypatch.setattr(TrainedModel, "probe", property(lambda self: off_centre))
    with pytest.raises(ConfigError, match="symmetry_average: the model's probe: the probe has no mirror"):
        reconstruct(augmented_model, measured, symmetry_average=True)
