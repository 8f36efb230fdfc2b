"""Tests of ptycho.grouping: nearest-neighbour groups and their offsets."""

import time

import numpy as np
import pytest

from ptycho.grouping import Groups, group_positions


def random_positions(n: int, seed: int = 0, low: float = 100.0, high: float = 400.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=(n, 2))


def brute_force_neighbours(positions: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each position's k nearest positions (itself first), by full distance sort."""
    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def as_sets(indices: np.ndarray) -> list[frozenset]:
    return [frozenset(row.tolist()) for row in indices]


@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_default_groups_cover_every_position_once_as_anchor(gridsize):
    positions = random_positions(200)
    groups = group_positions(positions, gridsize, n_neighbors=12)
    c = gridsize**2
    assert groups.indices.shape == (200, c) and groups.indices.dtype == np.int64
    assert groups.global_offsets.shape == (200, 2) and groups.global_offsets.dtype == np.float64
    assert groups.local_offsets.shape == (200, c, 2) and groups.local_offsets.dtype == np.float64
    assert (groups.n_groups, groups.n_channels) == (200, c)
    np.testing.assert_array_equal(groups.indices[:, 0], np.arange(200))
    assert all(len(s) == c for s in as_sets(groups.indices))  # members are distinct


@pytest.mark.parametrize("gridsize", [2, 3])
@pytest.mark.parametrize("selection", ["random", "nearest"])
def test_members_are_among_the_anchors_k_nearest(gridsize, selection):
    positions = random_positions(150, seed=3)
    k = 11
    groups = group_positions(positions, gridsize, n_neighbors=k, selection=selection, groups_per_position=2)
    nearest = brute_force_neighbours(positions, k)
    anchors = groups.indices[:, 0]
    for anchor, members in zip(anchors, groups.indices):
        assert set(members.tolist()) <= set(nearest[anchor].tolist())


def test_nearest_selection_takes_the_c_nearest_in_distance_order():
    positions = random_positions(120, seed=5)
    groups = group_positions(positions, 3, n_neighbors=9, selection="nearest")
    np.testing.assert_array_equal(groups.indices, brute_force_neighbours(positions, 9))


def test_random_selection_is_reproducible_by_seed():
    positions = random_positions(300, seed=1)
    a = group_positions(positions, 2, seed=7)
    b = group_positions(positions, 2, seed=7)
    c = group_positions(positions, 2, seed=8)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.local_offsets, b.local_offsets)
    assert np.mean(np.any(a.indices != c.indices, axis=1)) > 0.5


