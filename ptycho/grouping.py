"""Nearest-neighbour groups of scan positions and their offsets (see docs/conventions.md).

A group holds C = gridsize**2 scan positions: an *anchor* position plus C - 1 others drawn from the
anchor's K nearest neighbours (K = ``n_neighbors``, counted with the anchor itself, which is its own
nearest neighbour). Members are ordered anchor first, then the others by increasing neighbour rank
(nearest first), so ``Groups.indices[:, 0]`` are the anchors.

Offsets, in object pixels (x, y):
    global offset = the group's centroid, shape (n_groups, 2)
    local offset  = position - centroid, shape (n_groups, C, 2)
so ``positions[indices] == global_offsets[:, None] + local_offsets``: exactly whenever a position
and its centroid are within a factor 2 of each other (Sterbenz: the subtraction is then exact), which
holds away from the grid origin, and to within one unit in the last place otherwise.

NumPy/SciPy only; one k-d tree query serves every anchor, so 10^5 positions group in well under a
second.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

MAX_GRIDSIZE = 3
MAX_NEIGHBORS = 63
SELECTIONS = ("random", "nearest")


@dataclass(frozen=True)
class Groups:
    """Groups of scan positions.

    indices: int64 (n_groups, C), indices into the positions; column 0 is the anchor, the others
        follow by increasing neighbour rank.
    global_offsets: float64 (n_groups, 2), group centroids (x, y) in object pixels.
    local_offsets: float64 (n_groups, C, 2), member position minus centroid (x, y) in object pixels.
    """

    indices: np.ndarray
    global_offsets: np.ndarray
    local_offsets: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.indices.shape[0])

    @property
    def n_channels(self) -> int:
        """C = gridsize**2, the number of positions per group."""
        return int(self.indices.shape[1])

    @classmethod
    def from_indices(cls, positions: np.ndarray, indices: np.ndarray) -> Groups:
        """Groups with the given member indices (n_groups, C) of positions (n, 2); offsets are computed."""
        positions = _check_positions(positions)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 2 or indices.shape[1] == 0:
            raise ValueError(f"group indices: expected shape (n_groups, C), got {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(positions)):
            raise ValueError(f"group indices: expected values in [0, {len(positions) - 1}], "
                             f"got [{indices.min()}, {indices.max()}]")
        members = positions[indices]
        centroids = members.mean(axis=1)
        return cls(indices=indices, global_offsets=centroids, local_offsets=members - centroids[:, None, :])


def group_positions(
    positions: np.ndarray,
    gridsize: int,
    *,
    n_neighbors: int = 7,
    groups_per_position: int = 1,
    n_groups: int | None = None,
    seed: int | None = 0,
    sequential: bool = False,
    selection: Literal["random", "nearest"] = "random",
) -> Groups:
    """Group scan positions into groups of C = gridsize**2 neighbours.

    positions: float (n, 2), object-pixel coordinates (x, y).
    gridsize: 1..3; gridsize 1 gives one-member groups (local offsets zero, global offset = position).
    n_neighbors: K, the candidate pool of an anchor: its K nearest positions, the anchor included
        (capped at n). C <= K <= 63.
    groups_per_position: by default (n_groups None) every position anchors this many groups, in
        position order, so every pattern appears in at least one group (what inference needs).
    n_groups: instead draw this many groups. Anchors are random distinct positions (``seed``), or
        positions 0, 1, 2, ... with ``sequential``. When n_groups > n the scan is oversampled: every
        position anchors n_groups // n groups (plus one for n_groups % n of them) and each repeat of
        an anchor uses a different C-subset of its neighbours.
    seed: seed of the random generator (anchors and member choice); None for fresh entropy.
    sequential: with n_groups, take anchors in position order instead of at random.
    selection: how the C - 1 other members are chosen among the K - 1 neighbours: 'random', or
        'nearest' (deterministic: the C - 1 nearest for an anchor's first group, then the next
        subsets in lexicographic order of neighbour rank for its repeats).

    Raises ValueError for a gridsize outside 1..3, fewer than C positions, K < C or K > 63, non-positive
    counts, both n_groups and groups_per_position != 1, or more repeats of an anchor than there are
    distinct C-subsets of its neighbours.
    """
    positions = _check_positions(positions)
    gridsize = int_in_range("gridsize", gridsize, 1, MAX_GRIDSIZE)
    n_channels = gridsize * gridsize
    n = len(positions)
    if n < n_channels:
        raise ValueError(f"positions: a group of gridsize**2 = {n_channels} needs at least {n_channels} "
                         f"positions, got {n}")
    n_neighbors = int_in_range("n_neighbors", n_neighbors, n_channels, MAX_NEIGHBORS,
                               hint=f" (gridsize**2 = {n_channels} members are drawn from them)")
    groups_per_position = int_in_range("groups_per_position", groups_per_position, 1, None)
    if selection not in SELECTIONS:
        raise ValueError(f"selection: expected one of {SELECTIONS}, got {selection!r}")
    rng = np.random.default_rng(seed)

    if n_groups is None:
        anchors = np.repeat(np.arange(n, dtype=np.int64), groups_per_position)
    else:
        n_groups = int_in_range("n_groups", n_groups, 1, None)
        if groups_per_position != 1:
            raise ValueError("give either n_groups or groups_per_position, not both "
                             f"(got n_groups={n_groups}, groups_per_position={groups_per_position})")
        anchors = _draw_anchors(n, n_groups, sequential, rng)

    k = min(n_neighbors, n)
    repeats = _repeat_index(anchors, n)
    n_subsets = math.comb(k - 1, n_channels - 1)
    if repeats.max() >= n_subsets:
        remedy = ("with gridsize 1 each position forms exactly one group; request at most "
                  f"{n} groups" if n_channels == 1 else
                  f"its n_neighbors = {k} candidates give only {n_subsets} distinct group(s) of "
                  f"{n_channels}; increase n_neighbors or request fewer groups")
        raise ValueError(f"{int(repeats.max()) + 1} groups per anchor position requested, but {remedy}")
    if n_channels == 1:
        return Groups.from_indices(positions, anchors[:, None])
    used = np.unique(anchors)
    neighbours = np.empty((n, k), dtype=np.int64)
    neighbours[used] = _anchor_first_neighbours(positions, used, k)
    if selection == "nearest":
        table = np.array(list(itertools.islice(itertools.combinations(range(1, k), n_channels - 1),
                                               int(repeats.max()) + 1)), dtype=np.int64)
        ranks = table[repeats]
    else:
        ranks = _random_distinct_ranks(anchors, k, n_channels - 1, check_distinct=repeats.max() > 0, rng=rng)
    others = np.take_along_axis(neighbours[anchors], ranks, axis=1)
    return Groups.from_indices(positions, np.concatenate([anchors[:, None], others], axis=1))


def cover_positions(positions: np.ndarray, gridsize: int, *, n_neighbors: int = 8, passes: int = 1) -> Groups:
    """Few groups that together contain every position at least `passes` times (for inference).

    Greedy: positions are visited in order along a sweep direction (pass p sweeps along the angle
    pi/2 + p * pi / passes, so the first pass goes row by row and later passes form different
    groups); each position not yet covered in the current pass anchors a group of itself plus its
    nearest not-yet-covered neighbours among its K = n_neighbors nearest (topped up with covered ones
    when fewer remain). Sweeping leaves fewer stragglers than a random order: a pass makes about
    1.05 n / C groups on a jittered grid (a random order: 1.2 n / C), 1.12 n / C on random
    positions, so a gridsize-2 network predicts each pattern about once instead of C times.
    gridsize 1 gives one group per position and pass.
    """
    positions = _check_positions(positions)
    gridsize = int_in_range("gridsize", gridsize, 1, MAX_GRIDSIZE)
    c = gridsize * gridsize
    n = len(positions)
    if n < c:
        raise ValueError(f"positions: a group of gridsize**2 = {c} needs at least {c} positions, got {n}")
    passes = int_in_range("passes", passes, 1, None)
    if c == 1:
        return Groups.from_indices(positions, np.tile(np.arange(n, dtype=np.int64), passes)[:, None])
    k = min(int_in_range("n_neighbors", n_neighbors, c, MAX_NEIGHBORS), n)
    neighbours = _anchor_first_neighbours(positions, np.arange(n, dtype=np.int64), k)
    groups: list[np.ndarray] = []
    for sweep in range(passes):
        angle = np.pi / 2 + sweep * np.pi / passes
        covered = np.zeros(n, dtype=bool)
        for anchor in np.argsort(positions @ np.array([np.cos(angle), np.sin(angle)]), kind="stable"):
            if covered[anchor]:
                continue
            candidates = neighbours[anchor]
            fresh = candidates[~covered[candidates]]
            members = fresh[:c] if len(fresh) >= c else np.concatenate(
                [fresh, candidates[covered[candidates]][: c - len(fresh)]])
            covered[members] = True
            groups.append(members)
    return Groups.from_indices(positions, np.stack(groups))


def concatenate_groups(first: Groups, second: Groups) -> Groups:
    """The groups of `first`, then those of `second` (their member indices must index the same positions)."""
    return Groups(np.concatenate([first.indices, second.indices]),
                  np.concatenate([first.global_offsets, second.global_offsets]),
                  np.concatenate([first.local_offsets, second.local_offsets]))


def as_positions(positions: np.ndarray) -> np.ndarray:
    """Validate positions of shape (..., 2) holding object-pixel (x, y); returns them as float64."""
    positions = np.asarray(positions)
    if positions.ndim < 1 or positions.shape[-1] != 2:
        raise ValueError(f"positions: expected shape (..., 2) holding (x, y), got {positions.shape}")
    if not np.issubdtype(positions.dtype, np.number) or np.iscomplexobj(positions):
        raise ValueError(f"positions: expected real numbers, got dtype {positions.dtype}")
    positions = positions.astype(np.float64, copy=False)
    if not np.all(np.isfinite(positions)):
        raise ValueError("positions: expected finite values, got NaN/inf")
    return positions


def _check_positions(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions: expected shape (n, 2) holding (x, y), got {positions.shape}")
    return as_positions(positions)


def int_in_range(name: str, value: object, low: int, high: int | None, hint: str = "") -> int:
    """value as an int (any integer type, not bool) in low..high (high None: no upper bound); else
    ValueError naming `name`, the accepted range (plus `hint`) and the value."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected an integer {bound}{hint}, got {value}")
    return value


