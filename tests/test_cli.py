"""The `ptychopinn` command line: the documented forms work, outputs are real, errors are one line."""

from __future__ import annotations

import json
from contextlib import contextmanager

import h5py
import numpy as np
import pytest

from ptycho.bundle import read_manifest
from ptycho.npz_io import load_scan_npz
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.simulate import SimulationConfig
from ptychopinn_plugin.cli import build_parser, main
from ptychopinn_plugin.commands import common
from ptychopinn_plugin.commands.simulate import config_from_args
from ptychopinn_plugin.commands.train import training_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def scan_file(workdir):
    path = workdir / "scan.npz"
    assert main(["simulate", "-o", str(path), "--object", "lines", "--N", "32", "--n-images", "120",
                 "--nphotons", "1e6", "--seed", "3"]) == 0
    return path


@pytest.fixture(scope="module")
def model_dir(workdir, scan_file):
    out = workdir / "model"
    assert main(["train", str(scan_file), "-o", str(out), "--model", "pinn", "--gridsize", "2", "--epochs", "2",
                 "--batch-size", "16", "--loss", "nll", "--n-filters-scale", "1", "--network-layout", "stacked",
                 "--decoder-block", "upsample_conv"]) == 0
    return out


def test_simulate_writes_reference_npz(scan_file):
    scan = load_scan_npz(scan_file)
    assert scan.amplitudes.shape == (120, 32, 32) and scan.object is not None
    assert scan.metadata.nphotons == 1e6
    np.testing.assert_allclose(scan.counts_per_pattern.mean(), 1e6, rtol=0.02)


def test_train_writes_bundle_loss_curve_and_history(model_dir):
    manifest = read_manifest(model_dir / "wts.h5.zip")
    assert manifest["gridsize"] == 2 and manifest["N"] == 32 and manifest["model"]["network_layout"] == "stacked"
    assert manifest["model"]["decoder_block"] == "upsample_conv"
    assert len(manifest["history"]["loss"]) == 2
    assert (model_dir / "loss.png").stat().st_size > 1000
    history = json.loads((model_dir / "history.json").read_text())
    assert history["history"]["loss"] == manifest["history"]["loss"]


def test_train_init_fine_tunes_a_model_with_its_own_configuration(workdir, scan_file, model_dir):
    out = workdir / "fine-tuned"
    assert main(["train", str(scan_file), "-o", str(out), "--init", str(model_dir), "--epochs", "1",
                 "--gridsize", "2"]) == 0  # a model option that agrees with the initial model is fine
    initial, tuned = read_manifest(model_dir / "wts.h5.zip"), read_manifest(out / "wts.h5.zip")
    assert tuned["model"] == initial["model"] and tuned["model"]["network_layout"] == "stacked"
    assert len(tuned["history"]["loss"]) == 1
    assert tuned["training_summary"]["initial_model_data"] == initial["training_summary"]["training_data"]


