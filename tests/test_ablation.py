"""The ablation benchmark: each variant removes exactly its trick, rows and summary are right,
and the command writes its record (quick mode; never its timings)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cifar_lib.bench import ablation
from cifar_lib.cli import main
from cifar_lib.data import load_cifar10
from cifar_lib.models import AirbenchNet, Whitening, build_model
from cifar_lib.recipes import configure
from cifar_lib.train import fit


def _differences(a, b) -> dict:
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


@pytest.mark.parametrize("name, field, value", [
    ("constant lr", "schedule", "constant"), ("no label smoothing", "label_smoothing", 0.0),
    ("no lookahead", "lookahead", False), ("random flips", "flip", "random"),
    ("no translation", "translate", 0), ("no TTA", "tta_level", 0)])
def test_each_variant_removes_exactly_its_trick(name, field, value):
    full = ablation.variant_config("fast", epochs=3, widths=(8, 16, 16), seed=5)
    variant = ablation.variant_config(name, epochs=3, widths=(8, 16, 16), seed=5)
    assert _differences(full, variant) == {field: (getattr(full, field), value)}
    assert full.epochs == 3 and full.seed == 5 and full.model_kwargs["widths"] == (8, 16, 16)


def test_no_whitening_keeps_the_widths_and_swaps_the_first_layer():
    cfg = ablation.variant_config("no whitening", widths=(8, 16, 16))
    assert cfg.model_kwargs == {"widths": (8, 16, 16), "whiten": False}
    net = build_model(cfg.model, **cfg.model_kwargs)
    assert net.whitening is None and type(net[0]) is nn.Conv2d and net[0].weight.requires_grad
    assert isinstance(build_model("airbench").whitening, Whitening)
    # Same shapes either way: only the first layer's kind changes.
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == AirbenchNet(widths=(8, 16, 16))(x).shape == (2, 10)


def test_original_variant_is_the_original_recipe_at_the_budget():
    cfg = ablation.variant_config("original", epochs=4, seed=1)
    assert _differences(configure("original"), cfg) == {"epochs": (2, 4), "seed": (0, 1),
                                                         "eval_every": (1, 0)}


def test_unknown_variant_is_refused_with_the_valid_names(synthetic_root):
    with pytest.raises(ValueError, match="no whitening"):
        ablation.variant_config("no dropout")
    train, test = load_cifar10(synthetic_root)
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablation.run(train, test, variants=["fast", "nope"], seeds=[0])


def test_run_trains_each_variant_and_no_tta_reuses_the_full_run(synthetic_root, one_thread):
    train, test = load_cifar10(synthetic_root)
    budget = dict(epochs=1, widths=(8, 8, 8), batch_size=50)
    rows = ablation.run(train, test, variants=["fast", "no TTA", "no whitening"], seeds=[0, 1],
                        progress=False, **budget)
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("fast", 0), ("no TTA", 0), ("no whitening", 0), ("fast", 1), ("no TTA", 1),
        ("no whitening", 1)]
    fast0, no_tta0 = rows[0], rows[1]
    assert no_tta0["seconds"] == fast0["seconds"]  # the same training, not a second one
    # ... and its accuracy is that run's accuracy without TTA (fit reports both).
    m = fit(ablation.variant_config("fast", seed=0, **budget), train, test, progress=False).metrics
    assert fast0["test_acc"] == pytest.approx(100 * m["test_acc_tta"])
    assert no_tta0["test_acc"] == pytest.approx(100 * m["test_acc"])
    assert all(0 <= r["test_acc"] <= 100 and r["epochs"] == 1 for r in rows)


def test_summarize_means_spread_and_difference_to_fast():
    rows = [{"variant": v, "removed": v, "seed": s, "test_acc": acc, "seconds": sec}
            for v, s, acc, sec in [("fast", 0, 90.0, 10), ("fast", 1, 92.0, 12),
                                   ("no lookahead", 0, 89.0, 9), ("no lookahead", 1, 90.0, 11)]]
    fast, no_la = ablation.summarize(rows)
    assert fast["variant"] == "fast" and fast["test_acc_mean"] == 91.0 and fast["vs_fast"] == 0
    assert fast["test_acc_std"] == pytest.approx(2 ** 0.5) and fast["test_acc_min"] == 90.0
    assert no_la["vs_fast"] == pytest.approx(-1.5) and no_la["seconds_mean"] == 10
    assert ablation.summarize(rows[2:])[0]["vs_fast"] is None


def test_quick_command_writes_a_record_with_rows_and_summary(cifar_folder, tmp_path,
                                                             one_thread):
    root = cifar_folder(tmp_path / "data", n_per_batch=220)  # 1,100 ≥ the quick 1,024 images
    out = tmp_path / "ablation.json"
    argv = ["bench", "ablation", "--quick", "--seeds", "0", "--device", "cpu", "--data-root",
            str(root), "--variants", "fast", "no TTA", "original", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "ablation" and record["quick"] is True
    assert [r["variant"] for r in record["rows"]] == ["fast", "no TTA", "original"]
    assert [r["variant"] for r in record["summary"]] == ["fast", "no TTA", "original"]
    assert record["budget"]["epochs"] == 1 and record["machine"]["cpu_flags"]


def test_committed_record_covers_every_variant_over_several_seeds():
    record = ablation.read_record()
    assert record["benchmark"] == "ablation" and not record["quick"]
    assert [r["variant"] for r in record["summary"]] == list(ablation.VARIANTS)
    assert all(r["seeds"] >= 2 for r in record["summary"])
    assert record["machine"]["cpu"] and "native_bf16" in record["machine"]["cpu_flags"]
    # The summary is the rows' summary (nobody edited one without the other).
    assert record["summary"] == json.loads(json.dumps(ablation.summarize(record["rows"])))


def test_missing_record_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="bench ablation"):
        ablation.read_record(tmp_path / "none.json")
