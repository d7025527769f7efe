"""Report: the docs' result tables, rebuilt from the committed records.

    python -m cifar_lib bench report [--check] [--root DIR]

Each result table in benchmarks/README.md, and the results table in README.md, sits between
``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; this command rebuilds every such block
from the records, in place. ``--check`` changes nothing and exits 1 naming each block that
differs from its records (a test runs it), so numbers reach the docs only through records.
Measures nothing and takes a second.

The current records are those in benchmarks/results/ (and the folders of the records the
lessons show); superseded ones live in benchmarks/results/archive/ and appear in no table.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import textwrap
from collections.abc import Callable
from pathlib import Path

from ..ablation import seconds_compare
from ..records import markdown_table

# Where the records are, relative to the repository root. The lessons' records are looked up in
# each folder in turn (the first holding the file wins), so a folder can move without a gap.
RESULTS = Path("benchmarks/results")
ARCHIVE = RESULTS / "archive"
LESSON_RECORDS = (Path("cifar_lib/records"),)
ROOT = Path(__file__).resolve().parents[2]

# The docs and the blocks each must hold.
DOCS = {
    "benchmarks/README.md": ("train", "time-to-64", "data", "inference", "throughput",
                             "ablation", "robustness", "open-set", "breakdown", "allocator"),
    "README.md": ("validation", "results"),
}

# A record's recipe name → the name shown (today's name for the very same settings). The one
# place to change when recipes are renamed; a name not listed is shown as recorded.
RECIPE_NAMES = {
    "fast_short": "short",
    "fast_small": "tiny",
}
ABLATION_NAMES = {"original": "the original recipe"}
ANCHOR = "airbench94"
# CPU family and model numbers (/proc/cpuinfo) → generation: a cloud machine's model name
# ("AMD EPYC", "Intel Xeon Processor") does not say it. AMD's by family; Intel's Xeon server
# generations are all family 6, told apart by model.
AMD_FAMILIES = {23: "Zen 1/2", 25: "Zen 3/4", 26: "Zen 5"}
INTEL_MODELS = {85: "Skylake/Cascade Lake", 106: "Ice Lake", 143: "Sapphire Rapids",
                207: "Emerald Rapids", 173: "Granite Rapids"}

_BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                    r"(<!-- /report:(?P=name) -->)", re.DOTALL)


# --- reading records ----------------------------------------------------------------------------

def _read(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _lesson_record(root: Path, name: str) -> Path | None:
    """The first of ``LESSON_RECORDS`` (then ``RESULTS``) holding ``name``, or None."""
    for folder in (*LESSON_RECORDS, RESULTS):
        if (root / folder / name).is_file():
            return root / folder / name
    return None


def train_records(root: Path = ROOT) -> list[dict]:
    """The current training races (``train_*.json`` in ``RESULTS``), in file-name order."""
    paths = sorted(p for p in (root / RESULTS).glob("train_*.json")
                   if not p.name.endswith(".progress.json"))
    records = [_read(p) for p in paths]
    return [r for r in records if r.get("benchmark") == "train" and "anchor" in r]


def recipe_name(name: str) -> str:
    """The name shown for a record's recipe ``name`` (``RECIPE_NAMES``)."""
    return RECIPE_NAMES.get(name, name)


def processor(record: dict) -> str:
    """The CPU (or GPU) a record was measured on, with the generation where the record says it."""
    m = record.get("machine", {})
    if m.get("gpu") and record.get("device", "cpu") != "cpu":
        return m["gpu"]
    cpu = (m.get("cpu") or "unknown CPU").replace("(R)", "").replace("  ", " ")
    cpu_id = m.get("cpu_id") or {}
    if cpu_id.get("vendor") == "AuthenticAMD" and cpu_id.get("family") in AMD_FAMILIES:
        cpu += f" ({AMD_FAMILIES[cpu_id['family']]})"
    if cpu_id.get("vendor") == "GenuineIntel" and cpu_id.get("family") == 6 \
            and cpu_id.get("model") in INTEL_MODELS:
        cpu += f" ({INTEL_MODELS[cpu_id['model']]})"
    return cpu


def machine(record: dict) -> str:
    """``processor(record)`` and, for a CPU, whether it has native bf16."""
    m = record.get("machine", {})
    cpu = processor(record)
    if m.get("gpu") and record.get("device", "cpu") != "cpu":
        return cpu
    flags = m.get("cpu_flags")
    if flags is None:
        return f"{cpu}, bf16 support not recorded"
    return f"{cpu}, {'native bf16' if flags.get('native_bf16') else 'no native bf16'}"


