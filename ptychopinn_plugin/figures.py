"""Figures written by the CLI (no pyplot global state; files written atomically)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ptycho.atomic import atomic_output


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Save a Figure atomically; the format follows the suffix (PNG by default)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:].lower() or "png")
    return path


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A Figure on an Agg canvas; layout None places axes by hand (much faster than 'constrained')."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def loss_curve(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str]) -> Path:
    """Training (and validation) loss per epoch, log scale."""
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for key in ("loss", "val_loss"):
        values = history.get(key, [])
        if values:
            ax.semilogy(np.arange(1, len(values) + 1), values, marker="o", ms=3,
                        label="training" if key == "loss" else "validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def object_image(obj: np.ndarray, path: str | os.PathLike[str], title: str = "",
                 mask: np.ndarray | None = None) -> Path:
    """Amplitude and phase of a complex object side by side (uncovered pixels masked when given).

    A fixed layout: `ptychopinn infer` writes this preview after every reconstruction, and the
    constrained layout engine would add about 0.4 s to it."""
    fig = new_figure(11, 5, layout=None)
    axes = fig.subplots(1, 2, gridspec_kw={"left": 0.02, "right": 0.95, "bottom": 0.03, "top": 0.88,
                                           "wspace": 0.15})
    for ax, (name, image) in zip(axes, (("amplitude", np.abs(obj)), ("phase (rad)", np.angle(obj)))):
        if mask is not None:
            image = np.ma.masked_where(~mask, image)
        shown = ax.imshow(image, cmap="gray")
        ax.set_title(name)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
