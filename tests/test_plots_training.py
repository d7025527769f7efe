"""The figures of lesson 01's fast recipe (cifar_lib.plots.training): what each one shows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from cifar_lib.plots import training as plots_fast
from cifar_lib.models import Whitening
from cifar_lib.recipes import configure
from cifar_lib.train import lr_multiplier

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _images(n=32, seed=0) -> torch.Tensor:
    """Normalised float N×3×32×32 with correlated neighbours and colours (blurred noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    return F.interpolate(coarse, size=32, mode="bilinear", align_corners=False) - 0.5


def test_whitening_figure_labels_the_after_panel_by_direction_not_pixel():
    layer = Whitening()
    layer.init_from(_images())
    fig = plots_fast.plot_whitening(layer, _images(seed=1))
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title().startswith(("before", "after"))]
    before, after = sorted(panels, key=lambda ax: ax.get_title())[::-1]
    assert [t.get_text() for t in after.get_xticklabels()] == [f"d{k}" for k in range(1, 13)]
    assert [t.get_text() for t in before.get_xticklabels()][0] == "R ↖"


def test_learning_rates_are_each_groups_peak_times_the_schedule():
    cfg = configure("fast")
    rates = plots_fast.learning_rates(cfg, steps_per_epoch=25)
    total = cfg.epochs * 25
    assert set(rates) == {"conv filters (Muon)", "head (SGD)", "BatchNorm biases (SGD)",
                          "whitening bias (SGD)"}
    assert all(len(r) == total for r in rates.values())
    assert rates["conv filters (Muon)"][0] == pytest.approx(cfg.muon_lr)
    assert rates["head (SGD)"][100] == pytest.approx(cfg.lr * lr_multiplier(cfg, 100, total))
    assert rates["BatchNorm biases (SGD)"][0] == pytest.approx(cfg.lr * cfg.bias_lr_scale)
    whiten = rates["whitening bias (SGD)"]           # its own, shorter schedule, then 0
    assert whiten[0] > whiten[40] > 0 and not whiten[3 * 25:].any()
    assert set(plots_fast.learning_rates(configure("airbench94"), 10)) == {"weights (SGD)",
                                                                            "biases (SGD)"}


def test_learning_rate_figure_shows_every_group_on_a_log_axis():
    fig = plots_fast.plot_learning_rates(configure("fast"), steps_per_epoch=25)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 4
    assert any("Muon" in t.get_text() for t in ax.get_legend().get_texts())


def test_training_curves_have_an_epoch_row_and_a_seconds_row():
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.1 * e, "test_loss": 1.5 / e,
                "test_acc": 0.1 * e, "train_seconds": 10.0 * e} for e in (1, 2, 3)]
    fig = plots_fast.plot_training_curves({"fast": history}, crop_epochs=2)
    axes = fig.axes
    assert len(axes) == 4
    assert axes[0].get_xlabel() == "epoch" and axes[2].get_xlabel() == "seconds of training"
    assert list(axes[2].lines[0].get_xdata()) == [10.0, 20.0, 30.0]
    assert any(line.get_xdata()[0] == 2.5 for line in axes[0].lines)  # where crops end


def test_live_curves_keep_the_history():
    live = plots_fast.LiveTrainingCurves()
    live({"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "train_seconds": 3.0})
    assert len(live.history) == 1


def test_ablation_differences_start_at_zero_with_error_bars():
    summary = [{"variant": "fast", "test_acc_mean": 85.0, "test_acc_std": 0.3, "seeds": 2},
               {"variant": "no TTA", "test_acc_mean": 84.0, "test_acc_std": 0.4, "seeds": 2},
               {"variant": "original", "test_acc_mean": 72.0, "test_acc_std": 0.5, "seeds": 2}]
    fig = plots_fast.plot_ablation_differences(summary, full_label="airbench94")
    ax = fig.axes[0]
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == pytest.approx([-13.0, -1.0])               # differences, from 0
    assert all(p.get_x() == 0 for p in ax.patches)
    assert "airbench94" in ax.get_title() and "85.00" in ax.get_title()
    low, high = ax.get_xlim()
    assert low < -13.0 - np.hypot(0.5, 0.3) and high > 0


def test_ablation_time_panel_shows_each_variant_against_the_full_recipe():
    summary = [{"variant": "fast", "test_acc_mean": 93.6, "test_acc_std": 0.1, "seeds": 3,
                "seconds_median": 400.0},
               {"variant": "no early crops", "test_acc_mean": 94.1, "test_acc_std": 0.1,
                "seeds": 3, "seconds_median": 600.0},
               {"variant": "no Muon", "test_acc_mean": 92.7, "test_acc_std": 0.2, "seeds": 3,
                "seconds_median": 380.0}]
    fig = plots_fast.plot_ablation_differences(summary)
    assert len(fig.axes) == 2
    # rows bottom-up in reverse order: no Muon, then no early crops
    assert [p.get_width() for p in fig.axes[1].patches] == pytest.approx([0.95, 1.5])
    assert [p.get_width() for p in fig.axes[0].patches] == pytest.approx([-0.9, 0.5])
    assert fig.axes[1].get_xlim()[1] >= 1.5


def test_ablation_without_comparable_seconds_has_no_time_panel():
    summary = [{"variant": "fast", "test_acc_mean": 93.6, "test_acc_std": 0.1, "seeds": 3,
                "seconds_median": 400.0},
               {"variant": "no Muon", "test_acc_mean": 92.7, "test_acc_std": 0.2, "seeds": 3,
                "seconds_median": 380.0}]
    assert len(plots_fast.plot_ablation_differences(summary).axes) == 2
    assert len(plots_fast.plot_ablation_differences(summary, timed=False).axes) == 1
