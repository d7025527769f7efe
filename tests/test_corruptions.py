"""Corruptions (CIFAR-10-C style), accuracy under them, the robustness benchmark and its figures."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cifar_lib import corruptions as cr
from cifar_lib import plots
from cifar_lib.bench import BENCHMARKS
from cifar_lib.checkpoint import save_checkpoint
from cifar_lib.cli import main
from cifar_lib.data import CLASSES, CifarSplit
from cifar_lib.inference import accuracy, predict_logits
from cifar_lib.models import build_model
from cifar_lib.robustness import CLEAN, corruption_accuracy, summarize

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise"}  # the ones that draw from the seed


def textured_images(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 n×3×size×size that look a little like photos: a coloured gradient, stripes of a
    random frequency and direction, a rectangle with sharp edges, and fine grain."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        base = 60 + 120 * torch.rand(3, 1, 1, generator=g)
        tilt = 60 * (torch.rand(3, 1, 1, generator=g) - 0.5)
        freq, angle = 4 + 8 * torch.rand(1, generator=g), 3.14 * torch.rand(1, generator=g)
        stripes = 25 * torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)) * 6.28)
        img = base + tilt * (xx + yy) + stripes * torch.rand(3, 1, 1, generator=g)
        r, c = torch.randint(2, size // 2, (2,), generator=g).tolist()
        img[:, r:r + size // 3, c:c + size // 3] += 50 * (torch.rand(3, 1, 1, generator=g) - 0.5)
        img += 6 * torch.randn(3, size, size, generator=g)
        out.append(img)
    return torch.stack(out).clamp(10, 245).round().to(torch.uint8)


@pytest.fixture(scope="module")
def images():
    return textured_images()


def _mad(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


# ----------------------------------------------------------------------------- corruptions


def test_one_table_of_five_severities_per_corruption():
    assert cr.CORRUPTIONS == tuple(cr.SEVERITIES) and len(cr.CORRUPTIONS) >= 8
    assert {"gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "jpeg", "contrast",
            "brightness", "pixelate"} <= set(cr.CORRUPTIONS)
    assert all(len(v) == 5 for v in cr.SEVERITIES.values())
    assert all(f < 1 for f in cr.SEVERITIES["brightness"])  # darkening, as documented


@pytest.mark.parametrize("name", cr.CORRUPTIONS)
def test_corruption_is_deterministic_and_keeps_the_format(images, name):
    before = images.clone()
    rng = torch.get_rng_state()
    out = cr.corrupt(images, name, 3, seed=0)
    assert out.shape == images.shape and out.dtype == torch.uint8 and out.device == images.device
    assert torch.equal(images, before)  # the input is not modified in place
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is never used
    assert torch.equal(cr.corrupt(images, name, 3, seed=0), out)
    other = cr.corrupt(images, name, 3, seed=1)
    assert torch.equal(other, out) == (name not in RANDOM)  # only the noises depend on the seed


@pytest.mark.parametrize("name", cr.CORRUPTIONS)
def test_each_severity_changes_the_images_more(images, name):
    mads = [_mad(cr.corrupt(images, name, s), images) for s in range(1, 6)]
    assert mads[0] > 0.3, f"{name} severity 1 barely changes the images: {mads}"
    assert all(a < b for a, b in zip(mads, mads[1:])), f"{name}: {mads}"


def test_corruptions_do_what_their_names_say(images):
    x = images.float()
    assert cr.corrupt(images, "brightness", 5).float().mean() < 0.5 * x.mean()
    flat = cr.corrupt(images, "contrast", 5).float()
    assert (flat.std(dim=(1, 2, 3)) < 0.2 * x.std(dim=(1, 2, 3))).all()  # factor 0.15
    grey = cr.corrupt(images, "saturate", 5).int()
    assert (grey.max(1).values - grey.min(1).values).max() <= 1  # R = G = B, up to rounding
    salt = cr.corrupt(images, "impulse_noise", 5)
    changed = salt != images
    assert set(salt[changed].unique().tolist()) <= {0, 255}
    assert 0.03 < changed.float().mean() < 0.07  # 7% of values hit, some already were 0/255
    noise = cr.corrupt(images, "gaussian_noise", 5).float() - x
    assert noise.std().item() == pytest.approx(0.10 * 255, rel=0.1)
    blocks = cr.corrupt(images, "pixelate", 5)  # 32 → 20 px and back: repeated columns
    assert (blocks[..., 1:] == blocks[..., :-1]).all(dim=(0, 1, 2)).sum() >= 10


def test_chunks_give_the_same_images(images, monkeypatch):
    whole = {n: cr.corrupt(images, n, 4) for n in ("jpeg", "defocus_blur", "pixelate")}
    monkeypatch.setattr(cr, "CHUNK", 3)
    for name, expected in whole.items():
        assert torch.equal(cr.corrupt(images, name, 4), expected)
    assert torch.equal(cr.corrupt(images, "shot_noise", 2), cr.corrupt(images, "shot_noise", 2))
    assert cr.corrupt(images[:0], "jpeg", 1).shape == (0, 3, 32, 32)


def test_other_image_sizes_work(images):
    big = torch.nn.functional.interpolate(images.float(), size=64).round().to(torch.uint8)
    for name in cr.CORRUPTIONS:
        assert cr.corrupt(big, name, 2).shape == big.shape


@pytest.mark.parametrize("name, severity, match", [
    ("fog", 1, "unknown corruption 'fog'; valid: gaussian_noise, shot_noise"),
    ("jpeg", 0, "severity must be an integer 1, 2, 3, 4 or 5, got 0"),
    ("jpeg", 6, "got 6"), ("jpeg", 2.0, "got 2.0"), ("jpeg", True, "got True")])
def test_bad_name_or_severity(images, name, severity, match):
    with pytest.raises(ValueError, match=match):
        cr.corrupt(images, name, severity)


@pytest.mark.parametrize("bad", [torch.rand(2, 3, 32, 32),  # float, not uint8
                                 torch.zeros(2, 1, 32, 32, dtype=torch.uint8),  # not RGB
                                 torch.zeros(3, 32, 32, dtype=torch.uint8),  # one image, no N
                                 np.zeros((2, 3, 32, 32), np.uint8)])  # numpy, not a tensor
def test_bad_images(bad):
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor N×3×H×W"):
        cr.corrupt(bad, "jpeg", 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_gives_the_cpu_images(images):
    for name in cr.CORRUPTIONS:
        on_gpu = cr.corrupt(images.cuda(), name, 3)
        assert on_gpu.device.type == "cuda"
        # same random draws (made on the CPU); float kernels may round a value differently
        assert (on_gpu.cpu().int() - cr.corrupt(images, name, 3).int()).abs().max() <= 1, name


# ----------------------------------------------------------------------------- accuracy


def _save_tiny_run(folder, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("airbench", widths=(4, 8, 8))
    save_checkpoint(folder / "checkpoint.pt", model, model_name="airbench",
                    model_kwargs={"widths": (4, 8, 8)}, classes=CLASSES, mean=(0.5,) * 3,
                    std=(0.25,) * 3, config={"tta_level": 2}, epoch=1)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for i, name in enumerate(("alpha", "beta")):
        (root / name).mkdir()
        _save_tiny_run(root / name, seed=i)
    return [root / "alpha", root / "beta"]


@pytest.fixture(scope="module")
def split():
    return CifarSplit(textured_images(24, seed=1), torch.arange(24) % 10)


@pytest.fixture(scope="module")
def rows(tiny_runs, split, one_thread):
    return corruption_accuracy(tiny_runs, split, device="cpu")


def test_corruption_accuracy_rows(rows, tiny_runs, split):
    assert len(rows) == 2 * (1 + len(cr.CORRUPTIONS) * 5)
    assert all(set(r) == {"model", "corruption", "severity", "accuracy", "images"} for r in rows)
    alpha = [r for r in rows if r["model"] == "alpha"]
    assert [(r["corruption"], r["severity"]) for r in alpha] == \
        [(CLEAN, 0)] + [(c, s) for c in cr.CORRUPTIONS for s in range(1, 6)]
    assert all(r["images"] == 24 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert [r["model"] for r in rows[len(alpha):]] == ["beta"] * len(alpha)
    # the clean row is the run's accuracy without TTA (level 0 for every model, by default)
    from cifar_lib.checkpoint import load_run
    lm = load_run(tiny_runs[0], "cpu")
    assert alpha[0]["accuracy"] == accuracy(predict_logits(lm.model, split.images, lm.mean,
                                                           lm.std), split.labels)
    jpeg3 = next(r for r in alpha if r["corruption"] == "jpeg" and r["severity"] == 3)
    expected = predict_logits(lm.model, cr.corrupt(split.images, "jpeg", 3), lm.mean, lm.std)
    assert jpeg3["accuracy"] == accuracy(expected, split.labels)


def test_summarize(rows):
    s = summarize(rows)
    assert list(s) == ["alpha", "beta"]
    alpha = [r for r in rows if r["model"] == "alpha"]
    assert s["alpha"]["clean"] == alpha[0]["accuracy"]
    corrupted = [r["accuracy"] for r in alpha[1:]]
    assert s["alpha"]["mean_corrupted"] == pytest.approx(np.mean(corrupted))
    assert list(s["alpha"]["per_corruption"]) == list(cr.CORRUPTIONS)
    assert s["alpha"]["per_corruption"]["jpeg"] == pytest.approx(
        np.mean([r["accuracy"] for r in alpha if r["corruption"] == "jpeg"]))


def test_corruption_accuracy_subset_and_errors(tiny_runs, split, one_thread):
    few = corruption_accuracy(tiny_runs[0], split, corruptions=["jpeg"], severities=(1, 5),
                              device="cpu")
    assert [(r["corruption"], r["severity"]) for r in few] == [(CLEAN, 0), ("jpeg", 1), ("jpeg", 5)]
    with pytest.raises(ValueError, match="corruptions must be some of gaussian_noise"):
        corruption_accuracy(tiny_runs[0], split, corruptions=["fog"], device="cpu")
    with pytest.raises(ValueError, match="severities must be some of 1..5"):
        corruption_accuracy(tiny_runs[0], split, severities=(0, 1), device="cpu")
    with pytest.raises(ValueError, match="share a name"):
        corruption_accuracy([tiny_runs[0], tiny_runs[0]], split, corruptions=["jpeg"],
                            device="cpu")


def test_bench_quick_writes_a_record(tiny_runs, cifar_folder, tmp_path, one_thread):
    assert "robustness" in BENCHMARKS
    root = cifar_folder(tmp_path / "data")  # a synthetic test batch of 40 images
    out = tmp_path / "robustness.json"
    argv = ["bench", "robustness", "--quick", "--runs", *map(str, tiny_runs),
            "--data-root", str(root), "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "robustness" and record["images"] == 40
    assert record["tta_level"] == 0 and record["seed"] == 0 and record["machine"]["cpu"]
    assert len(record["rows"]) == 2 * (1 + len(cr.CORRUPTIONS) * 5)
    assert set(record["rows"][0]) == {"model", "run", "corruption", "severity", "accuracy",
                                      "images"}
    assert record["rows"][0]["run"] == str(tiny_runs[0])  # tmp_path: outside the cwd, as given
    assert set(record["summary"]) == {"alpha", "beta"}
    assert record["summary"]["beta"]["mean_corrupted"] == pytest.approx(
        summarize(record["rows"])["beta"]["mean_corrupted"])
    text = printed.getvalue()
    assert "| alpha | jpeg |" in text and "beta: clean" in text and "mean corrupted" in text


def test_bench_refuses_zero_images(tiny_runs, synthetic_root, tmp_path, capsys):
    argv = ["bench", "robustness", "--images", "0", "--runs", str(tiny_runs[0]),
            "--data-root", str(synthetic_root), "--out", str(tmp_path / "r.json")]
    assert main(argv) != 0
    assert "--images must be at least 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- figures


def test_heatmap_has_one_panel_per_model_and_a_shared_colour_bar(rows):
    fig = plots.plot_corruption_heatmap(rows)
    assert isinstance(fig, Figure) and len(fig.axes) == 3  # alpha, beta, colour bar
    alpha = fig.axes[0]
    assert alpha.get_title().startswith("alpha: clean ") and "mean corrupted" in alpha.get_title()
    assert len(alpha.texts) == len(cr.CORRUPTIONS) * 5
    assert [t.get_text() for t in alpha.get_yticklabels()] == list(cr.CORRUPTIONS)
    assert fig.axes[0].collections[0].get_clim() == fig.axes[1].collections[0].get_clim()
    assert len(plots.plot_corruption_heatmap(rows, models=["beta"]).axes) == 2
    with pytest.raises(ValueError, match="no rows for model"):
        plots.plot_corruption_heatmap(rows, models=["gamma"])


def test_examples_figure_shows_every_corruption_at_every_severity(images):
    from cifar_lib import plots
    fig = plots.plot_corruption_examples(images[0], ["jpeg", "contrast"], severities=(1, 5))
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["clean", "severity 1", "severity 5"]
    assert fig.axes[3].get_ylabel() == "contrast"
