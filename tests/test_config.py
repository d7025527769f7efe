"""Every TrainConfig field is checked once, when the config is built, with one-line errors that
name the field; the command line and the checkpoint/predict paths report user errors in one line.
"""
from __future__ import annotations

import collections
import datetime
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from cifar_lib.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from cifar_lib.cli import build_parser, main
from cifar_lib.config import ConfigError, TrainConfig
from cifar_lib.models import MODELS, UnknownModelError, build_model
from cifar_lib.recipes import QUICK, RECIPES, configure, get_recipe

# ---------------------------------------------------------------------------------- validation

BAD_VALUES = [
    ("epochs", -1), ("epochs", 0), ("epochs", 2.5), ("epochs", True),
    ("batch_size", 0),
    ("micro_batch", 0),
    ("lr", 0), ("lr", -1), ("lr", math.nan), ("lr", math.inf),
    ("momentum", 1.0),
    ("weight_decay", -0.1),
    ("label_smoothing", 1.0),
    ("lr_peak_at", 1.5),
    ("optimizer", "adamw"),
    ("schedule", "cosine"),
    ("flip", "vertical"),
    ("precision", "fp8"),
    ("channels_last", "yes"),
    ("tta_level", 3),
    ("tta_fraction", 0.0), ("tta_fraction", 1.5),
    ("translate", -1),
    ("crop_epochs", -1),
    ("crop_epochs", 1),  # the original recipe's SimpleCNN needs whole 32×32 images
    ("crop_size", 12), ("crop_size", 33),
    ("crop_size", (20, 24)),  # one size per crop epoch: the original recipe has none
    ("crop_window", 0), ("crop_window", 1.25), ("crop_window", (0.75, 1)),
    ("whiten_bias_epochs", -1),
    ("brightness", -0.1), ("brightness", 1.0), ("contrast", -0.1), ("contrast", 1.5),
    ("hardest_fraction", 0), ("hardest_fraction", 1.5), ("hardest_fraction", math.nan),
    ("hardest_from_epoch", -1), ("hardest_from_epoch", 1.5),
    ("muon_lr", 0.0),
    ("muon_momentum", 1.0),
    ("eval_every", -1),
    ("train_subset", 0),
    ("test_subset", -5),
    ("mean", (0.5, 0.5)),
    ("std", (0.5, 0.0, 0.5)),
]