def _draw_anchors(n: int, n_groups: int, sequential: bool, rng: np.random.Generator) -> np.ndarray:
    """Anchor position of each of n_groups groups; every position is used n_groups // n or one more times."""
    if sequential:
        return np.arange(n_groups, dtype=np.int64) % n
    full, extra = divmod(n_groups, n)
    anchors = np.concatenate([np.tile(np.arange(n, dtype=np.int64), full),
                              rng.choice(n, size=extra, replace=False).astype(np.int64)])
    return anchors if full == 0 else rng.permutation(anchors)


def _repeat_index(anchors: np.ndarray, n: int) -> np.ndarray:
    """For each group, how many earlier groups share its anchor (0 for the first)."""
    order = np.argsort(anchors, kind="stable")
    counts = np.bincount(anchors, minlength=n)
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    repeats = np.empty_like(anchors)
    repeats[order] = np.arange(len(anchors)) - run_start
    return repeats


def _anchor_first_neighbours(positions: np.ndarray, anchors: np.ndarray, k: int) -> np.ndarray:
    """(len(anchors), k) indices of each anchor's k nearest positions, the anchor itself first.

    The anchor is put first even when duplicate positions make the tree list another index first.
    """
    _, nearest = cKDTree(positions).query(positions[anchors], k=k, workers=-1)
    nearest = np.asarray(nearest, dtype=np.int64).reshape(len(anchors), k)
    is_anchor = nearest == anchors[:, None]
    missing = ~is_anchor.any(axis=1)
    nearest[missing, -1] = anchors[missing]
    is_anchor[missing, -1] = True
    order = np.argsort(~is_anchor, axis=1, kind="stable")
    return np.take_along_axis(nearest, order, axis=1)


def _random_distinct_ranks(anchors: np.ndarray, k: int, m: int, *, check_distinct: bool,
                           rng: np.random.Generator) -> np.ndarray:
    """(n_groups, m) sorted random neighbour ranks in 1..k-1; groups sharing an anchor get distinct sets.

    Duplicates are found through a bit mask of each set (k <= MAX_NEIGHBORS keeps it in an int64)
    and redrawn until none is left.
    """
    def draw(count: int) -> np.ndarray:
        return np.sort(np.argsort(rng.random((count, k - 1)), axis=1)[:, :m] + 1, axis=1)

    ranks = draw(len(anchors))
    if not check_distinct:
        return ranks
    while True:
        masks = np.bitwise_or.reduce(np.left_shift(np.int64(1), ranks), axis=1)
        order = np.lexsort((masks, anchors))
        same = (anchors[order[1:]] == anchors[order[:-1]]) & (masks[order[1:]] == masks[order[:-1]])
        duplicate = order[1:][same]
        if len(duplicate) == 0:
            return ranks
        ranks[duplicate] = draw(len(duplicate))
