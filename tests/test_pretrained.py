"""The models shipped inside the package, ``ship`` that makes them, and how a lesson finds the
run it works with (its own run folder, Google Drive, or the shipped model)."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from cifar_lib import notebook, pretrained
from cifar_lib.checkpoint import (CheckpointError, load_checkpoint, load_run, read_json,
                                  save_checkpoint)
from cifar_lib.cli import main
from cifar_lib.data import CLASSES, load_cifar10
from cifar_lib.inference import loss_and_accuracy
from cifar_lib.models import build_model


@pytest.mark.parametrize("name", ["fast", "original"])
def test_shipped_runs_are_complete_compact_and_say_how_they_were_made(name):
    folder = pretrained.shipped_run(name)
    ckpt = load_checkpoint(folder)
    assert "optimizer" not in ckpt                         # finished, nothing to resume
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert (folder / "checkpoint.pt").stat().st_size < 6_000_000
    provenance = read_json(folder / "provenance.json")
    assert f"--recipe {name}" in provenance["command"] and provenance["seed"] == 0
    assert len(read_json(folder / "history.json")) == read_json(folder / "metrics.json")["epochs"]
    text = pretrained.describe(name)
    assert provenance["command"] in text and f"{read_json(folder / 'metrics.json')['test_acc']:.2%}" in text


@pytest.mark.parametrize("name", ["fast", "original"])
def test_shipped_model_was_trained_by_today_s_recipe_with_its_validation_split(name):
    import json

    from cifar_lib.config import TrainConfig
    from cifar_lib.recipes import RECIPES
    provenance = read_json(pretrained.shipped_run(name) / "provenance.json")
    # a field added since it trained counts at its default, which changes nothing: so the
    # recipe must still have the default there
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    trained_with = {**defaults, **provenance["recipe_config"]}
    expected = json.loads(json.dumps(RECIPES[name].to_dict()))
    # the device it ran on is a choice of the machine, not of the recipe
    assert {k: v for k, v in trained_with.items() if k != "device"} == \
        {k: v for k, v in expected.items() if k != "device"}
    assert trained_with["val_fraction"] > 0       # its calibration images never trained it
    lm = pretrained.load_pretrained(name)
    assert "validation split" in lm.calibration.fitted_on


def test_unknown_shipped_run_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match="available: fast, original"):
        pretrained.shipped_run("resnet")


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["fast", "original"])
def test_shipped_model_scores_what_its_metrics_say(cifar10, name):
    _, test = cifar10
    lm = load_run(pretrained.shipped_run(name))
    metrics = read_json(pretrained.shipped_run(name) / "metrics.json")
    _, acc = loss_and_accuracy(lm.model, test, lm.mean, lm.std)
    assert acc == pytest.approx(metrics["test_acc"], abs=0.0005)   # 0.05 points
    assert metrics["test_acc"] > (0.92 if name == "fast" else 0.60)


def test_ship_stores_fp16_weights_and_measures_them(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    train, test = load_cifar10(synthetic_root)
    folder = pretrained.ship(run, "tiny", command="python -m cifar_lib train --recipe original",
                             train_split=train, test_split=test, machine="test machine",
                             dest=tmp_path / "shipped")
    shipped, original = load_run(folder), load_run(run)
    assert all(v.dtype == torch.float16 for v in load_checkpoint(folder)["state_dict"].values()
               if v.is_floating_point())
    # what metrics.json states is measured on the fp16 weights, in fp32
    _, acc = loss_and_accuracy(shipped.model, test, shipped.mean, shipped.std)
    assert read_json(folder / "metrics.json")["test_acc"] == acc
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(shipped.model(x), original.model(x), atol=2e-2, rtol=2e-2)


def test_ship_reads_the_code_version_first_and_refuses_before_writing(synthetic_root, tmp_path,
                                                                     monkeypatch):
    run, dest = tmp_path / "run", tmp_path / "shipped"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    train, test = load_cifar10(synthetic_root)
    # The shipped folder is tracked in git: a version read after ship's own writes says "dirty".
    written = []
    monkeypatch.setattr(pretrained, "code_version",
                        lambda: written.append(sorted(dest.rglob("*"))) or {"commit": None})
    ship = dict(command="python -m cifar_lib train --recipe original", train_split=train,
                test_split=test, machine="test machine", dest=dest)
    folder = pretrained.ship(run, "tiny", **ship)
    assert written == [[]]
    before = (folder / "checkpoint.pt").read_bytes()
    # a run with no validation split cannot be calibrated: refused, the shipped model untouched
    ckpt = load_checkpoint(run)
    ckpt["config"]["val_fraction"] = 0
    (tmp_path / "all").mkdir()
    torch.save(ckpt, tmp_path / "all" / "checkpoint.pt")
    with pytest.raises(ValueError, match="val_fraction=0"):
        pretrained.ship(tmp_path / "all", "tiny", **ship)
    assert (folder / "checkpoint.pt").read_bytes() == before
    assert (folder / "calibration.json").is_file()


def test_find_run_prefers_the_run_folder_then_falls_back_as_asked(synthetic_root, tmp_path,
                                                                   capsys):
    empty = tmp_path / "runs" / "fast"
    assert notebook.find_run(empty) == pretrained.shipped_run("fast")
    out = capsys.readouterr().out
    assert f"no checkpoint in {empty}" in out and "ships with cifar_lib" in out
    with pytest.raises(CheckpointError, match="train one first"):
        notebook.find_run(empty, "error")
    with pytest.raises(ValueError, match="if_missing"):
        notebook.find_run(empty, "download")
    trained = notebook.find_run(empty, "train", recipe="original", data_root=synthetic_root,
                                quick=True, device="cpu")
    assert trained == empty and (empty / "checkpoint.pt").is_file()
    capsys.readouterr()
    assert notebook.find_run(empty, quick=True) == empty   # now the run folder itself is used
    assert "note" not in capsys.readouterr().out
    # a full lesson over a quick run's folder uses it, and says what it is
    assert notebook.find_run(empty) == empty
    assert "holds a quick run (tested on 500 images, trained on 2,048)" in capsys.readouterr().out
    notebook.find_run(pretrained.shipped_run("fast"))
    assert "note" not in capsys.readouterr().out    # a full run says nothing
    full = tmp_path / "race64"                        # nor one whose recipe takes a subset
    save_checkpoint(full / "checkpoint.pt", build_model("simple_cnn"), model_name="simple_cnn",
                    model_kwargs={}, classes=CLASSES, mean=(0.5,) * 3, std=(0.5,) * 3,
                    config={"train_subset": 20_000, "test_subset": None})
    assert notebook.find_run(full) == full and "note" not in capsys.readouterr().out


def test_drive_is_used_only_on_colab_and_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(notebook, "on_colab", lambda: False)
    assert notebook.keep_runs_on_drive("runs/fast", keep=False) == "runs/fast"
    assert notebook.keep_runs_on_drive("runs/fast") == "runs/fast"
    assert "for Google Colab" in capsys.readouterr().out
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(notebook, "on_colab", lambda: True)
    monkeypatch.setattr(notebook, "DRIVE_MOUNTPOINT", str(tmp_path / "drive"))
    assert notebook.keep_runs_on_drive("runs/fast", keep=False) == "runs/fast" and not mounted
    path = notebook.keep_runs_on_drive("runs/fast")
    assert mounted == [str(tmp_path / "drive")]
    assert path == str(tmp_path / "drive" / "MyDrive" / "cifar10-course" / "runs" / "fast")