@pytest.mark.parametrize("field, value", BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_bad_field_value_raises_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        configure("original", **{field: value})
    message = str(e.value)
    assert isinstance(e.value, ValueError)
    assert message.startswith(f"{field} must be "), message  # the field, then its rule ...
    assert message.endswith(f"got {value!r}"), message       # ... and what was passed
    assert "\n" not in message


@pytest.mark.parametrize("value", [2.5, "3", 0, True])
def test_a_bad_epochs_is_named_for_a_recipe_whose_schedules_follow_it(value):
    # fast's window and hardest-image schedules are rescaled to the epochs: not with a bad one
    with pytest.raises(ConfigError) as e:
        configure("fast", epochs=value)
    assert str(e.value) == f"epochs must be a whole number ≥ 1, got {value!r}"


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", -1), ("flip", "vertical")])
def test_dataclass_constructor_validates_too(field, value):
    # not only configure(): building a TrainConfig directly checks the same rules
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(UnknownModelError) as e:
        configure("original", model="resnet")
    assert "'resnet'" in str(e.value)
    assert all(name in str(e.value) for name in MODELS)


def test_model_kwargs_that_do_not_fit_the_model_are_a_config_error():
    with pytest.raises(ConfigError, match=r"model_kwargs .*widths.* do not fit model 'simple_cnn'"):
        configure("original", model_kwargs={"widths": (1, 2, 3)})


# Values equal to a valid choice but of another type (True == 1, 2.0 == 2, 1 == True): a
# membership test with == lets them through.
LOOKALIKES = [("tta_level", True), ("tta_level", 2.0), ("channels_last", 1),
              ("channels_last", 0.0)]


@pytest.mark.parametrize("field, value", LOOKALIKES, ids=[f"{f}={v!r}" for f, v in LOOKALIKES])
def test_lookalike_of_another_type_is_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        configure("original", **{field: value})


def test_model_kwargs_the_model_cannot_be_built_with_are_a_config_error():
    # the right keyword, a value the constructor cannot use: three widths are needed
    with pytest.raises(ConfigError, match="model_kwargs"):
        configure("fast", model_kwargs={"widths": (16, 32)})


@pytest.mark.parametrize("field, value", [("epochs", 1), ("translate", 0),
                                          ("label_smoothing", 0), ("lr_peak_at", 1.0),
                                          ("momentum", 0.0), ("train_subset", 1),
                                          ("brightness", 0.0), ("contrast", 0.99),
                                          ("hardest_fraction", 1.0),
                                          ("hardest_fraction", 0.01)])
def test_valid_edge_values_pass(field, value):
    assert getattr(configure("original", **{field: value}), field) == value


# ----------------------------------------------------------------------------------- configure

def test_none_override_keeps_the_recipes_value():
    recipe = get_recipe("fast")
    cfg = configure("fast", epochs=None, lr=None, model=None, precision=None)
    assert (cfg.epochs, cfg.lr, cfg.model, cfg.precision) == (
        recipe.epochs, recipe.lr, recipe.model, recipe.precision)


def test_model_override_without_kwargs_resets_them_and_builds():
    assert get_recipe("fast").model_kwargs  # the recipe's widths belong to airbench
    assert get_recipe("fast").crop_epochs   # and so do its crops
    cfg = configure("fast", model="simple_cnn")
    assert cfg.model == "simple_cnn" and cfg.model_kwargs == {} and cfg.crop_epochs == 0
    assert build_model(cfg.model, **cfg.model_kwargs)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    # with other epochs too, the hardest images still follow the recipe's schedule
    for kw in (dict(epochs=5), dict(quick=True)):
        other, same = configure("fast", model="simple_cnn", **kw), configure("fast", **kw)
        assert other.model == "simple_cnn" and other.crop_epochs == 0
        assert (other.hardest_fraction, other.hardest_from_epoch) == \
            (same.hardest_fraction, same.hardest_from_epoch)


@pytest.mark.parametrize("epochs, crop_epochs", [(10, 6), (5, 3), (1, 0), (3, 1), (20, 12)])
def test_fewer_epochs_keep_the_recipes_share_of_crop_epochs_rounded_down(epochs, crop_epochs):
    assert (get_recipe("fast").epochs, get_recipe("fast").crop_epochs) == (10, 6)
    assert configure("fast", epochs=epochs).crop_epochs == crop_epochs
    assert configure("fast", epochs=epochs, crop_epochs=0).crop_epochs == 0  # asked for: kept


SCHEDULE = (0.8, 0.8) + (0.6,) * 7  # one fraction per epoch from the second of ten on


@pytest.mark.parametrize("epochs, fractions, start", [
    (10, SCHEDULE, 1),
    (4, (0.8, 0.6, 0.6), 1),            # the recipe's epochs 0, 2, 5 and 7
    (2, (0.6,), 1),                     # its epochs 0 and 5
    (1, 1.0, 0),                        # --quick: its first epoch, on every image
    (20, (0.8,) * 4 + (0.6,) * 14, 2)])
def test_other_epochs_follow_the_recipes_schedule_of_hardest_images(monkeypatch, epochs,
                                                                      fractions, start):
    recipe = get_recipe("fast").replace(hardest_fraction=SCHEDULE, hardest_from_epoch=1)
    monkeypatch.setitem(RECIPES, "hardest", recipe)
    cfg = configure("hardest", epochs=epochs)
    assert (cfg.hardest_fraction, cfg.hardest_from_epoch) == (fractions, start)
    # each epoch takes the fraction of the recipe's epoch at the same point of the run
    assert [cfg.hardest_fraction_at(e) for e in range(epochs)] == \
        [recipe.hardest_fraction_at(e * 10 // epochs) for e in range(epochs)]
    asked = configure("hardest", epochs=epochs, hardest_fraction=0.5, hardest_from_epoch=0)
    assert (asked.hardest_fraction, asked.hardest_from_epoch) == (0.5, 0)  # asked for: kept


def test_one_hardest_fraction_keeps_its_share_of_the_run_before_it(monkeypatch):
    monkeypatch.setitem(RECIPES, "half", get_recipe("fast").replace(
        hardest_fraction=0.5, hardest_from_epoch=4))
    assert configure("half", epochs=5).hardest_from_epoch == 2
    assert configure("half", epochs=3).hardest_from_epoch == 2  # 4 × 3/10 rounded up
    assert configure("half", epochs=3).hardest_fraction == 0.5


def test_a_schedule_of_crop_sizes_keeps_its_first_sizes(monkeypatch):
    monkeypatch.setitem(RECIPES, "growing", get_recipe("fast").replace(
        epochs=4, crop_epochs=3, crop_size=(16, 20, 28), hardest_fraction=1.0))
    assert configure("growing", epochs=3).crop_size == (16, 20)
    cfg = configure("growing", quick=True)  # one epoch: no crops, whole images
    assert (cfg.crop_epochs, cfg.crop_size_at(0)) == (0, None)


@pytest.mark.parametrize("recipe", ["fast", "original"])
def test_quick_is_a_one_epoch_smoke_test(recipe):
    cfg = configure(recipe, quick=True)
    assert (cfg.epochs, cfg.train_subset, cfg.test_subset) == (1, 2048, 500)
    assert cfg.batch_size == min(get_recipe(recipe).batch_size, QUICK["max_batch_size"]) <= 256


def test_explicit_overrides_win_over_quick():
    cfg = configure("fast", quick=True, epochs=3, batch_size=512, train_subset=100,
                    test_subset=50)
    assert (cfg.epochs, cfg.batch_size, cfg.train_subset, cfg.test_subset) == (3, 512, 100, 50)


def test_seed_names_only_the_random_seed():
    with pytest.raises(ConfigError, match="now called 'original'"):
        get_recipe("seed")
    assert configure("original", seed=3).seed == 3


# ------------------------------------------------------------------------- command-line errors

@pytest.fixture
def cli(capsys):
    """``main``, with the CLI's imports done beforehand: what an import prints once per process
    is checked by ``test_a_fresh_process_prints_only_the_error_line``, not by every test."""
    build_parser()
    capsys.readouterr()
    return main


@pytest.mark.parametrize("option, value, field", [("--epochs", "-1", "epochs"),
                                                  ("--batch-size", "0", "batch_size")])
def test_cli_bad_value_is_one_line_before_any_training(cli, option, value, field, synthetic_root,
                                                       tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(["train", option, value, "--device", "cpu", "--no-progress",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert field in err
    assert "Traceback" not in err and "ZeroDivision" not in err
    assert not run.exists()  # validated before a run folder or checkpoint was written


def test_a_fresh_process_prints_only_the_error_line(tmp_path):
    # A new interpreter, as a user runs it: nothing imported on the way (a warning from an
    # import, say) may add to the one error line.
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "cifar_lib", "train", "--epochs", "-1",
                           "--device", "cpu", "--data-root", str(tmp_path / "no_data"),
                           "--run-dir", str(run)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["error: epochs must be a whole number ≥ 1, got -1"], \
        proc.stderr
    assert not run.exists()


# --------------------------------------------------------------------- checkpoint read errors

class _Record(collections.OrderedDict):
    """An OrderedDict subclass: a class torch's safe loader must refuse."""


_CALLS = []


def _side_effect(*args):
    _CALLS.append(args)
    return args


class _RunsCode:
    """Unpickling this (unsafely) would call ``_side_effect``: proof that no code ran."""

    def __reduce__(self):
        return (_side_effect, ("ran",))


def _payload(extra):
    return {"format": 1, "model": "simple_cnn", "model_kwargs": {}, "state_dict": {},
            "extra": extra}


def _random_bytes(path):
    path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0)).numpy().tobytes())


def _zip_not_torch(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes/readme.txt", "a zip file, but not a torch checkpoint")


def _saved(obj):
    def write(path):
        torch.save(_payload(obj), path)
    return write


CORRUPT = {
    "random_bytes": _random_bytes,
    "zip_not_torch": _zip_not_torch,
    "ordereddict_subclass": _saved(_Record(a=1)),
    "datetime": _saved(datetime.datetime(2024, 1, 2, 3, 4, 5)),
    "reduce_calls_a_function": _saved(_RunsCode()),
}


@pytest.fixture(params=sorted(CORRUPT))
def corrupt_run(request, tmp_path):
    run = tmp_path / "corrupt"
    run.mkdir()
    CORRUPT[request.param](run / CHECKPOINT)
    return run


def test_corrupt_checkpoint_is_a_checkpoint_error_without_unsafe_advice(corrupt_run):
    _CALLS.clear()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(corrupt_run)
    message = str(e.value)
    assert "not a readable checkpoint" in message
    assert "weights_only" not in message and "safe_globals" not in message
    assert "\n" not in message
    assert _CALLS == []  # nothing in the file was executed


@pytest.fixture(scope="module")
def data_root(cifar_folder, tmp_path_factory):
    return cifar_folder(tmp_path_factory.mktemp("data"))


def test_cli_evaluate_of_a_corrupt_checkpoint_is_one_line(cli, corrupt_run, data_root, capsys):
    assert cli(["evaluate", "--run-dir", str(corrupt_run), "--device", "cpu",
                 "--data-root", str(data_root)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert str(corrupt_run / CHECKPOINT) in err
    assert "weights_only" not in err and "Traceback" not in err


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_cli_evaluate_of_a_missing_run_suggests_that_same_folder(cli, relative, data_root,
                                                                 tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    nope = "tmp/nope" if relative else str(tmp_path / "tmp" / "nope")
    assert cli(["evaluate", "--run-dir", nope, "--device", "cpu",
                 "--data-root", str(data_root)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no checkpoint" in err
    assert f"--run-dir {nope}`" in err, err  # the folder asked for, not its parent


@pytest.fixture(scope="module")
def trained_run(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(data_root), "--run-dir", str(run)]) == 0
    return run


@pytest.mark.parametrize("n", ["0", "-9990"])
def test_cli_evaluate_of_no_test_images_is_one_line(cli, trained_run, data_root, n, capsys):
    capsys.readouterr()
    assert cli(["evaluate", "--run-dir", str(trained_run), "--device", "cpu", "--no-progress",
                "--data-root", str(data_root), "--test-subset", n]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # no report of nothing
    assert captured.err == f"error: the number of examples to use must be None (all) or a " \
                           f"whole number ≥ 1, got {int(n)}\n"


def test_cli_predict_of_a_folder_says_it_is_a_folder(cli, trained_run, tmp_path, capsys):
    capsys.readouterr()
    folder = tmp_path / "photos"
    folder.mkdir()
    assert cli(["predict", "--run-dir", str(trained_run), str(folder)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"{folder} is a folder, not an image file" in err


def test_crop_size_is_one_size_or_one_per_crop_epoch():
    fixed = configure("fast", crop_epochs=3, crop_size=24)
    assert [fixed.crop_size_at(e) for e in range(5)] == [24, 24, 24, None, None]
    growing = configure("fast", crop_epochs=3, crop_size=(16, 20, 28))
    assert [growing.crop_size_at(e) for e in range(5)] == [16, 20, 28, None, None]
    assert configure("fast", crop_epochs=2, crop_size=[20, 24]).crop_size_at(1) == 24  # JSON
    for bad in ((16, 20), (16, 20, 28, 32), (16, 20, 40), (16, 20.0, 24)):
        with pytest.raises(ConfigError, match=r"crop_size must be .*one per crop epoch \(3 of"):
            configure("fast", crop_epochs=3, crop_size=bad)


def test_hardest_fraction_is_one_fraction_or_one_per_epoch_from_hardest_from_epoch():
    fixed = configure("fast", epochs=5, hardest_fraction=0.6, hardest_from_epoch=2)
    assert [fixed.hardest_fraction_at(e) for e in range(5)] == [1.0, 1.0, 0.6, 0.6, 0.6]
    shrinking = configure("fast", epochs=5, hardest_fraction=(0.8, 0.6, 0.4),
                          hardest_from_epoch=2)
    assert [shrinking.hardest_fraction_at(e) for e in range(5)] == [1.0, 1.0, 0.8, 0.6, 0.4]
    assert configure("fast", epochs=2, hardest_fraction=[1, 0.5],
                     hardest_from_epoch=0).hardest_fraction_at(1) == 0.5
    for bad in ((0.8, 0.6), (0.8, 0.6, 0.4, 0.2), (0.8, 0.6, 0.0), (0.8, "0.6", 0.4)):
        with pytest.raises(ConfigError, match=r"hardest_fraction must be .*one such number per "
                                              r"epoch from hardest_from_epoch on \(3 of"):
            configure("fast", epochs=5, hardest_fraction=bad, hardest_from_epoch=2)
    # a per-epoch tuple in a run too short for it (--quick trains one epoch) names the field to fix
    with pytest.raises(ConfigError, match=r"hardest_from_epoch must be below epochs \(1\)"):
        configure("fast", quick=True, hardest_fraction=(0.8, 0.6), hardest_from_epoch=3)


def test_a_recipe_changed_by_hand_leaves_the_recipe_as_it_is():
    before, mine = get_recipe("fast"), get_recipe("fast")
    mine.epochs, mine.model_kwargs["widths"] = before.epochs + 1, (8, 8, 8)
    assert get_recipe("fast") == before != mine
