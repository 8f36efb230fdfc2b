"""results.md: the comparison study's runs as Markdown tables, one per scan and part."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptycho.atomic import atomic_output

# (column title, run key, format); a column appears only when some run of the table has the key.
COLUMNS = (
    ("method", "method", "{}"),
    ("loss", "loss", "{}"),
    ("trained on", "trained_on", "{}"),
    ("n_train", "n_train", "{}"),
    ("train s", "train_seconds", "{:.1f}"),
    ("reconstruct s", "reconstruct_seconds", "{:.2f}"),
    ("amp SSIM", "amp_ssim", "{:.3f}"),
    ("phase SSIM", "phase_ssim", "{:.3f}"),
    ("amp PSNR dB", "amp_psnr", "{:.2f}"),
    ("phase PSNR dB", "phase_psnr", "{:.2f}"),
    ("amp FRC50", "amp_frc50", "{:.3f}"),
    ("phase FRC50", "phase_frc50", "{:.3f}"),
    ("amp FRC50 vs LSQML", "amp_frc50_vs_lsqml", "{:.3f}"),
    ("phase FRC50 vs LSQML", "phase_frc50_vs_lsqml", "{:.3f}"),
    ("phase SSIM vs LSQML", "phase_ssim_vs_lsqml", "{:.3f}"),
    ("data residual", "data_residual", "{:.4f}"),
)


def markdown_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of runs; missing values are shown as '-'."""
    columns = [c for c in COLUMNS if any(r.get(c[1]) is not None for r in runs)]
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for run in runs:
        cells = [fmt.format(run[key]) if run.get(key) is not None else "-" for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: str | os.PathLike[str], title: str, sections: Sequence[tuple[str, str, Sequence[Mapping]]]
                   ) -> Path:
    """Write results.md atomically: a title, then per section a heading, a note and the table of its runs."""
    parts = [f"# {title}", ""]
    for heading, note, runs in sections:
        parts += [f"## {heading}", "", note, "", markdown_table(runs), ""]
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