def test_train_checkpoints_outlive_an_interrupt_and_the_run_continues_with_init(workdir, scan_file, monkeypatch,
                                                                                capsys):
    out = workdir / "checkpointed"
    real_progress = common.epoch_progress

    @contextmanager
    def ctrl_c_after_epoch_3(total, disable=False):
        with real_progress(total, disable=disable) as show:
            def on_epoch(report):
                show(report)
                if report.epoch == 3:
                    raise KeyboardInterrupt

            yield on_epoch

    monkeypatch.setattr(common, "epoch_progress", ctrl_c_after_epoch_3)
    argv = ["train", str(scan_file), "-o", str(out), "--gridsize", "2", "--n-filters-scale", "1",
            "--network-layout", "stacked", "--decoder-block", "upsample_conv"]
    capsys.readouterr()
    assert main([*argv, "--epochs", "5", "--checkpoint-every", "2"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ptychopinn: interrupted: the model of epoch 2 is in") and f"--init {out}" in err
    checkpoint = read_manifest(out / "wts.h5.zip")
    assert checkpoint["training_summary"]["checkpoint"]["epoch"] == 2
    assert checkpoint["training_summary"]["checkpoint"]["of_epochs"] == 5
    assert len(checkpoint["history"]["loss"]) == 2 and not (out / "loss.png").exists()
    learning_rate = err.rsplit("--learning-rate ", 1)[1]
    assert float(learning_rate) == checkpoint["training_summary"]["checkpoint"]["learning_rate"] == pytest.approx(1e-3)

    monkeypatch.undo()
    assert main(["train", str(scan_file), "-o", str(out), "--init", str(out), "--epochs", "1",
                 "--learning-rate", learning_rate, "--checkpoint-every", "1"]) == 0  # no checkpoint at the end
    continued = read_manifest(out / "wts.h5.zip")
    assert "checkpoint" not in continued["training_summary"] and len(continued["history"]["loss"]) == 1
    assert continued["training_summary"]["training"]["learning_rate"] == float(learning_rate)
    assert continued["intensity_scale"] != checkpoint["intensity_scale"]  # trained on from the checkpoint


def test_train_defaults_are_the_configuration_defaults():
    """`ptychopinn train` without options trains what TrainingConfig/ModelConfig describe, except the
    command line's documented 30 epochs."""
    config = training_config(build_parser().parse_args(["train", "scan.npz", "-o", "model"]))
    model, defaults = config.model, ModelConfig(N=64)
    for name in ("model_type", "gridsize", "n_filters_scale", "network_layout", "decoder_block"):
        assert getattr(model, name) == getattr(defaults, name), name
    training = TrainingConfig(model=defaults)
    for name in ("batch_size", "learning_rate", "seed", "nll_weight", "mae_weight", "synthetic_patterns",
                 "synthetic_object", "symmetry_augmentation"):
        assert getattr(config, name) == getattr(training, name), name
    assert config.nepochs == 30
    options = ["--synthetic-patterns", "64", "--synthetic-object", "lines", "--symmetry-augmentation"]
    config = training_config(build_parser().parse_args(["train", "scan.npz", "-o", "model", *options]))
    assert (config.synthetic_patterns, config.synthetic_object, config.symmetry_augmentation) == (64, "lines", True)


def test_infer_and_simulate_defaults_are_the_configuration_defaults():
    parser = build_parser()
    infer, inference = parser.parse_args(["infer", "model", "scan.npz", "-o", "out.h5"]), InferenceConfig()
    assert (infer.batch_size, infer.neighbors, infer.passes, infer.symmetry_average, infer.refine_steps) == (
        inference.batch_size, inference.n_nearest_neighbors, inference.passes, inference.symmetry_average,
        inference.refine_steps)
    simulation = config_from_args(parser.parse_args(["simulate", "-o", "scan.npz"]))
    defaults = SimulationConfig()
    for name in ("object_kind", "N", "n_images", "nphotons", "seed", "scan_kind", "probe_kind"):
        assert getattr(simulation, name) == getattr(defaults, name), name
    assert simulation.step == defaults.N / 10


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_infer_then_evaluate(workdir, scan_file, model_dir, suffix, capsys):
    out = workdir / f"recon{suffix}"
    assert main(["infer", str(model_dir), str(scan_file), "-o", str(out)]) == 0
    assert out.with_suffix(".png").stat().st_size > 1000
    truth = load_scan_npz(scan_file).object
    if suffix == ".h5":
        with h5py.File(out) as f:
            obj = f["object"][0]
            assert f["loss_values"].shape == (2,) and list(f["loss_epochs"][()]) == [1, 2]
    else:
        with np.load(out) as f:
            obj = f["object"]
    assert obj.shape == truth.shape and np.abs(obj).max() > 0
    metrics_path = workdir / f"metrics{suffix}.json"
    capsys.readouterr()
    assert main(["evaluate", str(out), "--truth", str(scan_file), "-o", str(metrics_path)]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    saved = json.loads(metrics_path.read_text())
    assert printed == saved and -1 <= saved["phase_ssim"] <= 1 and np.isfinite(saved["amp_psnr"])
    assert metrics_path.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize("option", [["--symmetry-average"], ["--refine-steps", "3"]])
def test_infer_options_change_the_reconstruction_not_its_grid(workdir, scan_file, model_dir, option):
    plain, changed = workdir / "plain.npz", workdir / "changed.npz"
    assert main(["infer", str(model_dir), str(scan_file), "-o", str(plain)]) == 0
    assert main(["infer", str(model_dir), str(scan_file), "-o", str(changed), *option]) == 0
    with np.load(plain) as one_pass, np.load(changed) as other:
        assert other["object"].shape == one_pass["object"].shape
        covered = np.abs(one_pass["object"]) > 0
        assert np.array_equal(np.abs(other["object"]) > 0, covered)
        assert np.abs(other["object"] - one_pass["object"])[covered].mean() > 1e-4


@pytest.mark.parametrize("argv, message", [
    (["train", "{missing}", "-o", "{out}"], "no such file"),
    (["train", "{garbage}", "-o", "{out}"], "cannot be read as an NPZ"),
    (["infer", "{garbage}", "{scan}", "-o", "{out}.h5"], "not a model bundle"),
    (["infer", "{model}", "{scan}", "-o", "{nodir}/x.h5"], "does not exist"),
    (["evaluate", "{garbage}", "--truth", "{scan}"], "garbage.npz: cannot be read as an NPZ archive (not a zip file"),
    (["simulate", "-o", "{out}.npz", "--object", "nonsense"], "--object"),
    (["train", "{scan}", "-o", "{out}", "--synthetic-patterns", "8", "--synthetic-object", "nonsense"],
     "synthetic_object"),
    (["train", "{scan}", "-o", "{out}", "--synthetic-patterns", "8", "--synthetic-object", "{garbage}"],
     "garbage.npz: cannot be read as an NPZ"),
    (["train", "{scan}", "-o", "{out}", "--synthetic-patterns", "8", "--model", "supervised"], "synthetic_patterns"),
    (["train", "{scan}", "-o", "{out}", "--init", "{model}", "--gridsize", "1"], "--gridsize 1: the initial model"),
    (["train", "{scan}", "-o", "{out}", "--init", "{garbage}"], "not a model bundle"),
    (["train", "{scan}", "-o", "{out}", "--checkpoint-every", "-1"], "--checkpoint-every"),
])
def test_bad_input_is_one_line_with_status_2_and_no_output(workdir, scan_file, model_dir, capsys, argv, message):
    garbage = workdir / "garbage.npz"
    garbage.write_text("not an archive")
    out = workdir / "should-not-exist"
    values = {"missing": workdir / "missing.npz", "garbage": garbage, "out": out, "scan": scan_file,
              "model": model_dir, "nodir": workdir / "no-such-dir"}
    capsys.readouterr()
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ptychopinn: error:") and message in err
    assert not any(p.name.startswith("should-not-exist") for p in workdir.iterdir())


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("scan.npz", "model/wts.h5.zip", "model/loss.png", "reconstruction.h5", "reconstruction.png",
                 "metrics.json", "metrics.png"):
        assert (tmp_path / "demo" / name).is_file(), name
        assert str(tmp_path / "demo" / name) in out
    scores = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert set(scores) >= {"amp_ssim", "phase_ssim", "amp_frc50", "phase_frc50"}
