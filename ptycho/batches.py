"""Keras batches of grouped patterns, read from any ScanSource (bounded memory)."""

from __future__ import annotations

import math

import keras
import numpy as np

from ptycho import physics
from ptycho.datasource import ScanSource
from ptycho.grouping import Groups
from ptycho.symmetry import DihedralOp, turn_groups


class GroupedBatches(keras.utils.PyDataset):
    """Batches of groups: inputs {"diffraction": (B, N, N, C), "offsets": (B, C, 2)}.

    targets:
      None        inputs only (inference)
      "pinn"      {"diffraction": measured AMPLITUDES (B, N, N, C)}
      "supervised"/"realspace"  adds {"object_amplitude", "object_phase"}: ground-truth patches cut
                  from source.object at each pattern's position (same cut as the simulator).
    The last batch is padded to the full batch size by repeating groups (one compiled shape); use
    `n_valid(index)` to drop the padding from predictions.
    symmetries: probe symmetries (`ptycho.symmetry`); when given, each group is turned by one of them,
    drawn at random for every epoch with the shuffle (exact augmentation: inputs, offsets and targets
    turn together; seeded like the shuffle).
    """

    def __init__(self, source: ScanSource, groups: Groups, batch_size: int, *, targets: str | None = None,
                 shuffle: bool = False, seed: int = 0, symmetries: tuple[DihedralOp, ...] = ()) -> None:
        super().__init__()
        if targets in ("supervised", "realspace") and source.object is None:
            raise ValueError(f"{source.source}: 'objectGuess': ground truth is needed for {targets} training")
        self.source = source
        self.groups = groups
        self.batch_size = batch_size
        self.targets = targets
        self.shuffle = shuffle
        self.symmetries = symmetries
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(groups.n_groups)
        self._new_epoch()

    def _new_epoch(self) -> None:
        """Draw this epoch's group order (if shuffling) and turns (if augmenting)."""
        if self.shuffle:
            self._rng.shuffle(self._order)
        if self.symmetries:
            self._turns = self._rng.integers(len(self.symmetries), size=self.groups.n_groups)

    def __len__(self) -> int:
        return math.ceil(self.groups.n_groups / self.batch_size)

    def n_valid(self, index: int) -> int:
        return min(self.batch_size, self.groups.n_groups - index * self.batch_size)

    def group_ids(self, index: int) -> np.ndarray:
        """Group indices of batch `index`, padded to the batch size."""
        ids = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        if len(ids) < self.batch_size:
            ids = np.resize(ids, self.batch_size)
        return ids

    def __getitem__(self, index: int):
        ids = self.group_ids(index)
        members = self.groups.indices[ids]  # (B, C)
        n, c = self.source.N, members.shape[1]
        amplitudes = self.source.read_amplitudes(members.ravel()).reshape(len(ids), c, n, n)
        diffraction = amplitudes.transpose(0, 2, 3, 1)
        offsets = self.groups.local_offsets[ids].astype(np.float32)
        patches = None
        if self.targets in ("supervised", "realspace"):
            patches = physics.object_patches(self.source.object, self.source.positions[members.ravel()], n)
            patches = patches.reshape(len(ids), c, n, n).transpose(0, 2, 3, 1)
        if self.symmetries:
            offsets, diffraction, *rest = turn_groups(self._turns[ids], self.symmetries, offsets, diffraction,
                                                      *([] if patches is None else [patches]))
            patches = rest[0] if rest else None
        inputs = {"diffraction": np.ascontiguousarray(diffraction), "offsets": offsets}
        if self.targets is None:
            return (inputs,)
        targets = {}
        if self.targets == "pinn" or self.targets == "realspace":
            targets["diffraction"] = inputs["diffraction"]
        if patches is not None:
            targets["object_amplitude"] = np.abs(patches).astype(np.float32)
            targets["object_phase"] = np.angle(patches).astype(np.float32)
        return inputs, targets

    def on_epoch_end(self) -> None:
        self._new_epoch()