AUTOCAST = {"bfloat16": "bf16 autocast", "float16": "fp16 autocast"}  # a run's precision, shown


def precision(record: dict) -> str:
    """How a training race computed: bf16 autocast, or fp32 (and whether that was forced)."""
    used = {r.get("precision") for r in record.get("rows", [])} - {None}
    if record.get("precision_forced") == "fp32":
        native = (record.get("machine", {}).get("cpu_flags") or {}).get("native_bf16")
        return "fp32 (bf16 turned off)" if native else "fp32 (forced)"
    if record.get("precision_forced"):
        return f"{record['precision_forced']} (forced)"
    if used == {"bfloat16"}:
        return AUTOCAST["bfloat16"]
    return ", ".join(sorted(used)) or "not recorded"


def date(record: dict) -> str:
    return str(record.get("date", ""))[:10]


# --- formatting ---------------------------------------------------------------------------------

def _pct(mean: float, std: float | None = None, lowest: float | None = None) -> str:
    text = f"{mean:.2f}%"
    if std is not None:
        text += f" ± {std:.2f}"
    if lowest is not None:
        text += f" (lowest {lowest:.2f}%)"
    return text


def _seconds(s: float) -> str:
    return f"{s:,.0f}" if s >= 100 else f"{s:.1f}"


def _seeds(seeds: list) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{len(seeds)} ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


def _caption(record: dict, extra: str = "") -> str:
    """A line under a table whose rows are not one measurement each: its machine and date."""
    return "\n\n" + textwrap.fill(f"*Measured on {machine(record)}, {date(record)}{extra}.*",
                                  width=100)


# --- the tables ---------------------------------------------------------------------------------

def _race_rows(record: dict) -> list[dict]:
    """A race's two summary rows: the recipe, then the anchor."""
    out = []
    for side in (record, record["anchor"]):
        name = side["recipe"]
        runs = [r for r in record["rows"] if r["recipe"] == name]
        no_tta = [r["test_acc_no_tta"] for r in runs if r.get("test_acc_no_tta") is not None]
        out.append({
            "recipe": recipe_name(name),
            "seeds": _seeds(side["seeds"]),
            "accuracy": _pct(side["test_acc_mean"],
                             side["test_acc_std"] if len(side["seeds"]) > 1 else None,
                             side["test_acc_min"] if len(side["seeds"]) > 1 else None),
            "no_tta": f"{statistics.mean(no_tta):.2f}%" if no_tta else "",
            "seconds": _seconds(side["seconds_mean"]),
            "ratio": (f"{side['seconds_mean'] / record['anchor']['seconds_mean']:.3f}"
                      if side is record else "1 (the anchor)"),
            "machine": machine(record), "precision": precision(record), "date": date(record),
            "train_images": _train_images(record, name),
            "short_accuracy": (f"{side['test_acc_mean']:.2f}% ± {side['test_acc_std']:.2f} "
                               f"({len(side['seeds'])} seeds)" if len(side["seeds"]) > 1
                               else f"{side['test_acc_mean']:.2f}% (1 seed)")})
    return out


def _train_images(record: dict, recipe: str) -> str:
    """How many training images the recipe trained on in ``record``: all 50,000 for records
    written before the validation split existed (their settings have no ``val_fraction``)."""
    settings = record.get("recipe_settings", {}).get(recipe, {})
    fraction = settings.get("val_fraction", 0.0)
    return f"{round(50_000 * (1 - fraction)):,}"


def train_table(root: Path = ROOT) -> str:
    """Each current race: the recipe and the anchor, accuracy, seconds per run, ratio."""
    rows = [row for record in train_records(root) for row in _race_rows(record)]
    if not rows:
        return _placeholder("train", "benchmarks/results/train_<kind>.json")
    return markdown_table(rows, {
        "recipe": "recipe", "seeds": "seeds", "test accuracy (TTA), mean ± std": "accuracy",
        "without TTA": "no_tta", "seconds per run": "seconds",
        f"time ÷ {ANCHOR}'s": "ratio", "training images": "train_images", "machine": "machine",
        "precision": "precision", "date": "date"})


def time_to_64_records(root: Path = ROOT) -> list[dict]:
    """The current races to 64% (``time_to_64_*.json`` in ``RESULTS``), in file-name order."""
    return [_read(p) for p in sorted((root / RESULTS).glob("time_to_64_*.json"))]


