"""bench/quality.py at a tiny size (the held-out split, per-epoch scores, --set, figures) and its GPU runner."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from matplotlib import image as mpl_image

BENCH = Path(__file__).resolve().parents[1] / "bench" / "quality.py"


def test_quality_benchmark_scores_epochs_and_applies_settings(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    run = subprocess.run([sys.executable, str(BENCH), "--datasets", "simulated", "--models", "pinn", "--gridsizes", "1",
                          "--epochs", "2", "--score-epochs", "1,2", "--n-images", "700", "--N", "32", "--step", "3",
                          "--n-train", "160", "--n-filters-scale", "1", "--set", "learning_rate=5e-4",
                          "--set", "probe_big=false", "--figures", str(figures), "--fine-tune-epochs", "1",
                          "--self-synthetic", "64", "--refine-steps", "2,0"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["learning_rate"] == 5e-4 and report["probe_big"] is False and report["epochs"] == 2
    assert report["N"] == 32 and report["step"] == 3.0
    (result,) = report["runs"]
    assert (result["dataset"], result["model"], result["gridsize"], result["N"]) == ("simulated", "pinn", 1, 32)
    assert result["n_train"] == 160 and result["n_test"] == 350 and result["epochs_run"] == 2
    assert [e["epoch"] for e in result["epoch_scores"]] == [1, 2]
    for key in ("amp_ssim", "phase_ssim", "amp_frc50", "phase_frc50"):
        assert result["epoch_scores"][-1][key] == result[key]  # the last epoch's model is the final model
        assert -1 <= result[key] <= 1
    unrefined, refined = result["refined"]  # data-consistency steps after the network, sorted by steps
    assert (unrefined["steps"], refined["steps"]) == (0, 2)
    assert all(unrefined[key] == result[key] for key in ("amp_ssim", "phase_ssim", "amp_frc50"))
    assert refined["amp_ssim"] != result["amp_ssim"] and -1 <= refined["amp_ssim"] <= 1
    tuned = result["fine_tuned"]  # fine-tuned on the held-out half's own diffraction, scored again
    assert tuned["epochs"] == 1 and tuned["train_seconds"] > 0 and -1 <= tuned["amp_ssim"] <= 1
    assert tuned["phase_ssim"] != result["phase_ssim"]
    second = result["self_synthetic"]  # trained again with patterns of a mosaic of its own reconstruction
    assert second["n_synthetic"] == 64 and second["train_seconds"] > 0 and -1 <= second["amp_ssim"] <= 1
    assert [e["epoch"] for e in second["epoch_scores"]] == [1, 2] and second["phase_ssim"] != result["phase_ssim"]
    assert [r["steps"] for r in second["refined"]] == [0, 2]
    assert "epoch 1 held-out scores" in run.stderr and "epoch 2 held-out scores" in run.stderr
    image = mpl_image.imread(figures / "simulated_pinn_g1.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.05


def test_quality_benchmark_rejects_unknown_or_owned_settings() -> None:
    run = subprocess.run([sys.executable, str(BENCH), "--set", "no_such_field=1"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "'no_such_field' is no number, flag or text field" in run.stderr
    run = subprocess.run([sys.executable, str(BENCH), "--set", "gridsize=2"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "'gridsize' is set by --gridsizes, not --set" in run.stderr
    run = subprocess.run([sys.executable, str(BENCH), "--datasets", "simulated,lines"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "unknown dataset(s) 'lines': expected names from simulated, shared" in run.stderr


def test_every_gpu_plan_line_is_a_valid_benchmark_command() -> None:
    """Each line of bench/plans/*.txt parses with bench/quality.py's own command line (device time is too
    scarce to find a typo there), and names are unique within a plan."""
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    plans = sorted((BENCH.parent / "plans").glob("*.txt"))
    assert {plan.name for plan in plans} >= {"quality_standard.txt", "quality_amplitude.txt"}
    for plan in plans:
        names = []
        for line in plan.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, *options = line.split()
            try:
                args = quality.build_parser().parse_args(options)
            except SystemExit:
                pytest.fail(f"{plan.name}: run {name!r}: invalid options {' '.join(options)}")
            assert args.epochs > 0, line  # dataset names are checked by the parser itself
            names.append(name)
        assert names and len(names) == len(set(names)), plan.name


def test_device_runner_runs_a_plan_and_packs_its_logs(tmp_path: Path) -> None:
    """bench/device_quality.sh (the GPU runner) on a one-line plan, on this machine's backend."""
    root = BENCH.parents[1]
    plan = tmp_path / "plan.txt"
    plan.write_text("# a comment line\n\ntiny_g1  --datasets simulated --models pinn --gridsizes 1 --epochs 1 "
                    "--score-epochs 1 --n-images 700 --n-train 64 --n-filters-scale 1\n")
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
           "PYTHONPATH": str(root), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(BENCH.parent / "device_quality.sh"), str(tmp_path), str(plan), "300"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("tiny_g1")]
    assert rows[0][:2] == ["tiny_g1", "1"] and all(-1 <= float(v) <= 1 for v in rows[0][2:6])
    assert rows[1][:2] == ["tiny_g1", "final:"]
    with tarfile.open(tmp_path / "quality.tgz") as packed:
        names = {Path(name).as_posix().lstrip("./") for name in packed.getnames()}
        report = json.loads(packed.extractfile("./tiny_g1.json").read())
    assert {"tiny_g1.log", "tiny_g1.json", "figures_tiny_g1/simulated_pinn_g1.png"} <= names
    assert report["runs"][0]["epoch_scores"][0]["epoch"] == 1
