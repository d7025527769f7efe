"""Real photos end to end: a tiny trained run → predict() and the `predict` command."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from cifar_lib import plots
from cifar_lib.checkpoint import load_model
from cifar_lib.cli import main
from cifar_lib.data import CLASSES, CifarSplit, DataError, load_cifar10
from cifar_lib.photos import ImageError, Upload, to_model_input
from cifar_lib.inference import predict_logits
from cifar_lib.checkpoint import LoadedModel, load_run
from cifar_lib.photos import Prediction, predict
from cifar_lib.recipes import configure
from cifar_lib.train import fit

SAMPLES = Path(__file__).resolve().parent.parent / "cifar_lib" / "sample_images"
PHOTOS = [SAMPLES / n for n in ("dog.jpg", "eagle.jpg", "giraffe.jpg")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A seed-recipe run trained for one epoch on 512 images (real CIFAR-10 where available,
    else random images: the prediction path is the same)."""
    try:
        train, test = load_cifar10()
    except DataError:
        g = torch.Generator().manual_seed(0)
        train = CifarSplit(torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, generator=g),
                           torch.arange(512) % 10)
        test = train
    folder = tmp_path_factory.mktemp("run")
    cfg = configure("original", epochs=1, train_subset=512, test_subset=256, device="cpu")
    fit(cfg, train, test, run_dir=folder, progress=False)
    return folder


def test_one_photo(run_dir):
    p = predict(run_dir, PHOTOS[0])
    assert isinstance(p, Prediction) and p.name == "dog.jpg" and p.error is None
    assert len(p.top_k) == 3 and all(c in CLASSES for c, _ in p.top_k)
    probs = [q for _, q in p.top_k]
    assert probs == sorted(probs, reverse=True)
    assert p.probs.shape == (10,) and p.probs.sum().item() == pytest.approx(1, abs=1e-5)
    assert p.top_k[0] == (CLASSES[p.probs.argmax()], pytest.approx(p.probs.max().item()))
    assert p.confident == (p.probability >= 0.5)
    assert p.input.shape == (3, 32, 32) and p.input.dtype == torch.uint8
    assert str(p).startswith("dog.jpg: ")


def test_a_batch_and_the_threshold(run_dir):
    loaded = load_model(run_dir)  # (model, ckpt): loaded once, reused
    preds = predict(loaded, PHOTOS, top_k=5)
    assert [p.name for p in preds] == ["dog.jpg", "eagle.jpg", "giraffe.jpg"]
    assert all(len(p.top_k) == 5 for p in preds)
    assert not any(p.confident for p in predict(loaded, PHOTOS, threshold=1.01))
    assert all(p.confident for p in predict(loaded, PHOTOS, threshold=0.0))
    single = predict(loaded, PHOTOS[2])
    assert single.probs == pytest.approx(preds[2].probs)  # batching changes nothing
    assert predict(loaded, PHOTOS[0], top_k=50).top_k.__len__() == 10


def test_options_change_the_input(run_dir):
    squash = predict(run_dir, PHOTOS[0])  # the default, chosen by measurement
    crop = predict(run_dir, PHOTOS[0], method="center_crop")
    assert torch.equal(squash.input, to_model_input(PHOTOS[0], 32, "squash"))
    assert not torch.equal(crop.input, squash.input)  # dog.jpg is 4:3, not square
    multi = predict(run_dir, PHOTOS[0], method="multi_crop")
    assert multi.input.shape == (6, 3, 32, 32) and torch.equal(multi.input[0], squash.input)
    lm = load_run(run_dir)  # multi_crop: the mean of the six views' probabilities
    logits = predict_logits(lm.model, multi.input, lm.mean, lm.std, tta_level=lm.tta_level)
    assert multi.probs == pytest.approx(lm.probabilities(logits).mean(0), abs=1e-6)
    tta = predict(run_dir, PHOTOS[0], tta_level=1)
    assert not torch.allclose(tta.probs, crop.probs)
    data = Upload(PHOTOS[1].read_bytes(), "upload.jpg")
    assert predict(run_dir, data).name == "upload.jpg"


