"""The benchmark commands' structure, in their quick modes (never their timings), and the one
record writer and table they share."""
import json
import shlex
import types

import pytest
import torch

from cifar_lib.bench import BENCHMARKS, records
from cifar_lib.bench import race as bench_train
from cifar_lib.bench import time_to_64 as bench_64
from cifar_lib.records import markdown_table
from cifar_lib.speed import loaders as bench_data
from cifar_lib.cli import main

RECORD_KEYS = {"benchmark", "date", "command", "machine", "settings", "rows"}




def test_time_to_finds_the_first_epoch_reaching_the_target():
    history = [{"train_seconds": 10, "test_acc": 0.5}, {"train_seconds": 20, "test_acc": 0.65},
               {"train_seconds": 30, "test_acc": 0.7}]
    assert bench_64.time_to(history) == 20
    assert bench_64.time_to(history[:1]) is None


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_is_a_subcommand_with_help(name, capsys):
    module = BENCHMARKS[name]
    assert callable(module.add_arguments) and callable(module.main)
    with pytest.raises(SystemExit) as e:
        main(["bench", name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m cifar_lib bench {name}")
    assert "--out" in out or name == "report"  # the report writes the docs, not a record


def test_a_smoke_test_without_out_leaves_the_committed_record_alone(synthetic_root, tmp_path,
                                                                    monkeypatch, capsys,
                                                                    one_thread):
    monkeypatch.chdir(tmp_path)   # the default record path is relative to the repository
    assert main(["bench", "breakdown", "--quick", "--recipes", "tiny", "--data-root",
                 str(synthetic_root)]) == 0
    assert json.loads((tmp_path / "build/bench/breakdown.json").read_text())["quick"] is True
    assert not (tmp_path / "benchmarks").exists()
    assert "build/bench/breakdown.json" in capsys.readouterr().err
    # a path typed is the path written, the default's included
    default = "benchmarks/results/breakdown.json"
    assert main(["bench", "breakdown", "--quick", "--recipes", "tiny", "--data-root",
                 str(synthetic_root), "--out", default]) == 0
    assert (tmp_path / default).is_file() and "build/bench" not in capsys.readouterr().err
    from cifar_lib.bench.records import settings
    from cifar_lib.cli import build_parser
    assert set(settings(build_parser().parse_args(["bench", "breakdown"]))) == {
        "recipes", "steps", "warmup", "eval_batch", "data_root", "download", "device", "quick",
        "out"}


def test_markdown_table_columns():
    rows = [{"a": 1.23456, "b": None, "c": "x"}, {"a": 2, "b": 0.5, "c": "y"}]
    assert markdown_table(rows) == ("| a | b | c |\n|---|---|---|\n| 1.235 |  | x |\n"
                                    "| 2 | 0.5 | y |")
    assert markdown_table(rows, ["c", "a"]).splitlines()[2] == "| x | 1.235 |"
    table = markdown_table(rows, {"name": "c", "twice a": lambda r: f"{2 * r['a']:.1f}"})
    assert table.splitlines()[0] == "| name | twice a |"
    assert table.splitlines()[3] == "| y | 4.0 |"
    assert markdown_table([]) == ""


def test_environment_names_the_cpu_and_its_flags():
    env = records.environment()
    assert env["cpu"] and env["torch"] == torch.__version__ and env["torch_threads"] >= 1
    assert set(env["cpu_flags"]) == {"native_bf16", "avx512f", "avx2"}
    assert all(isinstance(v, bool) for v in env["cpu_flags"].values())
    assert not hasattr(records, "command_line")  # the command comes from the parsed arguments


def test_cpu_id_tells_generations_apart(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    block = "processor\t: {}\nvendor_id\t: AuthenticAMD\ncpu family\t: {}\nmodel\t\t: {}\n" \
            "model name\t: AMD EPYC\nflags\t\t: fpu avx2\n\n"
    cpuinfo.write_text(block.format(0, 26, 2) + block.format(1, 25, 17))
    assert records.cpu_id(cpuinfo) == {"vendor": "AuthenticAMD", "family": 26, "model": 2}
    assert records.cpu_id(tmp_path / "absent") == {}
    assert set(records.environment()["cpu_id"]) <= {"vendor", "family", "model"}


def test_original_as_ran_reads_a_synchronised_clock(monkeypatch, synthetic_root, one_thread):
    from cifar_lib.data import load_cifar10
    clocks = []
    monkeypatch.setattr(bench_64, "synced_clock",
                        lambda device: clocks.append(torch.device(device)) or float(len(clocks)))
    _, test = load_cifar10(synthetic_root)
    history = bench_64.original_as_ran(test, synthetic_root, "cpu", max_epochs=2, workers=0)
    assert clocks == [torch.device("cpu")] * 2 * len(history)
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert history[0]["train_seconds"] == 1.0  # the two clock readings of the first epoch
    assert all(0 <= h["test_acc"] <= 1 for h in history)


@pytest.mark.real_data
def test_data_pipeline_benchmark_rows_and_record(cifar10, tmp_path, capsys):
    out = tmp_path / "data.json"
    argv = ["bench", "data", "--limit", "1024", "--workers", "0", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert RECORD_KEYS <= set(record) and record["benchmark"] == "data_pipeline"
    assert record["command"] == "python -m cifar_lib " + shlex.join(argv)
    assert record["machine"]["torch"] and record["settings"]["limit"] == 1024
    pipelines = [r["pipeline"] for r in record["rows"]]
    assert pipelines[0].startswith("torchvision DataLoader") and len(pipelines) == 4
    assert pipelines[3] == "load_cifar10 (all 60,000 images)"
    assert [r["images"] for r in record["rows"]] == [1024, 1024, 1024, 60_000]
    assert all(r["images_per_second"] > 0 for r in record["rows"])
    assert record["rows"][0]["speedup_vs_original"] == 1.0
    assert markdown_table(record["rows"]).count("\n") == 5
    assert "| pipeline |" in capsys.readouterr().out


@pytest.mark.real_data
def test_original_pipeline_is_the_seeds_dataloader(cifar10):
    loader = bench_data.original_pipeline(None, batch_size=16, workers=0, limit=40)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -1.0 <= x.min() and x.max() <= 1.0  # ToTensor then Normalize(0.5, 0.5)
    assert len(loader.dataset) == 40


@pytest.mark.real_data
def test_train_benchmark_races_the_recipe_against_the_anchor(cifar10, tmp_path, one_thread):
    out = tmp_path / "train.json"
    argv = ["bench", "train", "--quick", "--seeds", "0", "1", "--anchor-seeds", "0", "--device",
            "cpu", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert RECORD_KEYS <= set(record)
    assert record["benchmark"] == "train" and record["quick"] is True
    assert record["command"] == "python -m cifar_lib " + shlex.join(argv)
    assert record["device"] == "cpu" and record["settings"]["device"] == "cpu"
    assert record["machine_kind"] in ("cpu-bf16", "cpu-fp32")
    assert set(record["machine"]["cpu_flags"]) == {"native_bf16", "avx512f", "avx2"}
    # The recipe: one entry per seed; the anchor: the same lists for its seeds.
    assert record["recipe"] == "fast" and record["seeds"] == [0, 1]
    assert len(record["test_acc"]) == len(record["seconds"]) == 2
    assert all(0 <= a <= 100 for a in record["test_acc"])
    assert record["test_acc_min"] == min(record["test_acc"])
    anchor = record["anchor"]
    assert anchor["recipe"] == "airbench94" and anchor["seeds"] == [0]
    assert len(anchor["test_acc"]) == len(anchor["seconds"]) == 1
    assert record["time_ratio"] == pytest.approx(
        (sum(record["seconds"]) / 2) / anchor["seconds"][0])
    # The anchor's run among the recipe's, so that a slow spell on a shared machine falls on both.
    assert [(r["recipe"], r["seed"]) for r in record["rows"]] == [
        ("fast", 0), ("airbench94", 0), ("fast", 1)]
    assert "time_to_64" not in record  # its own benchmark
    assert record["clock"] == bench_train.CLOCK


@pytest.mark.real_data
def test_train_benchmark_races_a_variant_of_the_recipe(cifar10, tmp_path, one_thread):
    out = tmp_path / "train.json"
    argv = ["bench", "train", "--quick", "--seeds", "0", "--anchor-seeds", "0", "--device", "cpu",
            "--set", "epochs=2", "--set", "label_smoothing=0.1", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    # the raced recipe trains with the changes, the anchor as it is
    assert [(r["recipe"], r["epochs"]) for r in record["rows"]] == [("fast", 2), ("airbench94", 1)]
    assert record["recipe_settings"]["fast"]["label_smoothing"] == 0.1
    # as `train --set` applies them: 2 epochs keep fast's share of crop epochs (6 of 10)
    assert record["recipe_settings"]["fast"]["crop_epochs"] == 1
    assert record["recipe_settings"]["airbench94"]["label_smoothing"] == 0.2
    assert record["settings"]["overrides"] == [["epochs", 2], ["label_smoothing", 0.1]]


def test_train_benchmark_refuses_a_variant_of_its_own_anchor(capsys):
    assert main(["bench", "train", "--quick", "--recipe", "fast", "--anchor", "fast",
                 "--set", "epochs=2"]) != 0
    err = capsys.readouterr().err
    assert "also the anchor" in err and "--anchor" in err and len(err.splitlines()) == 1


@pytest.mark.real_data
def test_time_to_64_races_race64_against_the_original_seed_by_seed(cifar10, tmp_path, one_thread):
    out = tmp_path / "t64.json"
    argv = ["bench", "time-to-64", "--quick", "--seeds", "3", "4", "--device", "cpu", "--out",
            str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert RECORD_KEYS <= set(record) and record["benchmark"] == "time-to-64"
    assert record["command"] == "python -m cifar_lib " + shlex.join(argv)
    assert record["recipe"] == "race64" and record["quick"] is True
    # in turns: the racer, then the original, seed by seed
    assert [(r["recipe"], r["seed"]) for r in record["rows"]] == [
        ("race64", 3), ("original", 3), ("race64", 4), ("original", 4)]
    assert record["racer"]["seeds"] == record["original"]["seeds"] == [3, 4]
    assert record["recipe_settings"]["race64"]["val_fraction"] == 0.0  # the benchmark protocol
    for row in record["rows"]:
        assert len(row["history"]) == row["epochs"] == 1  # --quick: one epoch each
        assert 0 <= row["test_acc"] <= 100


def test_time_to_64_summary_needs_every_seed_to_reach_it():
    rows = [{"recipe": "race64", "seed": 0, "time_to_64": 2.0},
            {"recipe": "original", "seed": 0, "time_to_64": 40.0},
            {"recipe": "race64", "seed": 1, "time_to_64": 4.0},
            {"recipe": "original", "seed": 1, "time_to_64": 50.0}]
    s = bench_64.summarize(rows)
    assert s["racer"]["mean"] == 3.0 and s["original"]["mean"] == 45.0
    assert s["speedup"] == pytest.approx(15.0)
    rows[2]["time_to_64"] = None  # seed 1's racer fell short of 64%
    s = bench_64.summarize(rows)
    assert s["racer"]["mean"] is None and s["speedup"] is None


@pytest.mark.parametrize("n_recipe, n_anchor, expected", [
    (5, 1, "r0 r1 r2 a0 r3 r4"),   # one anchor run: in the middle, not at the start
    (5, 2, "r0 r1 a0 r2 r3 a1 r4"),
    (2, 1, "r0 a0 r1"),
    (3, 3, "r0 a0 r1 a1 r2 a2"),   # as many of each: in turns
    (2, 0, "r0 r1"),
])
def test_anchor_runs_are_spread_evenly_among_the_recipe_runs(n_recipe, n_anchor, expected):
    order = bench_train.run_order(n_recipe, n_anchor)
    assert " ".join(f"{part[0]}{i}" for part, i in order) == expected


def _spy_on_training(monkeypatch):
    calls = []

    def fake(recipe, seed, train, test, device, quick, precision=None, overrides=None):
        calls.append((recipe, seed, dict(overrides or {})))
        return {"recipe": recipe, "seed": seed, "test_acc": 94.0, "seconds": 1.0}
    monkeypatch.setattr(bench_train, "train_once", fake)
    return calls


def test_each_raced_recipe_warms_up_untimed_before_the_first_timed_run(monkeypatch,
                                                                     synthetic_root):
    calls = _spy_on_training(monkeypatch)
    result = bench_train.run([0, 1], [0], synthetic_root, device="cpu",
                             overrides={"label_smoothing": 0.1})
    # fast's hardest 60% must fill a batch: 3 batches of 1,000; airbench94 2 batches of 1,024
    warm = [("fast", 0, {"label_smoothing": 0.1, "train_subset": 3000, "test_subset": 1000}),
            ("airbench94", 0, {"train_subset": 2048, "test_subset": 1000})]
    timed = [("fast", 0, {"label_smoothing": 0.1}), ("airbench94", 0, {}),
             ("fast", 1, {"label_smoothing": 0.1})]
    assert calls == warm + timed
    assert [(r["recipe"], r["seed"]) for r in result["runs"]] == [(r, s) for r, s, _ in timed]
    # nothing left to time (a resumed race that was done): no warm-up; a smoke test: none either
    calls.clear()
    bench_train.run([0], [0], synthetic_root, device="cpu", done=result["runs"][:2])
    assert calls == []
    bench_train.run([0], [], synthetic_root, device="cpu", quick=True)
    assert calls == [("fast", 0, {})]


def test_train_record_goes_to_one_file_per_kind_of_machine(monkeypatch):
    monkeypatch.setattr(bench_train, "cpu_has_native_bf16", lambda: True)
    assert bench_train.default_out(torch.device("cpu")) == "benchmarks/results/train_cpu-bf16.json"
    monkeypatch.setattr(bench_train, "cpu_has_native_bf16", lambda: False)
    assert bench_train.machine_kind(torch.device("cpu")) == "cpu-fp32"
    assert bench_train.machine_kind(torch.device("cuda", 0)) == "cuda"
    # A forced precision is another record: fp32 on a bf16 CPU must not overwrite its own.
    monkeypatch.setattr(bench_train, "cpu_has_native_bf16", lambda: True)
    assert bench_train.default_out(torch.device("cpu"), "fp32") == (
        "benchmarks/results/train_cpu-bf16_fp32.json")


@pytest.mark.real_data
@pytest.mark.parametrize("forced, expected", [("fp32", "fp32"), ("bf16", "bfloat16")])
def test_a_forced_precision_reaches_every_run_and_the_fingerprint(cifar10, one_thread, forced,
                                                                  expected):
    train, test = cifar10
    # A narrow net on few images: where bf16 is not native, it is emulated and slow.
    small = {"model_kwargs": {"widths": (16, 32, 32)}, "train_subset": 512, "test_subset": 200}
    row = bench_train.train_once("fast", 0, train, test, torch.device("cpu"), True, forced, small)
    assert row["precision"] == expected
    own = bench_train.fingerprint("fast", "airbench94", torch.device("cpu"), True)
    fp = bench_train.fingerprint("fast", "airbench94", torch.device("cpu"), True, forced)
    assert {r["precision"] for r in fp["recipes"].values()} == {forced}
    assert fp["recipes"] != own["recipes"]  # progress measured otherwise cannot be resumed


def test_a_race_clocks_fit_whole_and_reports_both_accuracies(monkeypatch):
    readings = iter([100.0, 130.0])  # the clock before and after fit
    monkeypatch.setattr(bench_train, "synced_clock", lambda device: next(readings))
    metrics = {"test_acc": 0.9, "test_acc_tta": 0.95, "images_per_second": 1.0,
               "precision": "fp32"}
    monkeypatch.setattr(bench_train, "fit",
                        lambda cfg, train, test, progress: types.SimpleNamespace(metrics=metrics))
    row = bench_train.train_once("fast", 0, None, None, torch.device("cpu"), True)
    assert row["seconds"] == 30.0
    assert (row["test_acc"], row["test_acc_no_tta"]) == pytest.approx((95.0, 90.0))


def test_summarize_reports_time_to_goal_only_when_the_mean_reaches_it():
    rows = [{"recipe": "r", "seed": s, "test_acc": a, "seconds": t}
            for s, a, t in [(0, 94.2, 10.0), (1, 93.9, 12.0)]]
    summary = bench_train.summarize(rows)
    assert summary["test_acc_mean"] == pytest.approx(94.05) and summary["test_acc_min"] == 93.9
    assert summary["time_to_goal"] == summary["seconds_mean"] == 11.0
    assert bench_train.summarize(rows[1:])["time_to_goal"] is None


@pytest.mark.real_data
def test_an_interrupted_train_benchmark_resumes_without_running_anything_twice(
        cifar10, tmp_path, one_thread, monkeypatch):
    out = tmp_path / "train.json"
    argv = ["bench", "train", "--quick", "--seeds", "0", "1", "--anchor-seeds", "0", "--device",
            "cpu", "--out", str(out)]
    real_train_once, ran = bench_train.train_once, []

    def interrupted_after_two(recipe, seed, *args):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append((recipe, seed))
        return real_train_once(recipe, seed, *args)

    monkeypatch.setattr(bench_train, "train_once", interrupted_after_two)
    assert main(argv) == 130  # interrupted during its third run
    progress = records.progress_path(out)
    assert progress.name == "train.progress.json" and not out.exists()
    saved = json.loads(progress.read_text())["runs"]
    assert [(r["recipe"], r["seed"]) for r in saved] == ran == [("fast", 0),
                                                              ("airbench94", 0)]
    # Without --resume the measured runs are not thrown away: one error naming the fix.
    assert main(argv) == 1 and progress.exists()
    # A different recipe setting cannot be resumed: its rows would not compare.
    expected = bench_train.fingerprint("fast", "airbench94", torch.device("cpu"), True)
    other = json.loads(json.dumps(expected))
    other["recipes"]["airbench94"]["epochs"] += 1
    with pytest.raises(records.ResumeError, match="different recipes"):
        records.load_progress(progress, other, resume=True)
    other = json.loads(json.dumps(expected))
    other["machine"]["torch_threads"] += 1
    with pytest.raises(records.ResumeError, match="machine, machine.torch_threads"):
        records.load_progress(progress, other, resume=True)
    # --resume measures only the missing run and writes the whole record, then drops progress.
    ran.clear()
    assert main(argv + ["--resume"]) == 0
    assert ran == [("fast", 1)] and not progress.exists()
    record = json.loads(out.read_text())
    assert [(r["recipe"], r["seed"]) for r in record["rows"]] == [
        ("fast", 0), ("airbench94", 0), ("fast", 1)]
    assert record["rows"][0] == saved[0] and record["rows"][1] == saved[1]
    assert record["recipe_settings"] == expected["recipes"]  # the quick runs' own settings
    assert record["recipe_settings"]["fast"]["brightness"] == 0.1399
    # a race trains on every training image, as airbench does: it chooses nothing
    assert record["recipe_settings"]["fast"]["val_fraction"] == 0
    assert record["recipe_settings"]["airbench94"]["val_fraction"] == 0


def test_a_resumed_benchmark_keeps_the_rows_it_has_not_reached_yet(tmp_path):
    fingerprint = {"recipe": "fast", "machine": {"cpu": "Some CPU"}}
    first = records.Progress(tmp_path / "record.json", fingerprint, resume=False)
    measured = [{"variant": "a", "seed": 1}, {"variant": "b", "seed": 2}]
    first.save(measured)
    resumed = records.Progress(tmp_path / "record.json", fingerprint, resume=True)
    assert resumed.done == measured
    new = {"variant": "c", "seed": 0}
    resumed.save([new])  # seed 0 comes first: the resumed run has reached none of the others
    saved = json.loads(first.path.read_text())["runs"]
    assert saved == [new, *measured]
    resumed.save([new, measured[0]])  # no row twice once it is reached
    assert json.loads(first.path.read_text())["runs"] == [new, measured[0], measured[1]]
    resumed.finish()
    assert not first.path.exists()
