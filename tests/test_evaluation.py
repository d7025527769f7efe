"""Evaluation metrics on tiny hand-checked examples, evaluate_run / compare_runs, and figures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from cifar_lib import evaluation as ev
from cifar_lib import plots
from cifar_lib.checkpoint import save_checkpoint
from cifar_lib.data import CLASSES, CifarSplit
from cifar_lib.models import build_model

ABC = ("a", "b", "c")
# true 0 0 1 1 2 2, predicted 0 1 1 1 0 2  →  rows = true, columns = predicted
LABELS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 0, 2]
CM = [[1, 1, 0],
      [0, 2, 0],
      [1, 0, 1]]


def test_wilson_interval_matches_the_textbook():
    lo, hi = ev.wilson_interval(8, 10)  # 8/10 at 95 %: (0.490, 0.943)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9434, abs=1e-4)
    assert ev.wilson_interval(0, 20)[0] == 0.0 and ev.wilson_interval(20, 20)[1] == 1.0
    wide, narrow = ev.wilson_interval(90, 100), ev.wilson_interval(9000, 10000)
    assert wide[0] < narrow[0] < 0.9 < narrow[1] < wide[1]
    assert narrow[1] - narrow[0] == pytest.approx(2 * 1.96 * math.sqrt(0.09 / 10000), rel=0.01)
    lo99, hi99 = ev.wilson_interval(8, 10, confidence=0.99)
    assert lo99 < lo and hi99 > hi


def test_confusion_matrix_and_normalisation():
    cm = ev.confusion_matrix(torch.tensor(LABELS), torch.tensor(PREDS), 3)
    assert cm.tolist() == CM
    norm = ev.row_normalize(cm)
    assert norm[1].tolist() == [0, 1, 0] and norm[0].tolist() == [0.5, 0.5, 0]
    assert ev.row_normalize(np.zeros((2, 2))).tolist() == [[0, 0], [0, 0]]  # no division by 0


def test_per_class_precision_and_recall():
    rows = {r["class"]: r for r in ev.per_class_metrics(np.array(CM), ABC)}
    assert rows["a"]["precision"] == 0.5 and rows["a"]["recall"] == 0.5
    assert rows["b"]["precision"] == pytest.approx(2 / 3) and rows["b"]["recall"] == 1.0
    assert rows["c"]["precision"] == 1.0 and rows["c"]["recall"] == 0.5
    assert rows["b"]["accuracy"] == rows["b"]["recall"] and rows["b"]["support"] == 2
    assert rows["b"]["f1"] == pytest.approx(0.8)
    never = ev.per_class_metrics(np.array([[2, 0], [1, 0]]), ("x", "y"))[1]
    assert math.isnan(never["precision"]) and never["recall"] == 0.0


def test_most_confused_pairs():
    cm = np.array([[5, 3, 0], [7, 5, 1], [0, 3, 9]])
    assert ev.most_confused_pairs(cm, ABC, k=3) == [("b", "a", 7), ("a", "b", 3), ("c", "b", 3)]
    assert ev.most_confused_pairs(np.eye(3, dtype=int), ABC) == []


# Five predictions, three classes; top probabilities .95 .85 .65 .62 .35 — see the ECE test.
PROBS = np.array([[0.95, 0.03, 0.02],   # true 0: right, confidence .95
                  [0.85, 0.10, 0.05],   # true 1: wrong, .85
                  [0.20, 0.65, 0.15],   # true 1: right, .65
                  [0.18, 0.20, 0.62],   # true 2: right, .62
                  [0.35, 0.33, 0.32]])  # true 2: wrong, .35
Y = np.array([0, 1, 1, 2, 2])


def test_expected_calibration_error_by_hand():
    # 10 bins: (.9,1] 1 image acc 1 conf .95 | (.8,.9] 1 image acc 0 conf .85 |
    # (.6,.7] 2 images acc 1 conf .635 | (.3,.4] 1 image acc 0 conf .35
    # ECE = (1·.05 + 1·.85 + 2·.365 + 1·.35) / 5 = 0.396
    assert ev.expected_calibration_error(PROBS, Y, n_bins=10) == pytest.approx(0.396)
    bins = ev.calibration_bins(PROBS, Y, n_bins=10)
    assert [b["count"] for b in bins] == [0, 0, 0, 1, 0, 0, 2, 0, 1, 1]
    assert bins[6]["confidence"] == pytest.approx(0.635) and bins[6]["accuracy"] == 1.0
    # One bin: |mean accuracy − mean confidence| = |.6 − .684|
    assert ev.expected_calibration_error(PROBS, Y, n_bins=1) == pytest.approx(0.084)
    # Bins are (lo, hi]: a confidence of exactly 0.75 belongs to (0.5, 0.75], and 1.0 to the last.
    edge = ev.calibration_bins(np.array([[0.75, 0.25], [1.0, 0.0]]), np.array([0, 0]), n_bins=4)
    assert [b["count"] for b in edge] == [0, 0, 1, 1]
    # Confidence equal to accuracy everywhere → 0.
    assert ev.expected_calibration_error(np.array([[0.5, 0.5]] * 4), np.array([0, 1, 0, 1]),
                                         n_bins=10) == pytest.approx(0.0)


def test_confident_mistakes_are_sorted():
    m = ev.confident_mistakes(PROBS, Y, ABC)
    assert [(r["index"], r["true"], r["predicted"]) for r in m] == [(1, "b", "a"), (4, "c", "a")]
    assert m[0]["confidence"] == pytest.approx(0.85)
    assert len(ev.confident_mistakes(PROBS, Y, ABC, k=1)) == 1


def test_evaluate_predictions_report():
    r = ev.evaluate_predictions(torch.tensor(PROBS), torch.tensor(Y), ABC, n_bins=10)
    assert r.accuracy == pytest.approx(0.6) and r.n == 5
    assert r.ci == pytest.approx(ev.wilson_interval(3, 5))
    assert r.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert r.nll == pytest.approx(-np.mean(np.log([0.95, 0.10, 0.65, 0.62, 0.32])), rel=1e-5)
    assert r.ece == pytest.approx(0.396)
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN (bins without images) became null
    assert json.loads(text)["per_class"][0]["class"] == "a"
    # the reliability diagram's bins, under a name that is not the run's calibration
    assert [b["count"] for b in d["reliability_bins"]] == [b["count"] for b in r.reliability_bins]
    assert "calibration" not in d
    assert sum(b["count"] for b in r.reliability_bins) == r.n


@pytest.mark.parametrize("labels, message", [
    ([0, 1, 2, 3, 0], "labels must be class indices 0–2, got values from 0 to 3"),
    ([-1, 1, 2, 0, 0], "labels must be class indices 0–2, got values from -1 to 2"),
    ([0, 1, 2], "expected one label per prediction (5), got 3"),
])
def test_labels_that_do_not_fit_the_classes_are_named(labels, message):
    with pytest.raises(ValueError) as e:
        ev.evaluate_predictions(torch.tensor(PROBS), torch.tensor(labels), ABC)
    assert str(e.value) == message


# ----------------------------------------------------------------------------- runs


def _save_run(folder, tta_level: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("simple_cnn")
    save_checkpoint(folder / "checkpoint.pt", model, model_name="simple_cnn", model_kwargs={},
                    classes=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3,
                    config={"tta_level": tta_level}, epoch=1)


@pytest.fixture(scope="module")
def split():
    g = torch.Generator().manual_seed(0)
    return CifarSplit(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g),
                      torch.arange(64) % 10)


def test_evaluate_run_writes_json(tmp_path, split):
    _save_run(tmp_path, tta_level=1, seed=0)
    r = ev.evaluate_run(tmp_path, split, device="cpu")
    assert r.probs.shape == (64, 10) and np.allclose(r.probs.sum(1), 1, atol=1e-5)
    assert r.info["tta_level"] == 1  # the run's own setting
    assert r.info["temperature"] == 1.0 and r.info["calibrated"] is False  # no calibration.json
    assert r.accuracy == pytest.approx(float((r.predictions == split.labels.numpy()).mean()))
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["tta_level"] == 1 and saved["test_images"] == 64
    assert saved["accuracy"] == pytest.approx(r.accuracy) and len(saved["per_class"]) == 10
    r0 = ev.evaluate_run(tmp_path, split, tta_level=0, device="cpu", json_name="eval_tta0.json")
    assert not np.allclose(r0.probs, r.probs)  # TTA changed the probabilities
    assert json.loads((tmp_path / "eval_tta0.json").read_text())["tta_level"] == 0


def test_compare_runs_table(tmp_path, split):
    (tmp_path / "plain").mkdir()
    (tmp_path / "tta").mkdir()
    _save_run(tmp_path / "plain", tta_level=0, seed=0)
    _save_run(tmp_path / "tta", tta_level=2, seed=1)
    rows = ev.compare_runs([tmp_path / "plain", tmp_path / "tta"], split, device="cpu")
    assert [(r["run"], r["tta_level"]) for r in rows] == [("plain", 0), ("tta", 0), ("tta", 2)]
    for r in rows:
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"] and r["parameters"] == 620_362
        assert set(r) >= {"model", "epochs", "nll", "ece", "test_images"}
        assert r["temperature"] == 1.0  # neither run has a calibration.json
    assert not (tmp_path / "plain" / "evaluation.json").exists()


# ----------------------------------------------------------------------------- figures


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 10)) * 2
    labels = rng.integers(0, 10, 200)
    logits[np.arange(200), labels] += 2.0  # better than chance, with mistakes
    probs = torch.softmax(torch.tensor(logits), 1)
    return ev.evaluate_predictions(probs, labels, CLASSES)


def test_confusion_figures(report, tmp_path):
    counts = plots.plot_confusion_matrix(report.confusion, CLASSES)
    norm = plots.plot_confusion_matrix(report.confusion, CLASSES, normalize=True)
    assert isinstance(counts, Figure) and isinstance(norm, Figure)
    texts = [t.get_text() for t in counts.axes[0].texts]
    assert len(texts) == 100 and texts[0] == str(report.confusion[0, 0])
    assert all("." in t.get_text() for t in norm.axes[0].texts)  # fractions, not counts
    assert [t.get_text() for t in counts.axes[0].get_xticklabels()] == list(CLASSES)
    path = plots.save_figure(norm, tmp_path, "confusion")
    assert path == tmp_path / "confusion.png"
    with Image.open(path) as im:
        assert im.size[0] > 500


def test_per_class_figure(report):
    assert plots.plot_per_class(report.per_class).axes[0].get_ylim() == (0, 1)


def test_mistakes_gallery(report):
    imgs = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8)
    fig = plots.plot_mistakes(imgs, report.mistakes[:10], ncols=5)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 10
    m = report.mistakes[0]
    assert titled[0].get_title() == f"{m['true']}\n→ {m['predicted']} {m['confidence']:.0%}"
    assert plots.plot_mistakes(imgs, []).axes[0].texts[0].get_text() == "no mistakes"
