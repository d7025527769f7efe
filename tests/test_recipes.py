"""The expected accuracies the lesson quotes beside its time estimates are the measured ones:
each matches the record it names, over the number of seeds it says, for the recipe as it is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_lib.config import TrainConfig
from cifar_lib.recipes import EXPECTED_ACCURACY, RECIPES, configure, get_recipe

ROOT = Path(__file__).resolve().parents[1]
# ``fast`` was airbench94's recipe until 2026-11-26; records written before say "fast" for it.
FORMER_NAMES = {"airbench94": ("fast", "2026-11-26")}


def _measured(recipe: str, record: dict) -> list[float]:
    """The recipe's test accuracies (%) in ``record``, one per seed."""
    if record["benchmark"] == "ablation":
        return [r["test_acc"] for r in record["rows"] if r["variant"] == "fast"]
    if recipe == "fast_small":
        return [100 * record["fast_small_history"][-1]["test_acc"]]
    if recipe == "original":
        return [100 * record["seed_recipe_history"][-1]["test_acc"]]
    former, until = FORMER_NAMES.get(recipe, (None, ""))
    if not (record["recipe"] == former and record["date"] < until):
        # the record's recipe under its own name, or another name for the very same settings
        assert get_recipe(record["recipe"]) == get_recipe(recipe)
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
    # records since the recipes' settings were written down: the recipe and its anchor
    for name, recorded in record.get("recipe_settings", {}).items():
        now = json.loads(json.dumps(configure(name).to_dict()))
        # A field added since the record was written ran at its default, which is what the
        # field's default must mean (the behaviour from before the field existed).
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        recorded = {**{k: defaults[k] for k in now.keys() - recorded.keys()}, **recorded}
        assert recorded == now, f"recipe {name} changed since"


def test_fast_is_the_fastest_recipe_measured_to_reach_94_percent():
    assert get_recipe("fast") == get_recipe("fast_micro")
    assert EXPECTED_ACCURACY["fast"][0] >= 94.0 and EXPECTED_ACCURACY["fast"][1] >= 5
    assert get_recipe("airbench94") != get_recipe("fast")  # the anchor stays what it was


def test_fast_short_is_the_budget_the_ablation_measured():
    record = json.loads((ROOT / EXPECTED_ACCURACY["fast_short"][2]).read_text())
    short, base = get_recipe("fast_short"), get_recipe("airbench94")
    assert record["budget"] == {"epochs": short.epochs, "widths": list(short.model_kwargs["widths"])}
    # everything else is airbench94's, as in the ablation's "fast" row
    assert short.replace(epochs=base.epochs, model_kwargs=base.model_kwargs) == base
    assert configure("fast_short", quick=True).epochs == 1