def time_to_64_table(root: Path = ROOT) -> str:
    """Each race to 64%: the racer's and the original's mean time to 64% over seeds (with the
    accuracy at that epoch), the speed-up, machine, the racer's precision, date."""
    def reached(record: dict, side: str) -> str:
        mean = record[side]["mean"]
        if mean is None:
            return "not reached by every seed"
        times = record[side]["times"]
        spread = f" (range {min(times):.1f}–{max(times):.1f})" if len(times) > 1 else ""
        name = record["recipe"] if side == "racer" else side
        accs = statistics.mean(r["test_acc"] for r in record["rows"] if r["recipe"] == name)
        return f"{mean:.1f} s{spread}, at {accs:.2f}%"

    rows = [{"racer": recipe_name(record["recipe"]), "seeds": _seeds(record["racer"]["seeds"]),
             "racer_at": reached(record, "racer"), "original_at": reached(record, "original"),
             "speedup": f"{record['speedup']:.1f}×" if record.get("speedup") else "",
             "machine": machine(record),
             "precision": precision({**record, "rows": [r for r in record["rows"]
                                                        if r["recipe"] != "original"]}),
             "date": date(record)}
            for record in time_to_64_records(root)]
    if not rows:
        return _placeholder("time-to-64", "benchmarks/results/time_to_64_<kind>.json")
    return markdown_table(rows, {
        "racer": "racer", "seeds (each side)": "seeds",
        "racer reaches 64% after (mean)": "racer_at",
        "the original pipeline reaches 64% after (mean)": "original_at", "sooner": "speedup",
        "machine": "machine", "racer's precision": "precision", "date": "date"})


SHIPPED = Path("cifar_lib/pretrained_runs")


def _shipped_rows(root: Path) -> list[dict]:
    """One row per model shipped with the package: one seed, trained by today's recipe."""
    rows = []
    for name in ("fast", "original"):
        folder = root / SHIPPED / name
        if not (folder / "metrics.json").is_file() or not (folder / "provenance.json").is_file():
            continue
        m, p = _read(folder / "metrics.json"), _read(folder / "provenance.json")
        acc = m.get("test_acc_tta", m["test_acc"])
        # named as the races' CPUs are: provenance's machine is "<CPU model> (<bf16 or not>)"
        cpu = processor({"machine": {"cpu": p["machine"].split(" (")[0],
                                     "cpu_id": p.get("cpu_id")}})
        rows.append({"recipe": f"{name} (the shipped model)",
                     "accuracy": f"{100 * acc:.2f}% (1 seed)",
                     "seconds": "", "ratio": "",  # trained, not raced: no timing
                     "where": f"{cpu}, {AUTOCAST.get(m['precision'], m['precision'])}, "
                              f"{m['train_images']:,} training images"})
    return rows


def results_table(root: Path = ROOT) -> str:
    """README's table: one row per recipe per current race, then the shipped models."""
    rows = []
    for record in train_records(root):
        for row in _race_rows(record):
            rows.append({**row, "accuracy": row["short_accuracy"],
                         "where": f"{processor(record)}, {row['precision']}, "
                                  f"{row['train_images']} training images"})
    rows += _shipped_rows(root)
    if not rows:
        return _placeholder("train", "benchmarks/results/train_<kind>.json")
    return markdown_table(rows, {
        "recipe": "recipe", "test accuracy": "accuracy", "seconds per run": "seconds",
        f"time ÷ {ANCHOR}'s": "ratio", "where measured": "where"})


def data_table(root: Path = ROOT) -> str:
    path = root / RESULTS / "data_pipeline.json"
    if not path.is_file():
        return _placeholder("data", str(RESULTS / "data_pipeline.json"))
    record = _read(path)
    return markdown_table(record["rows"], {
        "pipeline (one epoch)": "pipeline", "seconds": lambda r: f"{r['seconds']:.3g}",
        "images/s": lambda r: f"{r['images_per_second']:,.0f}",
        "vs torchvision DataLoader": lambda r: (f"{r['speedup_vs_original']:.1f}×"
                                                if r.get("speedup_vs_original") else ""),
        "machine": lambda r: machine(record), "date": lambda r: date(record)})


def _inference_label(row: dict) -> str:
    if row["method"].startswith("seed"):
        return f"{row['variant']}, timed as the original notebook did (one call, time.time())"
    return row["variant"]


