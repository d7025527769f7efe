"""Breakdown: where a training step's time goes, by part, from torch.profiler.

    python -m cifar_lib bench breakdown [--recipes fast airbench94] [--steps 4] [--warmup 1]
        [--quick] [--out FILE.json]

Each recipe is built as ``fit`` builds it (``train.prepare``); after ``--warmup`` untimed steps,
``--steps`` steps run under ``torch.profiler``, each split into what it does: making the batch
(normalise, flip, shift, crop, jitter: *augmentation*), the forward and backward passes, and the
optimiser's update; then one batch of the final evaluation (the recipe's test-time
augmentation) runs under the profiler too. The forward and backward passes are split further by
the operators' own (self) CPU time: convolutions, BatchNorm, activations, pooling and the rest
(the optimiser's and the augmentation's operators count in their own parts only).
An operator without a kind of its own (a matrix product, a copy) takes the kind of the operator
it runs inside, and in the backward pass that of the forward operator whose gradient it
computes, so that a convolution computed as matrix products counts as a convolution. Rows give
milliseconds per training step and the share of the step; the evaluation row is per batch of
``--eval-batch`` images. Each recipe's whole-image steps are profiled, and for a recipe that
trains its first epochs on smaller crops, steps on its first epoch's crops too
(``image_size``; ``--quick`` keeps them).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from ..data import add_data_args, load_cifar10
from ..device import select_device
from ..inference import predict_logits
from ..recipes import configure, get_recipe
from ..train import prepare, train_step
from .records import print_table, settings, write_record

DEFAULT_OUT = "benchmarks/results/breakdown.json"
PARTS = ("augmentation", "forward+backward", "optimizer")
# Operator name fragments → kind, checked in order (backward kernels carry "backward").
KINDS = (("conv", ("conv",)), ("batchnorm", ("batch_norm",)),
         ("activation", ("gelu", "silu", "relu")), ("pooling", ("pool",)))


def kind_of(op: str, outer: Sequence[str] = ()) -> str:
    """The kind of a profiled operator ('conv', 'batchnorm', ...; 'other'), and whether it is a
    backward one: 'conv backward', 'batchnorm forward', ... ``outer``: the operators it runs
    inside, innermost first; the first with a kind gives it one when its own name has none."""
    names = [n.lower() for n in (op, *outer)]
    direction = "backward" if any("backward" in n for n in names) else "forward"
    for name in names:
        for kind, fragments in KINDS:
            if any(f in name for f in fragments):
                return f"{kind} {direction}"
    return f"other {direction}"


def _outer(event, forward: dict[int, list[str]] | None = None) -> list[str]:
    """The names of the profiled ranges around ``event``, innermost first. Inside a backward
    node, those of the forward operator that made the node follow (``forward``, from
    ``_forward_names``): a matrix product's gradient inside a convolution is then the
    convolution's."""
    names = []
    while (event := event.cpu_parent) is not None:
        names.append(event.name)
        if forward and event.name.startswith("autograd::engine::evaluate_function"):
            names += forward.get(event.sequence_nr, [])
    return names


def _forward_names(events) -> dict[int, list[str]]:
    """Autograd sequence number → the name of the forward operator that made that node and
    the names of the ranges around it (its backward node carries the same number)."""
    names: dict[int, list[str]] = {}
    for e in events:
        if e.sequence_nr >= 0 and not e.name.startswith("autograd::") and "Backward" not in e.name:
            names.setdefault(e.sequence_nr, [e.name, *_outer(e)])
    return names


def operator_kinds(events) -> list[tuple]:
    """(event, kind) for each profiled operator in ``events`` (``kind_of`` its names)."""
    forward = _forward_names(events)
    return [(e, kind_of(e.name, _outer(e, forward))) for e in events
            if e.name.startswith(("aten::", "autograd::")) or "Backward" in e.name]


# Ranges timed as parts of their own: their operators are not the network's.
OWN_PARTS = ("augmentation", "Optimizer.step")


def network_ms(events) -> dict[str, float]:
    """Own (self) CPU milliseconds per kind (``kind_of``) of the profiled operators in
    ``events`` that belong to the forward and backward passes: those inside the augmentation
    or an optimiser's step are left out, as they are timed as parts of their own."""
    by_kind: dict[str, float] = {}
    for e, kind in operator_kinds(events):
        if not any(name.startswith(OWN_PARTS) for name in _outer(e)):
            by_kind[kind] = by_kind.get(kind, 0.0) + e.self_cpu_time_total / 1e3
    return by_kind


def _ms(events, name: str) -> float:
    """Total CPU milliseconds of the record_function ``name`` in ``events``."""
    return sum(e.cpu_time_total for e in events if e.key == name) / 1e3


