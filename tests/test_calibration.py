"""Temperature scaling: the fit on synthetic logits, the threshold rule, fitting on the
validation split and measuring on the test set, calibration.json read back by load_run /
predict / evaluate_run, and the `calibrate` command."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cifar_lib import plots
from cifar_lib.calibration import (Calibration, calibrate_run, calibration_bins,
                                   describe_calibration, fit_temperature, mean_nll,
                                   threshold_for_accuracy)
from cifar_lib.checkpoint import CheckpointError, checkpoint_digest, load_run, save_checkpoint
from cifar_lib.files import write_json
from cifar_lib.cli import main
from cifar_lib.data import CLASSES, CifarSplit
from cifar_lib.evaluation import evaluate_run
from cifar_lib.models import build_model
from cifar_lib.data import load_cifar10
from cifar_lib.inference import predict_logits
from cifar_lib.photos import predict
from cifar_lib.recipes import configure
from cifar_lib.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

PHOTO = Path(__file__).resolve().parent.parent / "cifar_lib" / "sample_images" / "dog.jpg"


def calibrated_sample(n: int = 5000, c: int = 10, seed: int = 0):
    """Logits N×C and labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2.5
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


# ----------------------------------------------------------------------------- fitting


def test_recovers_a_known_temperature():
    logits, labels = calibrated_sample()
    assert fit_temperature(logits * 3, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(logits / 2, labels) == pytest.approx(0.5, rel=0.05)


def test_calibrated_data_keep_temperature_one_and_the_fit_never_hurts():
    logits, labels = calibrated_sample(seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    over = logits.float() * 2  # over-confident
    t = fit_temperature(over, labels)
    assert mean_nll(over, labels, t) < mean_nll(over, labels) - 0.05
    for nearby in (t * 0.9, t * 1.1):  # and it is the minimum, not just an improvement
        assert mean_nll(over, labels, t) <= mean_nll(over, labels, nearby)
    assert fit_temperature(over, labels) == t  # deterministic


@pytest.mark.parametrize("logits, labels, match", [
    (torch.zeros(0, 10), torch.zeros(0, dtype=torch.long), "no images"),
    (torch.zeros(5, 10), torch.zeros(4, dtype=torch.long), "logits N×C and labels N"),
    (torch.zeros(5), torch.zeros(5, dtype=torch.long), "logits N×C and labels N"),
    (torch.full((2, 3), math.nan), torch.zeros(2, dtype=torch.long), "NaN"),
    (torch.zeros(2, 3), torch.tensor([0, 3]), "0..2"),
])
def test_bad_input_is_refused(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, labels)


# ----------------------------------------------------------------------------- threshold


def test_threshold_for_accuracy_by_hand():
    # top probabilities 0.9 ✓, 0.8 ✓, 0.7 ✗, 0.6 ✓, 0.5 ✗ (class 0 is always predicted)
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    probs = [[p, 1 - p] for p in conf]
    labels = [0, 0, 1, 0, 1]
    # keeping conf ≥ 0.6 gives 3/4 = 75 %, ≥ 0.5 gives 3/5 = 60 %
    r = threshold_for_accuracy(probs, labels, 0.75)
    assert r == {"threshold": 0.6, "coverage": 0.8, "accuracy": 0.75}
    assert threshold_for_accuracy(probs, labels, 0.9)["threshold"] == 0.8  # 2/2, not 2/3
    assert threshold_for_accuracy(probs, labels, 0.5)["coverage"] == 1.0
    with pytest.raises(ValueError, match="no confidence threshold reaches accuracy 100.0%"):
        threshold_for_accuracy(probs, [1, 0, 0, 0, 0], 1.0)
    with pytest.raises(ValueError, match="target"):
        threshold_for_accuracy(probs, labels, 1.5)


def test_threshold_keeps_ties_together():
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.7, 0.3]])
    # at 0.7 both tied predictions are kept: 2/3; nothing between 1 and 3 predictions exists
    assert threshold_for_accuracy(probs, torch.tensor([0, 0, 1]), 0.6)["coverage"] == 1.0
    r = threshold_for_accuracy(probs, torch.tensor([0, 0, 1]), 0.7)
    assert r["threshold"] == pytest.approx(0.9) and r["coverage"] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- runs