def inference_table(root: Path = ROOT) -> str:
    """Median images/s per variant and batch size; a device with no measurement is one row."""
    path = root / RESULTS / "inference.json"
    if not path.is_file():
        return _placeholder("inference", str(RESULTS / "inference.json"))
    record = _read(path)
    sizes = sorted({r["batch_size"] for r in record["rows"]})
    table: dict[tuple, dict] = {}
    absent: dict[str, str] = {}
    for r in record["rows"]:
        if r["status"] != "ok":
            absent.setdefault(r["device"], r["status"])
            continue
        key = (r["device"], _inference_label(r), r["dtype"])
        table.setdefault(key, {})[r["batch_size"]] = r["images_per_s"]
    rows = []
    for (device, label, dtype), cells in table.items():
        absent.pop(device, None)
        rows.append({"device": device, "variant": label, "precision": dtype,
                     **{f"batch {b}": f"{cells[b]:,.0f}" if b in cells else "" for b in sizes}})
    rows += [{"device": device, "variant": status} for device, status in absent.items()]
    columns = {"device": "device", "variant": "variant", "precision": "precision",
               **{f"batch {b}": f"batch {b}" for b in sizes}}
    model = record.get("model") or {}
    widths = "/".join(map(str, model.get("model_kwargs", {}).get("widths", [])))
    extra = (f"; the {model.get('model')} network at widths {widths}, median images/s, "
             f"{record['rows'][0].get('threads')} threads") if model else ""
    return markdown_table(rows, columns) + _caption(record, extra)


def throughput_table(root: Path = ROOT) -> str:
    path = root / RESULTS / "train_throughput.json"
    if not path.is_file():
        return _placeholder("throughput", str(RESULTS / "train_throughput.json"))
    record = _read(path)

    def ok(fn: Callable[[dict], str]) -> Callable[[dict], str]:
        return lambda r: fn(r) if r["status"] == "ok" else ""

    return markdown_table(record["rows"], {
        "recipe": lambda r: recipe_name(r["recipe"]), "device": "device",
        "precision": ok(lambda r: r["precision"]),
        "channels-last": ok(lambda r: "yes" if r["channels_last"] else "no"),
        "batch": "batch_size",
        "ms per step": lambda r: (f"{1000 * r['seconds_per_step']:,.1f}" if r["status"] == "ok"
                                  else r["status"]),
        "images/s": ok(lambda r: f"{r['images_per_s']:,.0f}"),
        "images/s on its crops": ok(lambda r: f"{r['crop_images_per_s']:,.0f} "
                                      f"({r['crop_size']}×{r['crop_size']})"
                                      if r.get("crop_size") else ""),
        "vs CPU": ok(lambda r: f"{r['speedup_vs_cpu']:.2f}×"),
        "machine": lambda r: (r.get("device_name") or machine(record)) if r["device"] != "cpu"
        else machine(record),
        "date": lambda r: date(record)})


def ablation_table(root: Path = ROOT) -> str:
    """The ablation of ``fast`` (or a sentence saying it is not measured yet), then of any
    other recipe whose record ships beside it, each from its record."""
    folder = root / LESSON_RECORDS[0]
    others = sorted(p.stem.removeprefix("ablation_") for p in folder.glob("ablation_*.json")
                    if not p.name.endswith(".progress.json"))
    parts = []
    for recipe in ["fast", *(r for r in others if r != "fast")]:
        path = folder / f"ablation_{recipe}.json"
        if not path.is_file():
            parts.append(_placeholder("ablation", str(LESSON_RECORDS[0] / path.name))
                         + f" (`--recipe {recipe}`)")
            continue
        record = _read(path)
        budget = record.get("budget", {})
        seeds = record["settings"].get("seeds", [])
        columns = {
            "variant": lambda r: ABLATION_NAMES.get(r["variant"], r["variant"]),
            f"test accuracy (TTA), mean ± std over {len(seeds)} seeds": lambda r: _pct(
                r["test_acc_mean"], r["test_acc_std"]),
            "vs every trick (points)": lambda r: (f"{r['vs_base']:+.2f}"
                                                  if r["variant"] != recipe else "")}
        if seconds_compare(record):  # else its note says why the seconds are left out
            columns["train seconds (median)"] = lambda r: f"{r['seconds_median']:,.0f}"
        table = markdown_table(record["summary"], columns)
        shape = ""
        if budget.get("widths") or budget.get("epochs"):
            widths = "/".join(map(str, budget.get("widths") or [])) or "the recipe's"
            shape = f"; widths {widths}, {budget.get('epochs')} epochs"
        parts.append(f"**`{recipe}`**\n\n" + table + _caption(
            record, f"{shape}; seeds {', '.join(map(str, seeds))}"
            + (f"; {record['note']}" if record.get("note") else "")))
    return "\n\n".join(parts)