def profile_recipe(recipe: str, train, test, *, steps: int, warmup: int, eval_batch: int,
                   quick: bool, device: str = "cpu", crop_size: int | None = None) -> list[dict]:
    """Rows {recipe, image_size, images_per_step, part, ms_per_step, share} for one recipe's
    steps on whole images, or on its crop_size×crop_size crops (see the module docstring)."""
    cfg = configure(recipe, quick=quick, device=device)
    split = train.subset(cfg.train_subset)
    if quick and cfg.batch_size > len(split):  # tiny test data: still a whole step
        cfg = cfg.replace(batch_size=len(split))
    dev = select_device(device)
    t = prepare(cfg, split, dev)
    t.batches.crop_size = crop_size  # as a crop epoch sets it (None: whole images)
    size = crop_size or train.images.shape[-1]
    t.ddp_model.train()
    batches = iter(t.batches)

    def step(i: int) -> None:
        nonlocal batches
        with record_function("augmentation"):
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(t.batches)
                x, y = next(batches)
        with record_function("training step"):
            train_step(t, x, y, i % t.total_steps)

    for i in range(warmup):
        step(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(warmup + i)
    events = prof.key_averages()
    total = _ms(events, "augmentation") + _ms(events, "training step")
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step")) / 1e3
    rows = [{"recipe": recipe, "part": "augmentation", "ms": _ms(events, "augmentation")},
            {"recipe": recipe, "part": "optimizer", "ms": optimizer}]
    by_kind = network_ms(prof.events())
    # The operators' own times leave out the Python between them: share the rest of the step
    # out in proportion, so that the parts add up to the step.
    accounted = sum(by_kind.values())
    rest = total - rows[0]["ms"] - optimizer
    scale = rest / accounted if accounted else 0.0
    for kind in sorted(by_kind):
        rows.append({"recipe": recipe, "part": kind, "ms": by_kind[kind] * scale})
    for r in rows:
        r["ms_per_step"] = r.pop("ms") / steps
        r["share"] = r["ms_per_step"] / (total / steps) if total else 0.0
    if crop_size is None:  # the evaluation does not depend on the training images' size
        images = test.images[:eval_batch]
        which = f" on the least confident {cfg.tta_fraction:.0%}" if cfg.tta_fraction < 1 else ""
        rows.append({"recipe": recipe, "part": f"evaluation ({len(images)} images, TTA level "
                     f"{cfg.tta_level}{which})", "ms_per_step": _evaluation_ms(t, images),
                     "share": None})
    return [{"recipe": recipe, "image_size": size, "images_per_step": cfg.batch_size, **r}
            for r in rows]


def _evaluation_ms(t, images) -> float:
    """Milliseconds of one batch of the final evaluation, as fit makes it (the recipe's
    test-time augmentation), after one untimed pass: the first at a new batch shape prepares
    its kernels."""
    cfg = t.cfg

    def evaluate():
        with torch.inference_mode():
            predict_logits(t.model, images, cfg.mean, cfg.std, tta_level=cfg.tta_level,
                           batch_size=len(images), amp_dtype=t.amp_dtype,
                           tta_fraction=cfg.tta_fraction, with_plain=True)

    evaluate()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("evaluation"):
            evaluate()
    return _ms(prof.key_averages(), "evaluation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipes", nargs="+", default=["fast", "airbench94"],
                   help="recipes to profile (default: fast airbench94)")
    p.add_argument("--steps", type=int, default=4, help="profiled steps (default 4)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--eval-batch", type=int, default=500,
                   help="test images in the profiled evaluation batch (default 500)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    add_data_args(p)
    p.add_argument("--quick", action="store_true",
                   help="smoke test: the recipes' quick settings, 1 + 1 steps")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON record (default {DEFAULT_OUT})")


COLUMNS = {"recipe": "recipe", "images": lambda r: f"{r['image_size']}×{r['image_size']}",
           "part": "part",
           "ms per step": lambda r: f"{r['ms_per_step']:,.1f}",
           "share of the step": lambda r: "" if r["share"] is None else f"{r['share']:.1%}"}


def main(args: argparse.Namespace) -> int:
    train, test = load_cifar10(args.data_root, download=args.download)
    steps, warmup = (1, 1) if args.quick else (args.steps, args.warmup)
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be ≥ 1 and --warmup ≥ 0, got {steps}, {warmup}")
    rows = []
    for recipe in args.recipes:
        kw = dict(steps=steps, warmup=warmup, eval_batch=50 if args.quick else args.eval_batch,
                  quick=args.quick, device=args.device)
        rows += profile_recipe(recipe, train, test, **kw)
        crop = get_recipe(recipe).crop_size_at(0)  # its first epoch's crops
        if crop is not None:
            rows += profile_recipe(recipe, train, test, crop_size=crop, **kw)
        print(f"{recipe}: profiled", file=sys.stderr)
    print_table(rows, COLUMNS)
    write_record(args.out, rows, benchmark="breakdown", command=args.command_line,
                 settings=settings(args), quick=args.quick)
    print(f"\nrecord written to {args.out}")
    return 0
