"""The ablation benchmark: each variant removes exactly its trick, rows and summary are right,
and the command writes its record (quick mode; never its timings)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cifar_lib import ablation
from cifar_lib.cli import main
from cifar_lib.data import load_cifar10
from cifar_lib.models import AirbenchNet, Whitening, build_model
from cifar_lib.recipes import configure, get_recipe
from cifar_lib.train import fit


def _differences(a, b) -> dict:
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


@pytest.mark.parametrize("recipe, name, changes", [
    ("airbench94", "constant lr", {"schedule": "constant"}),
    ("airbench94", "no label smoothing", {"label_smoothing": 0.0}),
    ("airbench94", "no lookahead", {"lookahead": False}),
    ("airbench94", "random flips", {"flip": "random"}),
    ("airbench94", "no translation", {"translate": 0}),
    ("airbench94", "no TTA", {"tta_level": 0}),
    ("fast", "no Muon", {"optimizer": "sgd"}),
    ("fast", "no early crops", {"crop_epochs": 0}),
    ("fast", "no colour jitter", {"brightness": 0.0, "contrast": 0.0}),
    ("fast", "no label smoothing", {"label_smoothing": 0.0}),
    ("fast", "whitening bias trained", {"whiten_bias_epochs": 4}),
    ("fast", "cut-out crops", {"crop_window": None}),
    ("fast", "every image", {"hardest_fraction": 1.0, "hardest_from_epoch": 0}),
    ("fast", "no TTA", {"tta_level": 0})])
def test_each_variant_removes_exactly_its_trick(recipe, name, changes):
    full = ablation.variant_config(recipe, recipe, epochs=4, widths=(8, 16, 16), seed=5)
    variant = ablation.variant_config(recipe, name, epochs=4, widths=(8, 16, 16), seed=5)
    assert _differences(full, variant) == {k: (getattr(full, k), v) for k, v in changes.items()}
    assert full.epochs == 4 and full.seed == 5 and full.model_kwargs["widths"] == (8, 16, 16)


def test_full_budget_by_default_and_every_variant_of_fast_differs():
    full = ablation.variant_config("fast", "fast")
    assert full == configure("fast", eval_every=0)  # the recipe the course trains, whole
    configs = [ablation.variant_config("fast", v) for v in ablation.variants_of("fast")]
    assert len({json.dumps(c.to_dict(), default=str) for c in configs}) == len(configs)


# A recipe that resizes its crops' windows and trains on its hardest images, in one step of
# 1,000 images: the tricks today's fast may or may not use.
CANDIDATE = [("hardest_fraction", (0.8, 0.8, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6)),
             ("hardest_from_epoch", 1), ("batch_size", 1000), ("micro_batch", None),
             ("crop_window", 0.75)]


def test_variants_are_the_tricks_the_recipe_uses_after_its_sets():
    for sets in ([], CANDIDATE):
        recipe = ablation.variant_config("fast", "fast", sets=sets)
        names = ablation.variants_of("fast", sets)
        uses = {"whole batches": recipe.micro_batch is not None,
                "cut-out crops": recipe.crop_window is not None,
                "every image": recipe.hardest_fraction != 1.0}
        assert all((name in names) == used for name, used in uses.items())
        assert set(ablation.VARIANTS["fast"]) - set(names) <= set(uses)  # the rest always
    with_sets = ablation.variant_config("fast", "fast", sets=CANDIDATE)
    assert with_sets == configure("fast", eval_every=0).replace(**dict(CANDIDATE))
    full = ablation.variant_config("fast", "fast", sets=CANDIDATE, epochs=4)
    cut = ablation.variant_config("fast", "cut-out crops", sets=CANDIDATE, epochs=4)
    every = ablation.variant_config("fast", "every image", sets=CANDIDATE, epochs=4)
    # a shorter budget keeps the changed recipe's schedule of hardest images
    assert (full.hardest_fraction, full.hardest_from_epoch) == ((0.8, 0.6, 0.6), 1)
    assert _differences(full, cut) == {"crop_window": (0.75, None)}
    assert _differences(full, every) == {"hardest_fraction": ((0.8, 0.6, 0.6), 1.0),
                                         "hardest_from_epoch": (1, 0)}


def test_no_whitening_keeps_the_widths_and_swaps_the_first_layer():
    cfg = ablation.variant_config("airbench94", "no whitening", widths=(8, 16, 16))
    assert cfg.model_kwargs == {"widths": (8, 16, 16), "whiten": False}
    net = build_model(cfg.model, **cfg.model_kwargs)
    assert net.whitening is None and type(net[0]) is nn.Conv2d and net[0].weight.requires_grad
    assert isinstance(build_model("airbench").whitening, Whitening)
    # Same shapes either way: only the first layer's kind changes.
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == AirbenchNet(widths=(8, 16, 16))(x).shape == (2, 10)


def test_original_variant_is_the_original_recipe_at_the_budget():
    cfg = ablation.variant_config("airbench94", "original", epochs=4, seed=1)
    assert _differences(configure("original"), cfg) == {"epochs": (2, 4), "seed": (0, 1),
                                                         "eval_every": (1, 0)}


def test_unknown_variant_or_recipe_is_refused_with_the_valid_names(synthetic_root):
    with pytest.raises(ValueError, match="no whitening"):
        ablation.variant_config("fast", "no dropout")
    with pytest.raises(ValueError, match="fast, airbench94"):
        ablation.variant_config("original", "original")
    train, test = load_cifar10(synthetic_root)
    with pytest.raises(ValueError, match="unknown ablation variant"):
        ablation.run(train, test, recipe="airbench94", variants=["airbench94", "nope"],
                     seeds=[0])


def test_run_trains_each_variant_and_no_tta_reuses_the_full_run(synthetic_root, one_thread):
    train, test = load_cifar10(synthetic_root)
    budget = dict(epochs=1, widths=(8, 8, 8), batch_size=50)
    rows = ablation.run(train, test, recipe="airbench94",
                        variants=["airbench94", "no TTA", "no whitening"], seeds=[0, 1],
                        progress=False, **budget)
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("airbench94", 0), ("no TTA", 0), ("no whitening", 0), ("airbench94", 1),
        ("no TTA", 1), ("no whitening", 1)]
    full0, no_tta0 = rows[0], rows[1]
    assert no_tta0["seconds"] == full0["seconds"]  # the same training, not a second one
    # ... and its accuracy is that run's accuracy without TTA (fit reports both).
    m = fit(ablation.variant_config("airbench94", "airbench94", seed=0, **budget), train, test,
            progress=False).metrics
    assert full0["test_acc"] == pytest.approx(100 * m["test_acc_tta"])
    assert no_tta0["test_acc"] == pytest.approx(100 * m["test_acc"])
    assert all(0 <= r["test_acc"] <= 100 and r["epochs"] == 1 for r in rows)


def test_summarize_means_spread_and_difference_to_the_full_recipe():
    rows = [{"variant": v, "removed": v, "seed": s, "test_acc": acc, "seconds": sec}
            for v, s, acc, sec in [("fast", 0, 90.0, 10), ("fast", 1, 92.0, 12),
                                   ("no lookahead", 0, 89.0, 9), ("no lookahead", 1, 90.0, 11),
                                   ("no lookahead", 2, 89.5, 30)]]  # one run slowed down
    fast, no_la = ablation.summarize(rows)
    assert fast["variant"] == "fast" and fast["test_acc_mean"] == 91.0 and fast["vs_base"] == 0
    assert fast["test_acc_std"] == pytest.approx(2 ** 0.5) and fast["test_acc_min"] == 90.0
    assert no_la["vs_base"] == pytest.approx(-1.5) and no_la["seconds_median"] == 11
    assert ablation.summarize(rows[2:], base="fast")[0]["vs_base"] is None


def test_quick_command_writes_a_record_with_rows_and_summary(cifar_folder, tmp_path,
                                                             one_thread):
    root = cifar_folder(tmp_path / "data", n_per_batch=220)  # 1,100 ≥ the quick 1,024 images
    out = tmp_path / "ablation.json"
    argv = ["bench", "ablation", "--quick", "--seeds", "0", "--device", "cpu", "--data-root",
            str(root), "--variants", "fast", "no TTA", "no early crops", "--out", str(out),
            "--note", "two at a time", "--set", "tta_level=0"]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "ablation" and record["quick"] is True
    assert record["note"] == "two at a time"
    assert record["recipe"] == "fast"
    # the recipe as changed by --set (at its full budget) is the one trained: no TTA
    assert record["recipe_settings"]["fast"]["tta_level"] == 0
    assert record["recipe_settings"]["fast"]["epochs"] == get_recipe("fast").epochs
    assert record["rows"][0]["test_acc"] == record["rows"][0]["test_acc_no_tta"]
    assert [r["variant"] for r in record["rows"]] == ["fast", "no TTA", "no early crops"]
    assert [r["variant"] for r in record["summary"]] == ["fast", "no TTA", "no early crops"]
    assert record["budget"]["epochs"] == 1 and record["machine"]["cpu_flags"]


def test_an_interrupted_command_resumes_without_training_again(cifar_folder, tmp_path,
                                                              one_thread, monkeypatch, capsys):
    root = cifar_folder(tmp_path / "data", n_per_batch=220)
    out = tmp_path / "ablation.json"
    argv = ["bench", "ablation", "--quick", "--seeds", "0", "--device", "cpu", "--data-root",
            str(root), "--variants", "fast", "no TTA", "no early crops", "--out", str(out)]
    trained = []

    def interrupted_fit(cfg, *args, **kwargs):
        if trained:                                 # the second training is "interrupted"
            raise KeyboardInterrupt
        trained.append(cfg)
        return fit(cfg, *args, **kwargs)

    monkeypatch.setattr("cifar_lib.train.fit", interrupted_fit)
    assert main(argv) == 130                                      # Ctrl-C's exit status
    progress = tmp_path / "ablation.progress.json"
    saved = json.loads(progress.read_text())["runs"]
    assert [r["variant"] for r in saved] == ["fast", "no TTA"]   # both from the one training
    assert main(argv) == 1 and "--resume" in capsys.readouterr().err  # not overwritten
    trained.clear()
    monkeypatch.setattr("cifar_lib.train.fit", lambda cfg, *a, **k: trained.append(cfg) or
                        fit(cfg, *a, **k))
    assert main([*argv, "--resume"]) == 0
    assert [c.crop_epochs for c in trained] == [0]   # only "no early crops" was trained
    rows = json.loads(out.read_text())["rows"]
    assert rows[:2] == saved and not progress.exists()


def test_shipped_fast_record_covers_every_variant_at_the_full_budget():
    record = ablation.read_record("fast")
    assert record["benchmark"] == "ablation" and not record["quick"]
    assert [r["variant"] for r in record["summary"]] == ablation.variants_of("fast")
    if "recipe_settings" in record:  # records since the field: of today's recipe, exactly
        assert record["recipe_settings"] == {
            "fast": json.loads(json.dumps(configure("fast").to_dict()))}
    assert all(r["seeds"] >= 3 for r in record["summary"])
    assert {r["epochs"] for r in record["rows"]} == {get_recipe("fast").epochs}
    assert not record["budget"].get("widths")  # the recipe's own network
    assert record["machine"]["cpu"] and "native_bf16" in record["machine"]["cpu_flags"]
    # The summary is the rows' summary (nobody edited one without the other).
    assert record["summary"] == json.loads(json.dumps(ablation.summarize(record["rows"])))


def test_missing_record_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(ablation, "record_path", lambda recipe: tmp_path / "none.json")
    with pytest.raises(FileNotFoundError, match="bench ablation"):
        ablation.read_record("fast")


def test_difference_error_is_the_spread_of_a_difference_between_two_runs():
    # the plot's error bars and the lesson's "within their error bars" both use it
    assert ablation.difference_error({"test_acc_std": 0.3}, {"test_acc_std": 0.4}) == \
        pytest.approx(0.5)
    assert ablation.difference_error({"test_acc_std": 0.0}, {"test_acc_std": 0.0}) == 0.0
