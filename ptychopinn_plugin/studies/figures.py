"""The studies' figures (matplotlib Figure without pyplot; written atomically as PNG).

Images are complex (h, w) arrays already registered to one reference (`common.aligned_crops`); the
amplitude is shown in amplitude units and the phase in radians, with one colour scale per row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptychopinn_plugin.figures import new_figure, save_figure

from .config import SHOW


def channel(image: np.ndarray, show: str) -> np.ndarray:
    """The amplitude (|image|) or phase (angle, rad) of a complex image."""
    if show not in SHOW:
        raise ValueError(f"show: expected one of {SHOW}, got {show!r}")
    return np.abs(image) if show == "amplitude" else np.angle(image)


def dose_comparison(path: str | os.PathLike[str], patterns: Sequence[tuple[str, np.ndarray]],
                    rows: Sequence[Sequence[tuple[str, np.ndarray]]], show: str,
                    value_range: tuple[float, float]) -> Path:
    """One row per dose: its diffraction pattern (log10 counts) then each loss's reconstruction.

    patterns: [(title, amplitudes float (N, N))] one per row; rows: [[(title, complex (h, w))]];
    value_range: (low, high) of the shown channel (the truth's range).
    """
    n_cols = 1 + max(len(row) for row in rows)
    fig = new_figure(3.6 * n_cols, 3.4 * len(rows))
    axes = np.atleast_2d(fig.subplots(len(rows), n_cols))
    unit = "rad" if show == "phase" else "amplitude"
    for ax_row, (title, amplitude), images in zip(axes, patterns, rows):
        counts = np.square(amplitude.astype(np.float64))
        shown = ax_row[0].imshow(np.log10(counts + 1.0), cmap="magma")
        ax_row[0].set_title(title)
        fig.colorbar(shown, ax=ax_row[0], shrink=0.8, label="log10(counts + 1)")
        for ax, (name, image) in zip(ax_row[1:], images):
            shown = ax.imshow(channel(image, show), cmap="gray", vmin=value_range[0], vmax=value_range[1])
            ax.set_title(name)
            fig.colorbar(shown, ax=ax, shrink=0.8, label=unit)
        for ax in ax_row:
            ax.set_axis_off()
    return save_figure(fig, path)


def frc_vs_dose(path: str | os.PathLike[str], runs: Sequence[Mapping[str, Any]]) -> Path:
    """Amplitude and phase FRC50 (fraction of Nyquist) against dose (photons per pattern), one line per loss."""
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("amp_frc50", "phase_frc50"), ("amplitude", "phase")):
        for loss, marker in (("nll", "o"), ("mae", "s")):
            points = sorted((r["dose"], r[key]) for r in runs if r["loss"] == loss)
            if points:
                doses, values = zip(*points)
                ax.semilogx(doses, values, marker=marker, label=f"PINN, {loss.upper()} loss")
        ax.set_xlabel("dose (photons per pattern)")
        ax.set_ylabel(f"{label} FRC50 (fraction of Nyquist)")
        ax.set_ylim(0, 1.05)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def convergence(path: str | os.PathLike[str], runs: Sequence[Mapping[str, Any]]) -> Path:
    """The held-out scores after each epoch (runs' `epoch_scores`): amplitude / phase SSIM and FRC50
    against epoch, one line per dose and loss (colour: loss; line style: dose)."""
    fig = new_figure(10, 7.5)
    axes = fig.subplots(2, 2).ravel()
    panels = (("amp_ssim", "amplitude SSIM"), ("phase_ssim", "phase SSIM"),
              ("amp_frc50", "amplitude FRC50 (of Nyquist)"), ("phase_frc50", "phase FRC50 (of Nyquist)"))
    doses = sorted({r["dose"] for r in runs}, reverse=True)
    styles = ("-", "--", ":", "-.")
    for ax, (key, label) in zip(axes, panels):
        for run in runs:
            points = [p for p in run.get("epoch_scores") or [] if p[key] is not None]  # None: not scored
            style = styles[doses.index(run["dose"]) % len(styles)]
            ax.plot([p["epoch"] for p in points], [p[key] for p in points], marker="o", markersize=3,
                    color="C0" if run["loss"] == "nll" else "C1", linestyle=style,
                    label=f"{run['loss'].upper()}, {run['dose']:.0e} ph")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def method_comparison(path: str | os.PathLike[str], columns: Sequence[tuple[str, np.ndarray]],
                      title: str = "") -> Path:
    """Amplitude (top row) and phase (bottom row) of each (title, complex (h, w)) side by side.

    Each row shares the colour scale of the first column (the reference: the truth or LSQML): its 1st
    to 99th percentile, so a few outliers (e.g. phase wraps at an iterative reconstruction's edge) do
    not wash out the rest.
    """
    fig = new_figure(3.4 * len(columns) + 1, 6.6)
    axes = np.atleast_2d(fig.subplots(2, len(columns))).reshape(2, len(columns))
    for ax_row, show in zip(axes, SHOW):
        low, high = (float(v) for v in np.percentile(channel(columns[0][1], show), [1, 99]))
        if high <= low:
            low, high = low - 0.5, high + 0.5
        for ax, (name, image) in zip(ax_row, columns):
            shown = ax.imshow(channel(image, show), cmap="gray", vmin=low, vmax=high)
            ax.set_title(f"{name}\n{show}", fontsize=9)
            ax.set_axis_off()
        fig.colorbar(shown, ax=list(ax_row), shrink=0.8, label="rad" if show == "phase" else "amplitude")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def data_efficiency(path: str | os.PathLike[str], runs: Sequence[Mapping[str, Any]]) -> Path:
    """Amplitude and phase SSIM against the number of training patterns, one line per method."""
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("amp_ssim", "phase_ssim"), ("amplitude", "phase")):
        for method, marker in (("pinn", "o"), ("supervised", "s")):
            points = sorted((r["n_train"], r[key]) for r in runs if r["method"] == method)
            if points:
                sizes, values = zip(*points)
                ax.semilogx(sizes, values, marker=marker, base=2, label=method)
        ax.set_xlabel("training patterns")
        ax.set_ylabel(f"{label} SSIM")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    return save_figure(fig, path)
