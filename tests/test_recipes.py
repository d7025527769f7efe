"""The expected accuracies the lesson quotes beside its time estimates are the measured ones:
each matches the record it names, over the number of seeds it says, for the recipe as it is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_lib.config import TrainConfig
from cifar_lib.recipes import EXPECTED_ACCURACY, RECIPES, configure, get_recipe

ROOT = Path(__file__).resolve().parents[1]


def _measured(recipe: str, record: dict) -> list[float]:
    """The recipe's test accuracies (%) in ``record``, one per seed."""
    if record["benchmark"] == "ablation":
        return [r["test_acc"] for r in record["rows"] if r["variant"] == "fast"]
    if recipe == "fast_small":
        return [100 * record["fast_small_history"][-1]["test_acc"]]
    if recipe == "original":
        return [100 * record["seed_recipe_history"][-1]["test_acc"]]
    assert record["recipe"] == recipe
    return record["test_acc"]


@pytest.mark.parametrize("recipe", sorted(EXPECTED_ACCURACY))
def test_expected_accuracy_is_the_recorded_mean(recipe):
    accuracy, seeds, source = EXPECTED_ACCURACY[recipe]
    record = json.loads((ROOT / source).read_text())
    measured = _measured(recipe, record)
    assert len(measured) == seeds
    assert accuracy == pytest.approx(sum(measured) / len(measured), abs=0.005)
    assert record["quick"] is False  # a smoke test is not a measurement
    assert recipe in RECIPES
    if "recipe_settings" in record:  # records since the recipes' settings were written down
        now = json.loads(json.dumps(configure(recipe).to_dict()))
        recorded = record["recipe_settings"][recipe]
        # A field added since the record was written ran at its default, which is what the
        # field's default must mean (the behaviour from before the field existed).
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        recorded = {**{k: defaults[k] for k in now.keys() - recorded.keys()}, **recorded}
        assert recorded == now, "the recipe changed since"


def test_fast_short_is_the_budget_the_ablation_measured():
    record = json.loads((ROOT / EXPECTED_ACCURACY["fast_short"][2]).read_text())
    short, fast = get_recipe("fast_short"), get_recipe("fast")
    assert record["budget"] == {"epochs": short.epochs, "widths": list(short.model_kwargs["widths"])}
    # everything else is the fast recipe's, as in the ablation's "fast" row
    assert short.replace(epochs=fast.epochs, model_kwargs=fast.model_kwargs) == fast
    assert configure("fast_short", quick=True).epochs == 1