def _save_run(folder: Path, tta_level: int = 0) -> Path:
    torch.manual_seed(0)
    model = build_model("simple_cnn")
    save_checkpoint(folder / "checkpoint.pt", model, model_name="simple_cnn", model_kwargs={},
                    classes=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3,
                    config={"tta_level": tta_level}, epoch=1)
    return folder


def _split(n: int, seed: int) -> CifarSplit:
    g = torch.Generator().manual_seed(seed)
    return CifarSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(n) % 10)


@pytest.fixture(scope="module")
def split():
    """A stand-in test set."""
    return _split(64, 0)


@pytest.fixture(scope="module")
def validation():
    """A stand-in validation split: other images than the test set's."""
    return _split(48, 1)


def test_calibrate_run_writes_what_load_run_and_predict_use(tmp_path, split, validation):
    run = _save_run(tmp_path)
    assert load_run(run).temperature == 1.0 and load_run(run).calibration is None
    before = predict(run, PHOTO)
    assert before.temperature == 1.0
    c = calibrate_run(run, validation, split, device="cpu")
    assert c.n_images == 48 and c.report_images == 64 and c.tta_level == 0
    assert "validation split (48 held-out" in c.fitted_on
    # fitted on the validation images only; measured on the test images only
    lm = load_run(run)
    z_val = predict_logits(lm.model, validation.images, lm.mean, lm.std)
    assert c.temperature == pytest.approx(fit_temperature(z_val, validation.labels))
    z_test = predict_logits(lm.model, split.images, lm.mean, lm.std)
    assert c.nll_after == pytest.approx(mean_nll(z_test, split.labels, c.temperature))
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["temperature"] == pytest.approx(c.temperature)
    assert Calibration.from_dict(saved).ece_after == pytest.approx(c.ece_after)
    assert len(saved["bins_before"]) == 15

    lm = load_run(run)
    assert lm.temperature == pytest.approx(c.temperature) != 1.0
    assert "calibrated with temperature" in describe_calibration(lm)
    after = predict(run, PHOTO)
    assert after.temperature == pytest.approx(c.temperature)
    assert after.label == before.label and not torch.allclose(after.probs, before.probs)
    assert torch.allclose(predict(run, PHOTO, calibrated=False).probs, before.probs)
    # the temperature belongs to the TTA level it was fitted on
    assert predict(run, PHOTO, tta_level=1).temperature == 1.0
    assert "TTA level 0" in describe_calibration(lm, tta_level=1)

    cal = evaluate_run(run, split, device="cpu", write=False)
    raw = evaluate_run(run, split, device="cpu", write=False, calibrated=False)
    assert cal.info["calibrated"] and cal.info["temperature"] == pytest.approx(c.temperature)
    assert not raw.info["calibrated"] and raw.info["temperature"] == 1.0
    assert cal.accuracy == raw.accuracy and cal.nll != pytest.approx(raw.nll)


@pytest.mark.parametrize("content, why", [
    ("{not json", "not readable JSON"),
    ('{"temperature": -1}', "'temperature' must be a number > 0"),
    ('{"temperature": "2"}', "'temperature' must be a number > 0"),
    ('[1.5]', "not a JSON object"),
    ('{"temperature": 1.5, "checkpoint_sha256": "abc"}', "fitted for another checkpoint.pt"),
])
def test_a_bad_calibration_file_is_one_clear_error(tmp_path, content, why):
    run = _save_run(tmp_path)
    (tmp_path / "calibration.json").write_text(content)
    with pytest.raises(CheckpointError, match="calibration.json is not a valid calibration") as e:
        load_run(run)
    assert why in str(e.value)
    assert f"python -m cifar_lib calibrate --run-dir {tmp_path}" in str(e.value)
    assert load_run(run, calibrated=False).calibration is None  # plain softmax needs no file


