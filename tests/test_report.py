"""The docs' result tables are the records': ``bench report --check`` passes on the committed
docs, fails when a record or a generated block is edited by hand, and the tables carry each
current record's key numbers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cifar_lib.bench import report
from cifar_lib.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def _copy_docs(tmp_path: Path) -> Path:
    """The docs and every current record folder, copied under ``tmp_path``."""
    for doc in report.DOCS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)
    for folder in (report.RESULTS, *report.LESSON_RECORDS, report.SHIPPED):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns(
                "archive", "*.progress.json", "*.pt"))
    return tmp_path


def _edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record, indent=2))


def test_committed_docs_match_the_records(capsys):
    assert cli_main(["bench", "report", "--check"]) == 0, capsys.readouterr().out
    assert report.stale(ROOT) == []


def test_every_doc_has_every_block():
    for doc, names in report.DOCS.items():
        present = report.blocks((ROOT / doc).read_text())
        assert set(names) <= set(present), doc
    assert set(report.TABLES) == {n for names in report.DOCS.values() for n in names}


def test_an_edited_record_makes_the_check_fail(tmp_path, capsys):
    root = _copy_docs(tmp_path)
    assert report.stale(root) == []

    def nudge(record):
        record["test_acc_mean"] += 0.5

    _edit_json(root / report.RESULTS / "train_cpu-bf16.json", nudge)
    assert report.stale(root) == ["benchmarks/README.md: train", "README.md: results"]
    assert cli_main(["bench", "report", "--check", "--root", str(root)]) == 1
    assert "stale: README.md: results" in capsys.readouterr().out
    # rebuilding brings the docs back in step
    assert cli_main(["bench", "report", "--root", str(root)]) == 0
    assert report.stale(root) == []


def test_an_edited_lesson_record_makes_the_check_fail(tmp_path):
    root = _copy_docs(tmp_path)
    path = report._lesson_record(root, "robustness.json")

    def nudge(record):
        record["summary"]["fast"]["clean"] -= 0.01

    _edit_json(path, nudge)
    assert report.stale(root) == ["benchmarks/README.md: robustness"]


def test_a_number_edited_in_a_block_makes_the_check_fail(tmp_path):
    root = _copy_docs(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    ratio = f"{_race('train_cpu-bf16.json')['time_ratio']:.3f}"
    block = report.blocks(text)["results"]
    assert block.count(ratio) == 1
    readme.write_text(text.replace(block, block.replace(ratio, "0.700")))
    assert report.stale(root) == ["README.md: results"]


def test_missing_markers_are_named(tmp_path):
    root = _copy_docs(tmp_path)
    doc = root / "benchmarks/README.md"
    doc.write_text(doc.read_text().replace("<!-- report:data -->", "").replace(
        "<!-- /report:data -->", ""))
    assert report.stale(root) == ["benchmarks/README.md: data (no markers)"]


def test_render_replaces_only_the_blocks():
    text = "intro\n<!-- report:a -->\nold\n<!-- /report:a -->\nmiddle\n<!-- report:b -->\n" \
           "<!-- /report:b -->\nend\n"
    out = report.render(text, {"a": "| x |", "b": "new\n"})
    assert out == ("intro\n<!-- report:a -->\n| x |\n<!-- /report:a -->\nmiddle\n"
                   "<!-- report:b -->\nnew\n<!-- /report:b -->\nend\n")
    assert report.render(out, {"a": "| x |", "b": "new"}) == out
    with pytest.raises(KeyError, match="'a'"):
        report.render(text, {"b": ""})


def _race(name: str) -> dict:
    return json.loads((ROOT / report.RESULTS / name).read_text())


def test_tables_hold_each_current_records_key_numbers():
    built = report.tables(ROOT)
    races = report.train_records(ROOT)
    assert len(races) >= 2
    for race in races:
        for side in (race, race["anchor"]):
            for table in (built["train"], built["results"]):
                assert f"{side['test_acc_mean']:.2f}% ± {side['test_acc_std']:.2f}" in table
                assert f"{side['seconds_mean']:,.0f}" in table
                assert report.recipe_name(side["recipe"]) in table
        assert f"{race['time_ratio']:.3f}" in built["results"]
        assert race["date"][:10] in built["train"]
        assert report.machine(race) in built["train"]

    to_64 = report.time_to_64_records(ROOT)
    assert to_64
    for race in to_64:
        assert f"{race['speedup']:.1f}×" in built["time-to-64"]
        assert f"{race['racer']['mean']:.1f} s" in built["time-to-64"]
        assert f"{race['original']['mean']:.1f} s" in built["time-to-64"]

    data = json.loads((ROOT / report.RESULTS / "data_pipeline.json").read_text())
    for row in data["rows"]:
        assert f"{row['images_per_second']:,.0f}" in built["data"]

    inference = json.loads((ROOT / report.RESULTS / "inference.json").read_text())
    for row in inference["rows"]:
        if row["status"] == "ok":
            assert f"{row['images_per_s']:,.0f}" in built["inference"]

    throughput = json.loads((ROOT / report.RESULTS / "train_throughput.json").read_text())
    for row in throughput["rows"]:
        if row["status"] == "ok":
            assert f"{row['images_per_s']:,.0f}" in built["throughput"]

    ablation = json.loads(report._lesson_record(ROOT, "ablation_fast.json").read_text())
    for row in ablation["summary"]:
        assert f"{row['test_acc_mean']:.2f}% ± {row['test_acc_std']:.2f}" in built["ablation"]

    robustness = json.loads(report._lesson_record(ROOT, "robustness.json").read_text())
    for model in robustness["summary"].values():
        assert f"| {100 * model['mean_corrupted']:.1f}" in built["robustness"]


def test_no_archived_race_reaches_a_table():
    built = "\n".join(report.tables(ROOT).values())
    for path in (ROOT / report.ARCHIVE).glob("*.json"):
        record = json.loads(path.read_text())
        # (an accuracy screen has no anchor runs, so no ratio: it cannot pass for a race)
        if record.get("time_ratio") is not None and len(record.get("seeds", [])) > 1:
            # a race of the same code repeats its accuracies to the digit, not its time ratio
            accuracy = f"{record['test_acc_mean']:.2f}% ± {record['test_acc_std']:.2f}"
            ratio = f"| {record['time_ratio']:.3f} |"
            assert not any(accuracy in line and ratio in line for line in built.splitlines()), \
                path.name


def test_a_former_name_is_shown_as_the_library_s_name_for_it():
    from cifar_lib.recipes import RECIPES, RENAMED
    for old, new in report.RECIPE_NAMES.items():
        assert new in RECIPES and RENAMED[old] == new  # the same name the library gives it
    assert _race("train_cpu-bf16.json")["recipe"] == "fast"


def test_a_planned_benchmark_renders_once_recorded(tmp_path):
    root = _copy_docs(tmp_path)
    folder = root / report.LESSON_RECORDS[0]
    (folder / "open_set.json").unlink(missing_ok=True)
    assert "No record yet" in report.tables(root)["open-set"]
    folder.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "open_set", "date": "2030-01-02T00:00:00+00:00",
              "machine": {"cpu": "Some CPU", "cpu_flags": {"native_bf16": False}},
              "rows": [{"model": "m", "score": "max_softmax", "unknowns": "svhn",
                        "auroc": 0.91234, "fpr_at_95_tpr": 0.4321}]}
    (folder / "open_set.json").write_text(json.dumps(record))
    table = report.tables(root)["open-set"]
    assert "| m | svhn | max_softmax | 0.912 | 0.432 |" in table
    assert "Some CPU, no native bf16, 2030-01-02" in table
    assert report.stale(root) == ["benchmarks/README.md: open-set"]


def test_the_readme_table_shows_each_shipped_model_from_its_own_files():
    built = report.tables(ROOT)["results"]
    for name in ("fast", "original"):
        folder = ROOT / report.SHIPPED / name
        metrics = json.loads((folder / "metrics.json").read_text())
        acc = metrics.get("test_acc_tta", metrics["test_acc"])
        assert f"| {name} (the shipped model) | {100 * acc:.2f}% (1 seed) |" in built
        assert f"{metrics['train_images']:,}" in built


def test_the_readme_says_what_the_validation_split_costs_once_measured(tmp_path):
    root = _copy_docs(tmp_path)
    path = root / report.RESULTS / "validation_split.json"
    path.unlink(missing_ok=True)
    assert "No record yet" in report.tables(root)["validation"]
    summary = [{"variant": v, "removed": "…", "seeds": 3, "test_acc_mean": acc,
                "test_acc_std": 0.1, "test_acc_min": acc - 0.1, "vs_base": 0.0,
                "seconds_median": 400.0}
               for v, acc in (("fast", 93.61), ("no Muon", 92.7), ("no validation split", 94.07))]
    path.write_text(json.dumps({"benchmark": "ablation", "date": "2030-01-02T00:00:00+00:00",
                                "machine": {"cpu": "Some CPU"}, "settings": {"seeds": [0, 1, 2]},
                                "rows": [], "summary": summary}))
    table = report.tables(root)["validation"]
    assert "| 45,000 images, 5,000 held out for validation (the default) | 93.61% ± 0.10 | 3 |" \
        in table
    assert "| all 50,000 images | 94.07% ± 0.10 | 3 |" in table
    assert "no Muon" not in table and "README.md: validation" in report.stale(root)


def test_the_allocator_table_shows_medians_and_the_speedup(tmp_path):
    root = _copy_docs(tmp_path)
    path = root / report.RESULTS / "allocator.json"
    path.unlink(missing_ok=True)
    assert "No record yet" in report.tables(root)["allocator"]
    rows = [{"recipe": "fast", "allocator": a, "round": i, "images_per_s": ips,
             "seconds_per_step": 1.0, "minor_page_faults": faults, "system_seconds": sys_s}
            for i, (a, ips, faults, sys_s) in enumerate([
                ("as it is", 700.0, 900_000, 3.0), ("kept", 760.0, 100_000, 0.2),
                ("as it is", 720.0, 910_000, 3.1), ("kept", 770.0, 110_000, 0.3),
                ("as it is", 710.0, 920_000, 3.2), ("kept", 780.0, 120_000, 0.4)])]
    path.write_text(json.dumps({"benchmark": "allocator", "date": "2030-01-02T00:00:00+00:00",
                                "machine": {"cpu": "Some CPU", "torch_threads": 2},
                                "settings": {"rounds": 3, "steps": 10, "warmup": 3},
                                "speedup": {"fast": 770.0 / 710.0}, "rows": rows}))
    table = report.tables(root)["allocator"]
    assert "| fast | as it is | 710 | 910,000 | 3.1 |  |" in table
    assert "| fast | kept | 770 | 110,000 | 0.3 | 1.085× |" in table
    assert "benchmarks/README.md: allocator" in report.stale(root)


AMD, INTEL = "AMD EPYC", "Intel(R) Xeon(R) Processor"  # as cloud machines name themselves


@pytest.mark.parametrize("cpu, cpu_id, shown", [
    (AMD, {"vendor": "AuthenticAMD", "family": 26, "model": 2}, "AMD EPYC (Zen 5)"),
    (INTEL, {"vendor": "GenuineIntel", "family": 6, "model": 207},
     "Intel Xeon Processor (Emerald Rapids)"),
    (INTEL, {"vendor": "GenuineIntel", "family": 6, "model": 1}, "Intel Xeon Processor"),
    (INTEL, None, "Intel Xeon Processor")])  # records from before cpu_id
def test_a_cloud_cpu_is_named_with_its_generation(cpu, cpu_id, shown):
    assert report.processor({"machine": {"cpu": cpu, "cpu_id": cpu_id}}) == shown


def test_a_shipped_model_s_machine_is_named_as_the_races_are(tmp_path):
    folder = tmp_path / "cifar_lib" / "pretrained_runs" / "fast"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(
        {"test_acc": 0.92, "test_acc_tta": 0.93, "precision": "bfloat16",
         "train_images": 45000}))
    provenance = {"machine": f"{INTEL} (native bf16)",
                  "cpu_id": {"vendor": "GenuineIntel", "family": 6, "model": 207}}
    (folder / "provenance.json").write_text(json.dumps(provenance))
    [row] = report._shipped_rows(tmp_path)
    assert row["where"] == ("Intel Xeon Processor (Emerald Rapids), bf16 autocast, "
                            "45,000 training images")
    del provenance["cpu_id"]  # shipped before ship recorded it: the model name alone
    (folder / "provenance.json").write_text(json.dumps(provenance))
    assert report._shipped_rows(tmp_path)[0]["where"].startswith("Intel Xeon Processor, ")


def test_an_ablation_whose_seconds_do_not_compare_shows_no_time_column(tmp_path):
    root = _copy_docs(tmp_path)
    path = root / report.LESSON_RECORDS[0] / "ablation_fast.json"
    _edit_json(path, lambda r: r.update(seconds_comparable=True))
    assert "train seconds" in report.tables(root)["ablation"]
    _edit_json(path, lambda r: r.update(seconds_comparable=False, note="slowed"))
    table = report.tables(root)["ablation"]
    assert "train seconds" not in table and "slowed" in table


def test_the_breakdown_table_has_a_column_per_recipe_and_image_size(tmp_path):
    root = _copy_docs(tmp_path)
    path = root / report.RESULTS / "breakdown.json"
    rows = [{"recipe": recipe, "image_size": size, "images_per_step": n, "part": part,
             "ms_per_step": ms, "share": share}
            for recipe, size, n, part, ms, share in [
                ("fast", 32, 1000, "conv backward", 300.0, 0.6),
                ("fast", 32, 1000, "other forward", 200.0, 0.4),
                ("fast", 24, 1000, "conv backward", 150.0, 0.5),
                ("fast", 24, 1000, "other forward", 150.0, 0.5),
                ("fast", 32, 1000, "evaluation (500 images, TTA level 2)", 400.0, None),
                ("airbench94", 32, 1024, "conv backward", 512.0, 1.0)]]
    path.write_text(json.dumps({"benchmark": "breakdown", "date": "2030-01-02T00:00:00+00:00",
                                "machine": {"cpu": "Some CPU", "torch_threads": 2},
                                "settings": {"steps": 4, "warmup": 1}, "rows": rows}))
    table = report.tables(root)["breakdown"]
    assert ("| part | fast, 32×32: ms per step (share) | fast, 24×24: ms per step (share) | "
            "airbench94, 32×32: ms per step (share) |") in table
    assert "| conv backward | 300 (60%) | 150 (50%) | 512 (100%) |" in table
    assert "| a whole training step | 500 | 300 | 512 |" in table
    assert "a step is 1,000 images for fast, 1,024 images for airbench94" in table
