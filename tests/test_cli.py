import json

import pytest

from cifar_lib.checkpoint import load_checkpoint
from cifar_lib.cli import build_parser, main


def test_help_explains_every_train_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.option_strings[-1] in out and action.help


@pytest.mark.parametrize("argv", [["train", "--epochs", "two"], ["fly"], ["evaluate"],
                                  ["train", "--set", "crop_epochs"]])
def test_bad_arguments_exit_non_zero_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err


def test_unknown_model_and_missing_data_are_one_line_errors(synthetic_root, tmp_path, capsys):
    assert main(["train", "--model", "resnet", "--data-root", str(synthetic_root),
                 "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid names: airbench, simple_cnn" in err
    assert main(["train", "--data-root", str(tmp_path / "none"), "--quick"]) == 1
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_train_then_evaluate_a_run_folder(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.json").is_file()
    assert main(["evaluate", "--run-dir", str(run), "--data-root", str(synthetic_root)]) == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())
    assert report["test_acc"] == pytest.approx(saved["test_acc"])
    assert report["test_images"] == 40
    assert report["temperature"] == 1.0 and report["calibration"].startswith("uncalibrated")


def test_set_overrides_any_config_field_and_bad_ones_are_one_line_errors(synthetic_root,
                                                                         tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", "fast", "--quick", "--no-progress", "--device", "cpu",
                 "--precision", "fp32", "--set", "model_kwargs={'widths': (8, 8, 8)}",
                 "--set", "crop_epochs=1", "--set", "crop_size=20", "--set", "flip=random",
                 "--batch-size", "32", "--epochs", "2", "--set", "epochs=1",  # --set: last
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    saved = load_checkpoint(run)["config"]
    assert (saved["crop_epochs"], saved["crop_size"], saved["flip"]) == (1, 20, "random")
    assert list(saved["model_kwargs"]["widths"]) == [8, 8, 8]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    capsys.readouterr()
    assert main(["train", "--quick", "--set", "crop_size=99", "--data-root", str(synthetic_root),
                 "--run-dir", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crop_size must be" in err
    assert main(["train", "--quick", "--set", "colour=1", "--data-root", str(synthetic_root),
                 "--run-dir", str(tmp_path / "bad")]) == 1
    assert "unknown TrainConfig field(s): colour" in capsys.readouterr().err
