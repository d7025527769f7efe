"""The expected accuracies the lesson quotes beside its time estimates are the measured ones:
each matches the record it names, over the number of seeds it says, for the recipe as it is."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_lib.config import ConfigError, TrainConfig
from cifar_lib.recipes import EXPECTED_ACCURACY, RECIPES, configure, get_recipe

ROOT = Path(__file__).resolve().parents[1]
# Fields added after a record was written, with what the record's runs did without them.
BEFORE_THE_FIELD = {"val_fraction": 0.0}  # records before the validation split: all 50,000


def _measured(recipe: str, record: dict) -> list[float]:
    """The recipe's test accuracies (%) in ``record``, one per seed."""
    if record["benchmark"] == "ablation":
        return [r["test_acc"] for r in record["rows"] if r["variant"] == "airbench94"]
    if recipe == "tiny":
        return [100 * record["fast_small_history"][-1]["test_acc"]]
    if recipe == "original":
        return [100 * record["seed_recipe_history"][-1]["test_acc"]]
    side = record if record["recipe"] == recipe else record["anchor"]
    assert side["recipe"] == recipe
    return side["test_acc"]


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
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        missing = now.keys() - recorded.keys()
        recorded = {**{k: BEFORE_THE_FIELD.get(k, defaults[k]) for k in missing}, **recorded}
        # the same recipe, except for the fields added since (which the docs name)
        assert {k: v for k, v in recorded.items() if k not in BEFORE_THE_FIELD} == \
            {k: v for k, v in now.items() if k not in BEFORE_THE_FIELD}, f"{name} changed since"


def test_fast_is_the_fastest_recipe_measured_to_reach_94_percent():
    assert EXPECTED_ACCURACY["fast"][0] >= 94.0 and EXPECTED_ACCURACY["fast"][1] >= 5
    assert get_recipe("airbench94") != get_recipe("fast")  # the anchor stays what it was


def test_short_is_the_budget_the_airbench94_ablation_measured():
    record = json.loads((ROOT / EXPECTED_ACCURACY["short"][2]).read_text())
    short, base = get_recipe("short"), get_recipe("airbench94")
    assert record["budget"] == {"epochs": short.epochs, "widths": list(short.model_kwargs["widths"])}
    # everything else is airbench94's, as in the ablation's first row
    assert short.replace(epochs=base.epochs, model_kwargs=base.model_kwargs) == base
    assert configure("short", quick=True).epochs == 1


@pytest.mark.parametrize("old, new", [("seed", "original"), ("fast_short", "short"),
                                      ("fast_small", "tiny")])
def test_a_former_name_is_refused_naming_the_current_one(old, new):
    with pytest.raises(ConfigError, match=f"recipe '{old}' is now called '{new}'"):
        get_recipe(old)
    with pytest.raises(ConfigError, match=f"--recipe {new}"):
        configure(old)


@pytest.mark.parametrize("old, new", [("fast_muon", "fast"), ("fast_muon_crop", "fast"),
                                      ("fast_micro", "fast"), ("muon_small", "race64")])
def test_a_retired_recipe_is_refused_without_calling_its_successor_the_same(old, new):
    with pytest.raises(ConfigError, match=f"recipe '{old}' no longer exists; '{new}' serves its "
                                          f"purpose with other settings: use --recipe {new}"):
        configure(old)


def test_fast_is_one_flat_config_and_every_recipe_holds_out_the_same_validation_split():
    source = (ROOT / "cifar_lib" / "recipes.py").read_text()
    assert '"fast": TrainConfig(' in source  # written out, not a chain of .replace calls
    assert {cfg.val_fraction for cfg in RECIPES.values()} == {0.1}
    assert list(RECIPES)[:3] == ["original", "airbench94", "fast"]


def test_the_docs_and_lessons_use_only_current_recipe_names():
    from cifar_lib.recipes import RENAMED, REPLACED
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md",
            *sorted((ROOT / "notebooks").glob("*.py"))]  # not HISTORY.md: it is the history
    for path in docs:
        text = path.read_text()
        for old in [*RENAMED, *REPLACED]:
            if old != "seed":  # "seed" is also the random seed
                assert f"`{old}`" not in text and f'"{old}"' not in text, (path.name, old)
    # the retired name of the original recipe, where "seed" alone cannot be searched for
    for path in [*docs, ROOT / "hubconf.py", *sorted((ROOT / "cifar_lib").rglob("*.py"))]:
        assert "seed notebook" not in path.read_text().lower(), path.name


def test_the_command_line_and_the_readme_name_every_recipe():
    import re
    from cifar_lib.cli import build_parser
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    recipe_help = next(a.help for a in train._actions if a.dest == "recipe")
    readme = (ROOT / "README.md").read_text()
    for name in RECIPES:
        assert f"'{name}'" in recipe_help, name
        assert re.search(rf"`{name}` \(", readme), name   # "`name` (what it is for)"