def test_uncalibrated_commands_work_beside_a_stale_calibration(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    write_json(run / "calibration.json", {"temperature": 1.5, "checkpoint_sha256": "abc"})
    evaluate = ["evaluate", "--run-dir", str(run), "--device", "cpu", "--no-progress",
                "--data-root", str(synthetic_root)]
    predict_ = ["predict", str(PHOTO), "--run-dir", str(run), "--device", "cpu"]
    capsys.readouterr()
    for argv in (evaluate, predict_):
        assert main(argv) == 1 and "calibrate --run-dir" in capsys.readouterr().err
        assert main([*argv, "--uncalibrated"]) == 0, capsys.readouterr().err


def test_a_stale_calibration_leaves_calibrate_and_plain_probabilities_working(
        synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    write_json(run / "calibration.json", {"temperature": 1.5, "checkpoint_sha256": "abc"})
    split = load_cifar10(synthetic_root)[1]
    assert predict(run, PHOTO, device="cpu", calibrated=False).temperature == 1.0
    assert evaluate_run(run, split, device="cpu", write=False, calibrated=False,
                        progress=False).info["temperature"] == 1.0
    assert calibrate_run(run, split, device="cpu", write=False, progress=False).temperature > 0
    # the fix the error names works: calibrate replaces the stale file
    capsys.readouterr()
    assert main(["calibrate", "--run-dir", str(run), "--device", "cpu", "--no-progress",
                 "--data-root", str(synthetic_root)]) == 0, capsys.readouterr().err
    assert load_run(run).calibration is not None


def test_a_damaged_checkpoint_is_reported_before_its_calibration(tmp_path):
    run = _save_run(tmp_path)
    write_json(tmp_path / "calibration.json",
               {"temperature": 1.5, "checkpoint_sha256": checkpoint_digest(run)})
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[:len(data) // 2])  # an interrupted copy
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as e:
        load_run(run)
    assert "calibration" not in str(e.value)  # nothing asks to delete a file that is fine


def test_a_hand_written_temperature_is_used(tmp_path):
    run = _save_run(tmp_path)
    write_json(tmp_path / "calibration.json", {"temperature": 2.0})
    lm = load_run(run)
    logits = torch.tensor([[2.0, 0.0]])
    assert lm.probabilities(logits) == pytest.approx(torch.softmax(logits / 2, 1))
    assert lm.probabilities(logits, calibrated=False) == pytest.approx(torch.softmax(logits, 1))


def test_cli_calibrate_then_predict(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    capsys.readouterr()
    # train ends calibrated, on the 20 of 200 training images it held out
    t = json.loads((run / "calibration.json").read_text())["temperature"]
    assert main(["predict", str(PHOTO), "--run-dir", str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"probabilities calibrated with temperature "
                                              f"T={t:.2f}, fitted on the validation split "
                                              f"(20 held-out training images)")
    (run / "calibration.json").unlink()
    assert main(["predict", str(PHOTO), "--run-dir", str(run)]) == 0
    assert capsys.readouterr().out.startswith(
        f"uncalibrated: run `python -m cifar_lib calibrate --run-dir {run}` first\n")

    assert main(["calibrate", "--run-dir", str(run), "--device", "cpu", "--data-root",
                 str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    assert json.loads((run / "calibration.json").read_text())["temperature"] == t  # the same
    assert out.startswith(f"temperature T={t:.3f}, fitted on the validation split (20 held-out")
    assert "on the 40 test images" in out and "ECE" in out
    assert main(["predict", str(PHOTO), "--run-dir", str(run), "--uncalibrated"]) == 0
    assert capsys.readouterr().out.startswith("uncalibrated probabilities (asked for)")
    assert main(["evaluate", "--run-dir", str(run), "--data-root", str(synthetic_root)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["temperature"] == pytest.approx(t) and "T=" in report["calibration"]



def test_shipped_runs_are_read_not_written(tmp_path, monkeypatch, split, validation, capsys):
    """An installed package may be read-only and its models are everyone's: evaluating or
    calibrating one leaves its folder as it was, unless asked (``ship`` asks)."""
    from cifar_lib import pretrained
    monkeypatch.setattr(pretrained, "RUNS", tmp_path / "shipped")
    run = _save_run(tmp_path / "shipped" / "fast")
    before = sorted(p.name for p in run.iterdir())
    c = calibrate_run(run, validation, split, device="cpu", progress=False)
    evaluate_run(run, split, device="cpu", progress=False)
    assert c.temperature != 1.0 and sorted(p.name for p in run.iterdir()) == before
    calibrate_run(run, validation, device="cpu", write=True, progress=False)
    assert (run / "calibration.json").is_file()
    own = _save_run(tmp_path / "own")  # a run of one's own: written as before
    calibrate_run(own, validation, device="cpu", progress=False)
    evaluate_run(own, split, device="cpu", progress=False)
    assert {"calibration.json", "evaluation.json"} <= {p.name for p in own.iterdir()}
    assert main(["calibrate", "--run-dir", str(run), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "ships inside cifar_lib" in err and f"cp -r {run} my_run" in err

def test_before_after_figure():
    logits, labels = calibrated_sample(2000)
    before = calibration_bins((logits * 2).softmax(1), labels)
    after = json.loads(json.dumps(calibration_bins(logits.softmax(1), labels), default=str)
                       .replace("NaN", "null"))  # as read back from calibration.json
    fig = plots.plot_reliability_before_after(before, after, 0.1, 0.01, title="T=2")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[0].get_title() == "before (ECE 10.00%)"
    assert fig.axes[1].get_title() == "after (ECE 1.00%)"
    heights = [p.get_height() for p in fig.axes[2].patches]
    assert sum(heights) == len(labels) and np.all(np.asarray(heights) >= 0)


def test_the_calibrated_threshold_is_chosen_on_validation_and_used(tmp_path, split,
                                                                   validation):
    run = _save_run(tmp_path)
    assert load_run(run).confidence_threshold() == 0.5          # uncalibrated: the plain 0.5
    c = calibrate_run(run, validation, split, device="cpu", target_accuracy=0.05)
    lm = load_run(run)
    logits = predict_logits(lm.model, validation.images, lm.mean, lm.std)
    expected = threshold_for_accuracy(lm.probabilities(logits), validation.labels, 0.05)
    assert {k: c.threshold[k] for k in expected} == pytest.approx(expected)
    assert c.target_accuracy == 0.05
    # what the threshold chosen on validation does on the test images, reported beside it
    test_conf = lm.probabilities(predict_logits(lm.model, split.images, lm.mean, lm.std)).max(1)
    assert c.threshold["test_coverage"] == pytest.approx(
        (test_conf.values >= expected["threshold"]).double().mean().item())
    assert lm.confidence_threshold() == pytest.approx(expected["threshold"])
    assert lm.confidence_threshold(calibrated=False) == 0.5
    p = predict(run, PHOTO)
    assert p.confident == (p.probability >= expected["threshold"])
    # A calibration without a threshold (none reached its target) falls back to 0.5.
    write_json(tmp_path / "calibration.json", {"temperature": 2.0, "threshold": None})
    assert load_run(run).confidence_threshold() == 0.5


def test_training_again_removes_the_stale_calibration(synthetic_root, tmp_path):
    run = tmp_path / "run"
    train, test = load_cifar10(synthetic_root)
    cfg = configure("original", quick=True, device="cpu")
    fit(cfg, train, test, run_dir=run, progress=False)
    calibrate_run(run, test, device="cpu")  # (any images do for this test)
    assert (run / "calibration.json").is_file()
    fit(cfg.replace(seed=1), train, test, run_dir=run, progress=False)
    assert not (run / "calibration.json").exists()        # it belonged to the old weights
    assert load_run(run).temperature == 1.0               # so loading works, uncalibrated
