"""The screen that chose race64's network: its variants side by side, seed by seed in turns, in
bf16 and fp32, each one pass over 20,000 images; writes a record (about 10 minutes on 2 cores).

    CIFAR10_ROOT=../shared/data python tools/screen_race64.py benchmarks/results/archive/screen_race64.json
"""
import statistics
import sys

from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure
from cifar_lib.train import fit
from cifar_lib.bench.race import PROTOCOL
from cifar_lib.bench.records import write_record

OLD = {"widths": (16, 32, 64)}                        # GELU, whitening stride 1
NOW = {"widths": (32, 64, 128), "whiten_stride": 2}   # GELU
SILU = {"activation": "silu"}
VARIANTS = {
    "race64 before: whitening stride 1, widths 16/32/64": dict(model_kwargs=OLD),
    "race64 before, with SiLU": dict(model_kwargs={**OLD, **SILU}),
    "whitening stride 2, widths 16/32/64": dict(model_kwargs={**OLD, "whiten_stride": 2}),
    "race64 now: whitening stride 2, widths 32/64/128": dict(model_kwargs=NOW),
    "race64 now, with SiLU": dict(model_kwargs={**NOW, **SILU}),
    "race64 now, with SiLU, on 18,000 images at batch 200": dict(
        model_kwargs={**NOW, **SILU}, train_subset=18_000, batch_size=200),
}
SEEDS = [0, 1, 2, 3, 4, 5]
PRECISIONS = ("bf16", "fp32")
BEFORE = next(iter(VARIANTS))


def screen() -> list[dict]:
    """One row per precision, seed and variant (in that nesting: variants take turns)."""
    train, test = load_cifar10()
    rows = []
    for precision in PRECISIONS:
        for seed in SEEDS:
            for name, kw in VARIANTS.items():
                cfg = configure("race64", seed=seed, precision=precision, **PROTOCOL, **kw)
                run = fit(cfg, train, test, progress=False)
                h = run.history[-1]
                rows.append({"variant": name, "precision": precision, "seed": seed,
                             "train_seconds": h["train_seconds"], "test_acc": 100 * h["test_acc"],
                             "model_kwargs": cfg.model_kwargs, "train_images": cfg.train_subset,
                             "batch_size": cfg.batch_size})
                print(f"{name}, {precision}, seed {seed}: {h['train_seconds']:.2f} s, "
                      f"{100 * h['test_acc']:.2f}%", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per variant and precision: its time over the old race64's, seed by seed (mean, and the
    median, which one slow spell cannot move), and its test accuracy (mean, lowest)."""
    summary = []
    for precision in PRECISIONS:
        base = {r["seed"]: r["train_seconds"] for r in rows
                if r["precision"] == precision and r["variant"] == BEFORE}
        for name in VARIANTS:
            rs = [r for r in rows if r["precision"] == precision and r["variant"] == name]
            ratios = [r["train_seconds"] / base[r["seed"]] for r in rs]
            summary.append({"variant": name, "precision": precision,
                            "time_vs_before": statistics.mean(ratios),
                            "time_vs_before_median": statistics.median(ratios),
                            "test_acc_mean": statistics.mean(r["test_acc"] for r in rs),
                            "test_acc_min": min(r["test_acc"] for r in rs)})
    return summary


if __name__ == "__main__":
    rows = screen()
    summary = summarize(rows)
    for row in summary:
        print(row)
    write_record(sys.argv[1], rows, benchmark="screen",
                 command="python tools/screen_race64.py " + sys.argv[1],
                 settings={"recipe": "race64", "seeds": SEEDS, **PROTOCOL},
                 note="race64's variants, one pass each over its training images, taking turns "
                      "seed by seed so that a slow spell falls on all; train_seconds at the end "
                      "of the only epoch; test accuracy on all 10,000 test images without TTA. "
                      "time_vs_before: over seeds, the ratio to the old race64 (the first "
                      "variant) of the same seed and precision. A seeded run's accuracy repeats; "
                      "its seconds vary by about 10% from run to run on this 2-core machine.",
                 summary=summary)
