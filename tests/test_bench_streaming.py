"""bench/streaming.py at a tiny size: writes the scan file, trains and infers in a child, reports, cleans up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "streaming.py"


def test_streaming_benchmark_reports_memory_and_covers_the_scan(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--n-patterns", "900", "--N", "32", "--gridsize", "2",
                          "--network-layout", "stacked", "--train-patterns", "128", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout[run.stdout.index("{"):])
    assert (report["n_patterns"], report["N"], report["gridsize"]) == (900, 32, 2)
    assert report["train_patterns"] == 128  # --train-patterns: the epoch ran on the first 128 patterns only
    assert report["covered_fraction"] > 0.95  # ...but the whole scan was reconstructed
    assert report["object_shape"][0] > 150 and report["object_shape"][1] > 150  # a 30 x 30 raster, step 6 px
    assert 200 < report["peak_rss_mb_after_training"] <= report["peak_rss_mb"] <= report["peak_rss_mb_children"]
    assert report["write_seconds"] > 0 and report["file_gb"] < 0.01  # 900 x 32 x 32 float32: 3.7 MB
    assert not (tmp_path / "scan.h5").exists()  # removed without --keep-file