def validation_table(root: Path = ROOT) -> str:
    """What holding out the validation split costs ``fast``: the ablation variants "fast"
    (45,000 training images) and "no validation split" (all 50,000), side by side."""
    path = _lesson_record(root, "validation_split.json")
    if path is None:
        return (_placeholder("ablation", str(RESULTS / "validation_split.json"))
                + ' (`--variants fast "no validation split"`)')
    record = _read(path)
    rows = {r["variant"]: r for r in record["summary"]}
    trained_on = {"fast": "45,000 images, 5,000 held out for validation (the default)",
                  "no validation split": "all 50,000 images"}
    table = markdown_table([rows[v] for v in trained_on if v in rows], {
        "fast trained on": lambda r: trained_on[r["variant"]],
        "test accuracy (TTA), mean ± std": lambda r: _pct(r["test_acc_mean"],
                                                          r["test_acc_std"]),
        "seeds": "seeds"})
    return table + _caption(record)


def robustness_table(root: Path = ROOT) -> str:
    path = _lesson_record(root, "robustness.json")
    if path is None:
        return _placeholder("robustness", str(LESSON_RECORDS[0] / "robustness.json"))
    record = _read(path)
    summary = record["summary"]
    models = list(summary)
    corruptions = list(next(iter(summary.values()))["per_corruption"])
    rows = [{"corruption": "clean", **{m: summary[m]["clean"] for m in models}}]
    rows += [{"corruption": c, **{m: summary[m]["per_corruption"][c] for m in models}}
             for c in corruptions]
    rows.append({"corruption": "**mean corrupted**",
                 **{m: summary[m]["mean_corrupted"] for m in models}})
    table = markdown_table(rows, {"corruption": "corruption",
                                  **{f"{recipe_name(m)} model": (lambda r, m=m: f"{100 * r[m]:.1f}")
                                     for m in models}})
    tta = record.get("tta_level")
    return table + _caption(record, f"; {record.get('images'):,} test images, "
                                    f"{'no TTA' if not tta else f'TTA level {tta}'}, "
                                    f"seed {record.get('seed')}; accuracy in %, mean over "
                                    f"severities 1–5")


def open_set_table(root: Path = ROOT) -> str:
    path = _lesson_record(root, "open_set.json")
    if path is None:
        return _placeholder("open-set", str(LESSON_RECORDS[0] / "open_set.json"))
    record = _read(path)
    return markdown_table(record["rows"], {
        "model": "model", "unknowns": "unknowns", "score": "score",
        "AUROC": lambda r: f"{r['auroc']:.3f}",
        "FPR at 95% TPR": lambda r: f"{r['fpr_at_95_tpr']:.3f}"}) + _caption(record)


def breakdown_table(root: Path = ROOT) -> str:
    path = _lesson_record(root, "breakdown.json")
    if path is None:
        return _placeholder("breakdown", str(RESULTS / "breakdown.json"))
    record = _read(path)
    rows = record["rows"]
    # one column per recipe and image size profiled: "fast, 24×24"
    name = lambda r: (f"{r['recipe']}, {r['image_size']}×{r['image_size']}"
                      if "image_size" in r else r["recipe"])
    steps = list(dict.fromkeys(name(r) for r in rows))
    cells: dict[str, dict] = {}    # part → {column: "ms (share)"}, one row per part
    for r in rows:
        share = f" ({r['share']:.0%})" if r["share"] is not None else ""
        cells.setdefault(r["part"], {"part": r["part"]})[name(r)] = (
            f"{r['ms_per_step']:,.0f}{share}")
    totals = {"part": "a whole training step"}
    for step in steps:
        ms = sum(r["ms_per_step"] for r in rows if name(r) == step and r["share"] is not None)
        totals[step] = f"{ms:,.0f}"
    columns = {"part": "part", **{f"{step}: ms per step (share)": step for step in steps}}
    sizes = {r["recipe"]: r["images_per_step"] for r in rows if "images_per_step" in r}
    per_step = ("; a step is " + ", ".join(f"{n:,} images for {recipe}"
                                           for recipe, n in sizes.items())) if sizes else ""
    return markdown_table([*cells.values(), totals],
                          {k: (lambda r, v=v: r.get(v, "")) for k, v in columns.items()}) \
        + _caption(record, f"; {record['settings'].get('steps')} steps of each after "
                           f"{record['settings'].get('warmup')} untimed, "
                           f"{record['machine']['torch_threads']} threads{per_step}")


