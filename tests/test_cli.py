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
    err = capsys.readouterr().err  # the fix, as the command line spells it
    assert "CIFAR-10 not found" in err and "--data-root" in err and "--download" in err


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
    # train ends calibrated, on the training images it held out
    cal = json.loads((run / "calibration.json").read_text())
    assert report["temperature"] == pytest.approx(cal["temperature"]) != 1.0
    assert "fitted on the validation split" in report["calibration"]
    assert (run / "ood.json").is_file()  # and with its "none of these" detector
    (run / "ood.json").unlink()  # calibrate fits the detector again too
    assert main(["calibrate", "--run-dir", str(run), "--data-root", str(synthetic_root),
                 "--no-progress"]) == 0
    assert (run / "ood.json").is_file() and "none of these" in capsys.readouterr().out


def test_train_into_a_folder_holding_a_run_stops_unless_told_to_resume_or_overwrite(
        synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
            "--data-root", str(synthetic_root), "--run-dir", str(run)]
    assert main(args) == 0
    before = (run / "checkpoint.pt").read_bytes(), (run / "calibration.json").read_text()
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err
    assert ((run / "checkpoint.pt").read_bytes(), (run / "calibration.json").read_text()) == before
    assert main(args + ["--overwrite", "--seed", "1"]) == 0  # replaced, calibrated again
    assert (run / "checkpoint.pt").read_bytes() != before[0]
    assert (run / "calibration.json").is_file()


def test_an_interrupt_after_training_says_how_to_calibrate_the_saved_run(
        synthetic_root, tmp_path, capsys, monkeypatch):
    from cifar_lib import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_calibrate", interrupted)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 130
    assert f"calibrate --run-dir {run}" in capsys.readouterr().err
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.json").is_file()


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


def test_version_prints_the_package_version(capsys):
    from cifar_lib import __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"cifar_lib {__version__}"


def test_set_field_none_really_sets_none_where_the_field_takes_it():
    from cifar_lib.cli import train_config
    from cifar_lib.recipes import get_recipe
    assert get_recipe("fast").crop_window == 0.75  # so None below is not the recipe's own
    args = build_parser().parse_args(["train", "--recipe", "fast", "--set", "crop_window=None",
                                      "--set", "test_subset=None", "--quick"])
    cfg = train_config(args)
    assert cfg.crop_window is None
    assert cfg.test_subset is None  # --set wins over --quick's 500 test images
    assert cfg.train_subset == 2048  # the rest of --quick still applies
    # a field left alone keeps the recipe's value
    assert train_config(build_parser().parse_args(["train", "--recipe", "fast"])).crop_window == 0.75


@pytest.mark.parametrize("field", ["epochs", "model", "lr"])
def test_set_field_none_is_refused_where_none_is_not_a_value(field, capsys):
    assert main(["train", "--set", f"{field}=None", "--run-dir", "unused"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--set {field}=None is not allowed" in err


def test_every_command_naming_a_run_takes_run_dir_and_devices_default_to_auto_or_all():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    parsers = dict(commands)
    parsers.update({f"bench {n}": p for n, p in
                    commands["bench"]._subparsers._group_actions[0].choices.items()})
    for name in ("evaluate", "predict", "calibrate", "ship", "export", "bench inference"):
        assert "--run-dir" in parsers[name]._option_string_actions, name
    devices = {name: p._option_string_actions["--device"].default for name, p in parsers.items()
               if "--device" in p._option_string_actions}
    assert {"train", "evaluate", "predict", "calibrate", "bench train"} <= set(devices)
    # 'auto' is one device, the best present; 'all' (every device, side by side) is the
    # default only of the benchmark that compares devices
    assert {n: d for n, d in devices.items() if d != "auto"} == {"bench inference": "all"}


def test_calibrate_names_its_run_with_run_dir_like_every_command(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert main(["calibrate", "--run-dir", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err  # the run it was asked for was looked up
    for argv in (["calibrate"], ["calibrate", str(missing)]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "--run-dir" in capsys.readouterr().err


def _raising(error):
    def command(args):
        raise error
    return command


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    from cifar_lib import cli
    from cifar_lib.data import DataError
    add, _ = cli.COMMANDS["evaluate"]
    monkeypatch.setitem(cli.COMMANDS, "evaluate", (add, _raising(DataError("set CIFAR10_ROOT"))))
    assert main(["evaluate", "--run-dir", "r"]) == 1
    assert capsys.readouterr().err == "error: set CIFAR10_ROOT\n"
    for argv in (["--debug", "evaluate", "--run-dir", "r"], ["evaluate", "--run-dir", "r", "--debug"]):
        with pytest.raises(DataError):  # --debug: the traceback, before or after the command
            main(argv)
    # A plain ValueError inside the library is a bug, not the user's: it is not hidden.
    monkeypatch.setitem(cli.COMMANDS, "evaluate", (add, _raising(ValueError("a bug"))))
    with pytest.raises(ValueError, match="a bug"):
        main(["evaluate", "--run-dir", "r"])


def test_a_bug_prints_a_traceback_from_the_command_line(tmp_path):
    import subprocess
    import sys
    code = ("import sys; from cifar_lib import cli; "
            "cli.COMMANDS['evaluate'] = (cli.COMMANDS['evaluate'][0], "
            "lambda a: int('not a number')); sys.exit(cli.main(['evaluate', '--run-dir', 'r']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "invalid literal for int()" in proc.stderr


def test_run_notebooks_and_sweep_are_commands_with_help(capsys):
    for command, option in (("run-notebooks", "--only"), ("sweep", "--grid")):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert option in out and "papermill" in out and "--parameter" in out
    assert main(["sweep", "--grid", "lr"]) == 1  # before any notebook runs
    assert capsys.readouterr().err == "error: --grid takes NAME=V1,V2,..., got 'lr'\n"


def test_the_old_course_entry_point_names_the_new_commands():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "cifar_lib.course"], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "python -m cifar_lib run-notebooks" in proc.stderr


def test_ctrl_c_while_the_command_line_loads_exits_quietly(monkeypatch, capsys):
    import runpy
    import sys
    import types

    class Loading(types.ModuleType):
        def __getattr__(self, name):  # as if Ctrl-C arrived while cli (and torch) were importing
            raise KeyboardInterrupt
    monkeypatch.setitem(sys.modules, "cifar_lib.cli", Loading("cifar_lib.cli"))
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("cifar_lib", run_name="__main__")
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
