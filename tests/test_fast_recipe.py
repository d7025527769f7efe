"""The fast recipe on real data: it learns, TTA has the right shapes and does not hurt."""
import pytest
import torch

from cifar_lib.inference import accuracy, predict_logits, tta_logits
from cifar_lib.recipes import configure
from cifar_lib.train import fit

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def small_fast_run(cifar10):
    """The fast recipe with a narrower net on 5,000 real images for 3 epochs (CPU, ~half a minute)."""
    cfg = configure("fast", model_kwargs={"widths": (32, 64, 64)}, epochs=3, batch_size=256,
                     lr=0.5, train_subset=5000, test_subset=2000, device="cpu")
    return fit(cfg, *cifar10, progress=False), cfg


def test_quick_fast_run_learns_well_above_chance(small_fast_run):
    result, _ = small_fast_run
    assert result.metrics["test_acc"] > 0.35  # chance is 0.10
    assert result.metrics["test_images"] == 2000


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tta_returns_one_row_of_logits_per_image(small_fast_run, level):
    result, _ = small_fast_run
    model = result.model.eval()
    with torch.no_grad():
        assert tta_logits(model, torch.randn(5, 3, 32, 32), level).shape == (5, 10)


def test_tta_does_not_lower_accuracy_beyond_noise(small_fast_run, cifar10):
    result, cfg = small_fast_run
    test = cifar10[1].subset(2000)
    acc = {level: accuracy(predict_logits(result.model, test.images, cfg.mean, cfg.std,
                                          tta_level=level), test.labels) for level in (0, 2)}
    # ±1.1 points is the standard error of an accuracy near 50% on 2,000 images.
    assert acc[2] >= acc[0] - 0.02, acc


def test_unknown_tta_level_is_refused():
    with pytest.raises(ValueError, match="tta level"):
        tta_logits(torch.nn.Identity(), torch.randn(1, 3, 32, 32), 3)