def test_offsets_are_centroid_and_position_minus_centroid():
    positions = random_positions(100, seed=2)
    groups = group_positions(positions, 2)
    members = positions[groups.indices]
    np.testing.assert_allclose(groups.global_offsets, members.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(groups.global_offsets[:, None, :] + groups.local_offsets, members)
    np.testing.assert_allclose(groups.local_offsets.mean(axis=1), 0.0, atol=1e-12)


def test_gridsize_one_groups_are_the_positions_themselves():
    positions = random_positions(50, seed=4)
    groups = group_positions(positions, 1)
    np.testing.assert_array_equal(groups.indices[:, 0], np.arange(50))
    np.testing.assert_array_equal(groups.global_offsets, positions)
    np.testing.assert_array_equal(groups.local_offsets, np.zeros((50, 1, 2)))


@pytest.mark.parametrize("selection", ["random", "nearest"])
def test_oversampling_repeats_anchors_with_distinct_subsets(selection):
    positions = random_positions(40, seed=6)
    groups = group_positions(positions, 2, n_neighbors=7, n_groups=130, selection=selection)
    anchors = groups.indices[:, 0]
    counts = np.bincount(anchors, minlength=40)
    assert groups.n_groups == 130 and counts.min() == 3 and counts.max() == 4 and counts.sum() == 130
    for anchor in range(40):
        subsets = as_sets(groups.indices[anchors == anchor])
        assert len(set(subsets)) == len(subsets)


def test_oversampling_with_nearest_selection_starts_with_the_nearest_subset():
    positions = random_positions(30, seed=9)
    groups = group_positions(positions, 2, n_neighbors=6, n_groups=60, sequential=True, selection="nearest")
    nearest = brute_force_neighbours(positions, 6)
    np.testing.assert_array_equal(groups.indices[:30], nearest[:, :4])
    np.testing.assert_array_equal(groups.indices[30:], nearest[:, [0, 1, 2, 4]])


def test_n_groups_draws_distinct_random_or_sequential_anchors():
    positions = random_positions(100, seed=10)
    drawn = group_positions(positions, 2, n_groups=30, seed=3)
    assert len(np.unique(drawn.indices[:, 0])) == 30
    assert not np.array_equal(drawn.indices[:, 0], np.arange(30))
    sequential = group_positions(positions, 2, n_groups=30, sequential=True)
    np.testing.assert_array_equal(sequential.indices[:, 0], np.arange(30))


def test_anchor_comes_first_even_with_duplicate_positions():
    positions = np.concatenate([np.full((6, 2), 50.0), random_positions(20, seed=11)])
    groups = group_positions(positions, 2, n_neighbors=4, selection="nearest")
    np.testing.assert_array_equal(groups.indices[:, 0], np.arange(26))
    assert all(len(s) == 4 for s in as_sets(groups.indices))


def test_groups_from_indices_computes_offsets_and_checks_range():
    positions = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    groups = Groups.from_indices(positions, [[0, 1, 2]])
    np.testing.assert_allclose(groups.global_offsets, [[2 / 3, 4 / 3]])
    with pytest.raises(ValueError, match=r"expected values in \[0, 2\]"):
        Groups.from_indices(positions, [[0, 3]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(gridsize=0), r"gridsize: expected an integer in 1\.\.3"),
        (dict(gridsize=4), r"gridsize: expected an integer in 1\.\.3"),
        (dict(gridsize=2.5), r"gridsize: expected an integer"),
        (dict(gridsize=3, n_neighbors=7), r"n_neighbors: expected an integer in 9\.\.63 .*got 7"),
        (dict(gridsize=2, n_neighbors=64), r"n_neighbors: expected an integer in 4\.\.63"),
        (dict(gridsize=2, n_groups=0), r"n_groups: expected an integer >= 1"),
        (dict(gridsize=2, groups_per_position=-1), r"groups_per_position: expected an integer >= 1"),
        (dict(gridsize=2, n_groups=5, groups_per_position=2), r"either n_groups or groups_per_position"),
        (dict(gridsize=2, selection="farthest"), r"selection: expected one of"),
        (dict(gridsize=2, n_neighbors=4, groups_per_position=2), r"only 1 distinct group"),
        (dict(gridsize=1, n_groups=21), r"request at most 20 groups"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_positions(random_positions(20), **kwargs)


@pytest.mark.parametrize(
    "positions, message",
    [
        (np.zeros((3, 2)), r"at least 4 positions, got 3"),
        (np.zeros((10, 3)), r"expected shape \(n, 2\)"),
        (np.array([[0.0, np.nan]] * 10), r"finite"),
    ],
)
def test_invalid_positions_raise_clear_errors(positions, message):
    with pytest.raises(ValueError, match=message):
        group_positions(positions, 2, n_neighbors=4)


def test_grouping_100k_positions_is_vectorised():
    positions = random_positions(100_000, seed=12, low=0.0, high=5000.0)
    start = time.perf_counter()
    groups = group_positions(positions, 2)
    elapsed = time.perf_counter() - start
    print(f"grouped 100,000 positions (gridsize 2) in {elapsed:.2f} s")
    assert groups.indices.shape == (100_000, 4)
    np.testing.assert_array_equal(groups.indices[:, 0], np.arange(100_000))


def test_cover_positions_covers_every_position_with_few_groups():
    from ptycho.grouping import cover_positions

    rng = np.random.default_rng(5)
    positions = rng.uniform(0, 200, (500, 2))
    groups = cover_positions(positions, 2, n_neighbors=8)
    assert groups.n_channels == 4
    assert set(groups.indices.ravel()) == set(range(500))
    assert groups.n_groups < 500 / 4 * 1.25  # about n / C groups, not n
    grid = np.stack(np.meshgrid(np.arange(32.0), np.arange(32.0)), -1).reshape(-1, 2) * 3
    grid += rng.uniform(-0.5, 0.5, grid.shape)
    assert cover_positions(grid, 2, n_neighbors=8).n_groups <= 1024 / 4 * 1.1  # sweeping leaves few stragglers
    # every member is among its anchor's 8 nearest positions
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    eighth = np.sort(distances, axis=1)[:, 7]
    anchors, others = groups.indices[:, 0], groups.indices[:, 1:]
    assert np.all(distances[anchors[:, None], others] <= eighth[anchors][:, None] + 1e-9)
    np.testing.assert_allclose(groups.global_offsets[:, None] + groups.local_offsets, positions[groups.indices])
    twice = cover_positions(positions, 2, n_neighbors=8, passes=2)
    assert np.bincount(twice.indices.ravel(), minlength=500).min() >= 2
    single = cover_positions(positions, 1)
    np.testing.assert_array_equal(single.indices[:, 0], np.arange(500))