def allocator_table(root: Path = ROOT) -> str:
    """Per recipe and allocator: median images/s, page faults and system seconds per process,
    and the speed-up of keeping freed memory."""
    path = _lesson_record(root, "allocator.json")
    if path is None:
        return _placeholder("allocator", str(RESULTS / "allocator.json"))
    record = _read(path)
    rows = []
    for recipe, speedup in record["speedup"].items():
        for allocator in ("as it is", "kept"):
            runs = [r for r in record["rows"]
                    if r["recipe"] == recipe and r["allocator"] == allocator]
            rows.append({
                "recipe": recipe, "malloc": allocator,
                "images/s (median)": f"{statistics.median(r['images_per_s'] for r in runs):,.0f}",
                "page faults per process": f"{statistics.median(r['minor_page_faults'] for r in runs):,.0f}",
                "system seconds per process": f"{statistics.median(r['system_seconds'] for r in runs):.1f}",
                "speed-up": f"{speedup:.3f}×" if allocator == "kept" else ""})
    s = record["settings"]
    return markdown_table(rows) + _caption(
        record, f"; {s['rounds']} rounds of {s['warmup']} untimed + {s['steps']} timed steps "
                f"in a fresh process per allocator, {record['machine']['torch_threads']} "
                f"threads; a process times every recipe, so its page faults are all of them")


def _placeholder(benchmark: str, where: str) -> str:
    return (f"*No record yet: `python -m cifar_lib bench {benchmark}` measures it and writes "
            f"`{where}`.*")


TABLES: dict[str, Callable[[Path], str]] = {
    "train": train_table, "time-to-64": time_to_64_table, "data": data_table,
    "inference": inference_table, "throughput": throughput_table, "ablation": ablation_table,
    "robustness": robustness_table, "open-set": open_set_table, "breakdown": breakdown_table,
    "results": results_table, "validation": validation_table, "allocator": allocator_table,
}


def tables(root: Path | str = ROOT) -> dict[str, str]:
    """Block name → its markdown, built from the current records under ``root``."""
    return {name: build(Path(root)) for name, build in TABLES.items()}


# --- the docs -----------------------------------------------------------------------------------

def blocks(text: str) -> dict[str, str]:
    """The report blocks in ``text``: name → body (between the markers)."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def render(text: str, tables: dict[str, str]) -> str:
    """``text`` with the body of each ``<!-- report:NAME -->`` block replaced by
    ``tables[NAME]``; a block with no table raises KeyError."""
    def replace(m: re.Match) -> str:
        if m["name"] not in tables:
            raise KeyError(f"no table for the block {m['name']!r}; known: {', '.join(tables)}")
        return f"{m.group(1)}{tables[m['name']].rstrip()}\n{m.group(4)}"
    return _BLOCK.sub(replace, text)


def stale(root: Path | str = ROOT, built: dict[str, str] | None = None) -> list[str]:
    """'FILE: NAME' for each block of ``DOCS`` that is missing or differs from its records."""
    root = Path(root)
    built = tables(root) if built is None else built
    out = []
    for doc, names in DOCS.items():
        text = (root / doc).read_text()
        now, want = blocks(text), blocks(render(text, built))
        out += [f"{doc}: {name}" + ("" if name in now else " (no markers)")
                for name in names if name not in now or now[name] != want[name]]
    return out


def update(root: Path | str = ROOT) -> list[str]:
    """Rewrite the blocks of ``DOCS`` in place; returns the files that changed."""
    root = Path(root)
    built = tables(root)
    changed = []
    for doc in DOCS:
        path = root / doc
        text = path.read_text()
        new = render(text, built)
        if new != text:
            path.write_text(new)
            changed.append(doc)
    return changed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 naming each block that differs from the records")
    p.add_argument("--root", default=str(ROOT),
                   help="the repository root (default: the one this package is in)")


def main(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.check:
        bad = stale(root)
        for name in bad:
            print(f"stale: {name}")
        if bad:
            print("run `python -m cifar_lib bench report` to rebuild them from the records")
            return 1
        print("every report block matches its records")
        return 0
    missing = [name[:-len(" (no markers)")] for name in stale(root)
               if name.endswith("(no markers)")]
    changed = update(root)
    for doc in changed:
        print(f"updated {doc}")
    for name in missing:
        print(f"no markers for {name}: add <!-- report:NAME --> … <!-- /report:NAME -->")
    return 1 if missing else 0
