"""The studies (`ptychopinn study dose|compare`): tiny end-to-end runs and their building blocks."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import worker_jobs
from matplotlib import image as mpl_image

from ptycho.npz_io import save_scan_npz
from ptycho.simulate import SimulationConfig, simulate
from ptychopinn_plugin.cli import main
from ptychopinn_plugin.studies import (
    common,
    figures,
    lsqml,
    real_scan,
    report,
    residual,
    workers,
)
from ptychopinn_plugin.studies.config import TrainingBudget

TINY = ["--N", "32", "--n-images", "576", "--step", "3", "--epochs", "1", "--batch-size", "32", "--gridsize", "1"]
"""The smallest scan whose held-out half leaves common.MIN_REGION_ROWS rows, and one epoch."""


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _png_shape(path) -> tuple[int, ...]:
    return mpl_image.imread(path).shape


@pytest.fixture(scope="module")
def small_scan():
    return simulate(SimulationConfig(N=32, n_images=576, step=3.0, nphotons=1e6, seed=4))  # a full 24 x 24 raster


# ------------------------------------------------------------------------------------ end to end
def test_dose_study_writes_runs_contrast_and_figure(tmp_path, capsys):
    out = tmp_path / "dose"
    assert main(["study", "dose", "-o", str(out), *TINY, "--epoch-scores", "--doses", "1e9,1e4",
                 "--show", "amplitude"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == "dose" and results["settings"]["show"] == "amplitude"
    assert results["settings"]["epoch_scores"] is True
    assert results["settings"]["workers"] == workers.default_workers() == (2 if os.cpu_count() >= 2 else 1)
    runs = results["runs"]
    assert sorted((r["dose"], r["loss"]) for r in runs) == [(1e4, "mae"), (1e4, "nll"), (1e9, "mae"), (1e9, "nll")]
    for run in runs:
        assert run["method"] == "pinn" and run["n_train"] == 288 and run["n_test"] == 288 and run["epochs_run"] == 1
        # the last epoch's model, scored on the held-out half, is the final model (more epochs: below)
        assert run["epoch_scores"] == [{"epoch": 1, **{k: run[k] for k in common.METRIC_KEYS}}]
        assert all(_finite_number(run[k]) for k in (*common.METRIC_KEYS, "train_seconds", "reconstruct_seconds"))
        assert run["train_seconds"] > 0 and run["reconstruct_seconds"] > 0
        assert -1 <= run["amp_ssim"] <= 1 and -1 <= run["phase_ssim"] <= 1
        assert 0 < run["amp_frc50"] <= 1 and 0 < run["phase_frc50"] <= 1
    by_key = {(r["dose"], r["loss"]): r for r in runs}
    assert [row["dose"] for row in results["contrast"]] == [1e9, 1e4]
    for row in results["contrast"]:
        for key in common.METRIC_KEYS:
            expected = by_key[(row["dose"], "nll")][key] - by_key[(row["dose"], "mae")][key]
            assert row[key] == pytest.approx(expected, abs=1e-4)
    assert results["files"] == {"results": "results.json", "dose_comparison": "dose_comparison.png",
                                "convergence": "convergence.png"}
    assert not (out / "frc_vs_dose.png").exists()  # only for more than two doses
    height, width, _ = _png_shape(out / "dose_comparison.png")
    assert width > height > 300  # two rows (doses) of three panels
    height, width, _ = _png_shape(out / "convergence.png")
    assert width > height > 300  # 2 x 2 panels
    printed = capsys.readouterr().out
    assert "dose 1e+04: NLL - MAE" in printed and "wrote" in printed


def test_epoch_scores_score_the_model_as_it_trains(small_scan):
    """train_and_reconstruct(score_epochs=...) scores each epoch's model; the last is the final model;
    scored_epochs picks the epochs, and the scoring time is not training time."""
    split = common.split_top_bottom(small_scan)
    config = TrainingBudget(gridsize=1, epochs=3, batch_size=16).training_config(32)
    seen = []

    def fingerprint(obj):
        seen.append(obj.copy())
        time.sleep(1.0)
        return {"mean_amplitude": float(np.abs(obj).mean())}

    trained = common.train_and_reconstruct(split.train, split.test, config, score_epochs=fingerprint)
    assert [e["epoch"] for e in trained.epoch_scores] == [1, 2, 3] and trained.epochs_run == 3
    np.testing.assert_array_equal(seen[-1], trained.object)  # epoch 3's model is the final model
    assert not np.array_equal(seen[0], seen[1])  # epoch 1's model is another model
    assert trained.epoch_scores[2]["mean_amplitude"] == pytest.approx(float(np.abs(trained.object).mean()))

    seen.clear()
    start = time.perf_counter()
    picked = common.train_and_reconstruct(split.train, split.test, config, score_epochs=fingerprint,
                                          scored_epochs={2, 5})
    wall = time.perf_counter() - start
    assert [e["epoch"] for e in picked.epoch_scores] == [2] and len(seen) == 1
    assert picked.train_seconds < wall - picked.reconstruct_seconds - 0.9  # the 1 s of scoring is left out



def test_compare_study_simulated_and_measured_without_ptychi(tmp_path, small_scan, monkeypatch, capsys):
    """No pty-chi: LSQML is skipped with a note; a scan file without ground truth takes the measured path."""
    monkeypatch.setattr(lsqml, "ptychi_available", lambda: False)
    measured = small_scan.subset(np.arange(200))
    measured.object = np.ones_like(measured.object)  # like a measured scan: an object grid, no truth
    save_scan_npz(measured, tmp_path / "measured.npz")
    out = tmp_path / "compare"
    assert main(["study", "compare", "-o", str(out), *TINY, "--data", str(tmp_path / "measured.npz"),
                 "--train-sizes", "64,32"]) == 0
    assert "LSQML skipped" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    runs, efficiency = results["runs"][:4], results["runs"][4:]
    assert [(r["scan"], r["method"]) for r in runs] == [
        ("simulated", "pinn"), ("simulated", "supervised"), ("measured", "pinn"), ("measured", "supervised")]
    assert [(r["part"], r["n_train"], r["method"]) for r in efficiency] == [
        ("data_efficiency", 32, "pinn"), ("data_efficiency", 32, "supervised"),
        ("data_efficiency", 64, "pinn"), ("data_efficiency", 64, "supervised")]
    assert all(_finite_number(r[k]) for r in efficiency for k in common.METRIC_KEYS)
    for run in runs[:2]:
        assert run["n_train"] == 288 and run["dose"] == 1e6
        assert all(_finite_number(run[k]) for k in (*common.METRIC_KEYS, "train_seconds", "reconstruct_seconds"))
    assert runs[0]["loss"] == "nll" and runs[1]["loss"] is None
    for run in runs[2:]:
        assert "amp_ssim" not in run and "amp_frc50_vs_lsqml" not in run  # no truth, no LSQML
        assert _finite_number(run["data_residual"]) and run["data_residual"] > 0
        assert 0 < run["n_residual_patterns"] <= 200
    assert runs[2]["trained_on"] == "measured" and runs[3]["trained_on"] == "simulated twin"
    assert set(results["files"]) == {"results", "table", "comparison_simulated", "comparison_measured",
                                     "data_efficiency"}
    for name in ("comparison_simulated.png", "comparison_measured.png", "data_efficiency.png"):
        assert len(_png_shape(out / name)) == 3
    table = (out / "results.md").read_text()
    assert "## simulated: comparison" in table and "## measured: comparison" in table
    assert "## simulated: data efficiency" in table
    assert table.count("| pinn | nll |") == 4 and "| data residual |" in table  # 2 comparisons, 2 sizes


def test_study_rejects_bad_options(tmp_path, capsys):
    assert main(["study", "dose", "-o", str(tmp_path / "d"), *TINY, "--doses", "1e4"]) == 2
    assert "at least two different doses" in capsys.readouterr().err
    assert main(["study", "dose", "-o", str(tmp_path / "d"), *TINY, "--workers", "0"]) == 2
    assert "workers: expected at least 1" in capsys.readouterr().err
    missing = str(tmp_path / "none.npz")
    assert main(["study", "compare", "-o", str(tmp_path / "c"), "--no-lsqml", "--data", missing]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "dose", "-o", str(tmp_path / "d"), "--doses", "many"])


# ------------------------------------------------------------------------------------ building blocks
def test_run_jobs_spreads_jobs_over_worker_processes_in_job_order(caplog):
    caplog.set_level(logging.INFO, logger="ptychopinn")
    finished = []
    results = workers.run_jobs(worker_jobs.describe_worker, [(1,), (2,), (3,)], 2,
                               on_result=lambda index, result: finished.append(index))
    assert [doubled for _, _, doubled in results] == [2, 4, 6] and sorted(finished) == [0, 1, 2]
    pids = {pid for pid, _, _ in results}
    assert os.getpid() not in pids and len(pids) <= 2  # two worker processes, not this one
    assert {threads for _, threads, _ in results} == {max(1, os.cpu_count() // 2)}  # a share of the cores each
    worker_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[worker ")]
    assert sorted(line.split("] ")[1] for line in worker_lines) == ["job 1 ran", "job 2 ran", "job 3 ran"]

    assert workers.run_jobs(worker_jobs.describe_worker, [(5,)], 2)[0][0] == os.getpid()  # one job: here
    with pytest.raises(ValueError, match=r"job [1-4] failed"):
        workers.run_jobs(worker_jobs.fail, [(1,), (2,), (3,), (4,)], 2)
    with pytest.raises(ValueError, match="workers: expected at least 1"):
        workers.run_jobs(worker_jobs.describe_worker, [(1,)], 0)


def test_held_out_split_never_scores_pixels_the_training_data_saw(small_scan):
    split = common.split_top_bottom(small_scan)
    assert split.train.n_patterns == 288 and split.test.n_patterns == 288
    assert split.train.y.max() <= split.test.y.min()
    rows = split.region[0]
    assert rows.start >= split.train.y.max() + small_scan.N / 2  # below every training patch
    assert rows.stop - rows.start >= common.MIN_REGION_ROWS
    nearest = common.split_top_bottom(small_scan, n_train=100).train
    assert nearest.n_patterns == 100 and nearest.y.min() >= np.sort(split.train.y)[150]  # nearest the test half
    with pytest.raises(ValueError, match="held-out region"):
        common.split_top_bottom(small_scan.subset(np.arange(100)))
    with pytest.raises(ValueError, match="300 training patterns"):
        common.split_top_bottom(small_scan, n_train=300)


def test_aligned_crops_register_shifted_copies_onto_the_reference():
    truth = simulate(SimulationConfig(N=32, n_images=500, step=3.0, nphotons=1e6, seed=4)).object
    region = (slice(20, 100), slice(20, 100))
    shifted = np.roll(truth, (2, -3), axis=(0, 1)) * np.exp(0.4j)
    aligned, reference = common.aligned_crops({"same": truth, "shifted": shifted}, truth, region)
    assert aligned["same"].shape == aligned["shifted"].shape == reference.shape
    assert reference.shape[0] <= 80 - 2 * (2 + 4)  # cropped by the shift plus the spline edge
    error = np.abs(aligned["shifted"] - reference)  # sub-pixel registration: 1/20 px precision
    assert error.max() < 0.05 and error.mean() < 5e-3
    np.testing.assert_allclose(aligned["same"], reference, atol=1e-6)


def test_poisson_deviance_is_zero_for_the_truth_and_ignores_the_global_scale(small_scan):
    noise_free = simulate(SimulationConfig(N=32, n_images=60, step=3.0, nphotons=None, seed=4))
    exact = residual.poisson_deviance(noise_free, noise_free.object, noise_free.probe)
    assert exact == pytest.approx(0.0, abs=1e-6 * float(np.mean(noise_free.amplitudes ** 2)))
    scaled = residual.poisson_deviance(noise_free, 3.0 * noise_free.object, noise_free.probe)
    assert scaled == pytest.approx(exact, abs=1e-6 * float(np.mean(noise_free.amplitudes ** 2)))
    wrong = residual.poisson_deviance(noise_free, np.ones_like(noise_free.object), noise_free.probe)
    assert wrong > 1e3 * max(exact, 1e-9)
    noisy = small_scan.subset(np.arange(60))
    # Poisson noise alone: about 0.5 per pixel where counts are large, less where they are small
    assert 0.0 < residual.poisson_deviance(noisy, noisy.object, noisy.probe) < 0.6


def test_interior_patterns_need_the_whole_patch_covered(small_scan):
    weights = np.ones(small_scan.object.shape)
    everything = residual.interior_patterns(small_scan, weights)
    assert len(everything) == small_scan.n_patterns  # the simulator leaves a margin round every patch
    weights[:, : small_scan.object.shape[1] // 2] = 0.0
    right = residual.interior_patterns(small_scan, weights, np.ones_like(weights))
    x_left_edge = np.floor(small_scan.x[right]) - small_scan.N // 2
    assert len(right) > 0 and np.all(x_left_edge >= small_scan.object.shape[1] // 2)


def test_crop_detector_keeps_the_far_field_of_the_probe(small_scan):
    cropped = real_scan.crop_detector(small_scan, 16)
    assert cropped.N == 16 and cropped.n_patterns == small_scan.n_patterns
    np.testing.assert_array_equal(cropped.amplitudes, small_scan.amplitudes[:, 8:24, 8:24])
    far = np.abs(np.fft.fftshift(np.fft.fft2(small_scan.probe, norm="ortho")))[8:24, 8:24]
    np.testing.assert_allclose(np.abs(np.fft.fftshift(np.fft.fft2(cropped.probe, norm="ortho"))), far,
                               atol=1e-4 * far.max())
    step = np.diff(cropped.positions, axis=0) - np.diff(small_scan.positions, axis=0) / 2
    np.testing.assert_allclose(step, 0.0, atol=1e-9)  # positions scale by 16/32
    assert np.all(cropped.object == 1) and cropped.metadata.extra["detector_crop"] == "32->16"
    assert real_scan.crop_detector(small_scan, 32) is small_scan
    with pytest.raises(ValueError, match="detector crop"):
        real_scan.crop_detector(small_scan, 15)


def test_central_patterns_and_scan_step(small_scan):
    central = real_scan.central_patterns(small_scan, 50)
    centre = 0.5 * (small_scan.positions.min(0) + small_scan.positions.max(0))
    radius = np.hypot(*(small_scan.positions - centre).T)
    assert central.n_patterns == 50 and np.hypot(*(central.positions - centre).T).max() <= np.sort(radius)[49]
    assert 2.0 < real_scan.scan_step(small_scan) <= 3.0  # a jittered raster of step 3
    twin = real_scan.simulated_twin(central, seed=1)
    assert twin.N == 32 and twin.n_images == 50 and twin.probe_kind == "array"
    assert twin.nphotons == pytest.approx(central.counts_per_pattern.mean())


def test_ptychi_conventions_without_ptychi(small_scan):
    positions, origin = lsqml.to_ptychi_positions(np.array([[10.0, 20.5]]), (40, 60))
    np.testing.assert_allclose(positions, [[20.5 - 20, 10.0 - 30]])  # (y, x) relative to the centre
    np.testing.assert_allclose(np.asarray(origin) + positions[0], [20.5 - 0.5, 10.0 - 0.5])  # ours - 0.5
    probe = lsqml.probe_on_data_scale(small_scan)
    energy = float(np.sum(np.abs(probe.astype(np.complex128)) ** 2))
    assert energy == pytest.approx(small_scan.counts_per_pattern.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="epochs"):
        lsqml.LsqmlSettings(epochs=0).validate()
    with pytest.raises(ValueError, match="noise_model"):
        lsqml.LsqmlSettings(noise_model="laplace").validate()


def test_markdown_table_and_figures(tmp_path):
    runs = [{"method": "pinn", "loss": "nll", "n_train": 256, "train_seconds": 12.34, "reconstruct_seconds": 0.5,
             "amp_ssim": 0.9, "phase_ssim": 0.8, "dose": 1e4, "amp_frc50": 0.5, "phase_frc50": 0.6},
            {"method": "supervised", "loss": None, "n_train": 512, "train_seconds": 1.0, "reconstruct_seconds": 0.25,
             "amp_ssim": 0.7, "phase_ssim": 0.6, "dose": 1e9, "amp_frc50": 0.4, "phase_frc50": 0.3}]
    table = report.markdown_table(runs).splitlines()
    assert table[0] == ("| method | loss | n_train | train s | reconstruct s | amp SSIM | phase SSIM | amp FRC50 "
                        "| phase FRC50 |")
    assert table[2] == "| pinn | nll | 256 | 12.3 | 0.50 | 0.900 | 0.800 | 0.500 | 0.600 |"
    assert table[3].startswith("| supervised | - | 512 |")
    assert len(_png_shape(figures.data_efficiency(tmp_path / "eff.png", runs))) == 3
    assert len(_png_shape(figures.frc_vs_dose(tmp_path / "frc.png", runs))) == 3
    with pytest.raises(ValueError, match="show"):
        figures.channel(np.ones((2, 2)), "both")


def test_convergence_figure_skips_unscored_epochs(tmp_path):
    def run(loss, dose, scores):
        return {"loss": loss, "dose": dose, "epoch_scores": [
            {"epoch": e, **dict.fromkeys(common.METRIC_KEYS, v)} for e, v in enumerate(scores, 1)]}

    scored = [run("nll", 1e4, [0.2, 0.5, 0.7]), run("mae", 1e4, [0.3, 0.6, 0.65]), run("nll", 1e9, [0.4, 0.8, 0.9])]
    with_gap = [run("nll", 1e4, [None, 0.5, 0.7]), *scored[1:]]
    without_gap = [{**with_gap[0], "epoch_scores": with_gap[0]["epoch_scores"][1:]}, *scored[1:]]
    full = mpl_image.imread(figures.convergence(tmp_path / "full.png", scored))
    gap = mpl_image.imread(figures.convergence(tmp_path / "gap.png", with_gap))
    np.testing.assert_array_equal(gap, mpl_image.imread(figures.convergence(tmp_path / "skip.png", without_gap)))
    assert full.shape == gap.shape and full.shape[1] > full.shape[0] > 300 and not np.array_equal(full, gap)


def test_study_modules_never_import_pytorch_and_light_ones_no_tensorflow():
    """pty-chi runs in a child process because PyTorch's Triton crashes a process that loaded TensorFlow."""
    code = ("import sys, ptychopinn_plugin.commands.study, ptychopinn_plugin.studies.lsqml, "
            "ptychopinn_plugin.studies.real_scan, ptychopinn_plugin.studies.report; "
            "light = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'torch', 'ptychi'}); "
            "import ptychopinn_plugin.studies.dose, ptychopinn_plugin.studies.compare; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ptychi'}); print(light, heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] []"