def test_bad_images(run_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        predict(run_dir, [PHOTOS[0], bad])
    preds = predict(run_dir, [PHOTOS[0], bad, PHOTOS[1]], errors="report")
    assert [p.error is None for p in preds] == [True, False, True]
    assert "broken.jpg" in preds[1].error and preds[1].top_k == [] and not preds[1].confident
    assert preds[0].probs == pytest.approx(predict(run_dir, PHOTOS[0]).probs)


def test_model_without_checkpoint_is_refused(run_dir):
    model, ckpt = load_model(run_dir)
    with pytest.raises(TypeError, match="normalised"):
        predict(model, PHOTOS[0])
    lm = LoadedModel(model, CLASSES, tuple(ckpt["mean"]), tuple(ckpt["std"]))
    assert load_run(lm) is lm and predict(lm, PHOTOS[0]).label in CLASSES


def test_float_images_are_refused_and_left_as_they_were(run_dir):
    lm = load_run(run_dir)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    scaled = images.float()  # 0–255 as floats: the same pixels, the wrong type
    with pytest.raises(ValueError, match="expected uint8 images"):
        predict_logits(lm.model, scaled, lm.mean, lm.std)
    assert torch.equal(scaled, images.float())  # not divided in place


def test_figures(run_dir, tmp_path):
    preds = predict(run_dir, PHOTOS + [tmp_path / "missing.png"], errors="report")
    fig = plots.plot_topk(preds[0])
    assert isinstance(fig, Figure)
    bars = fig.axes[1].patches
    assert len(bars) == 3 and bars[-1].get_width() == pytest.approx(preds[0].probability)
    grid = plots.plot_prediction_grid(preds, ncols=2)
    titles = [ax.get_title() for ax in grid.axes if ax.get_title()]
    assert len(titles) == 3 and titles[0].startswith(f"dog.jpg\n{preds[0].label}")
    assert any("could not be read" in t.get_text() for ax in grid.axes for t in ax.texts)
    pre = plots.plot_preprocessing(PHOTOS[0])
    assert [ax.get_title().split(" ")[0] for ax in pre.axes] == ["original", "squash", "centre"]
    assert pre.axes[0].patches  # the crop box
    assert plots.save_figure(grid, tmp_path, "grid.png").stat().st_size > 1000


def test_cli_predict(run_dir, tmp_path, capsys):
    rc = main(["predict", *map(str, PHOTOS), "--run-dir", str(run_dir), "--top-k", "2"])
    out = capsys.readouterr()
    assert rc == 0 and out.err == ""
    note, threshold, *lines = out.out.strip().splitlines()  # are they calibrated? threshold?
    assert note == f"uncalibrated: run `python -m cifar_lib calibrate --run-dir {run_dir}` first"
    assert threshold == "'not confident' below a top probability of 0.50"
    assert [line.split(": ")[0] for line in lines] == list(map(str, PHOTOS))
    assert all(line.count("%") == 2 for line in lines)

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rc = main(["predict", str(PHOTOS[0]), str(empty), str(PHOTOS[1]), "--run-dir", str(run_dir),
               "--threshold", "1.01"])
    out = capsys.readouterr()
    assert rc == 1
    assert out.err.strip().splitlines() == [
        f"error: {empty} is empty (0 bytes): it is not an image"]
    lines = out.out.strip().splitlines()[2:]
    assert [line.split(": ")[0] for line in lines] == [str(PHOTOS[0]), str(PHOTOS[1])]
    assert all(line.endswith("(not confident)") for line in lines)


def test_cli_predict_without_a_run(tmp_path, capsys):
    assert main(["predict", str(PHOTOS[0]), "--run-dir", str(tmp_path / "none")]) == 1
    assert "no checkpoint" in capsys.readouterr().err
