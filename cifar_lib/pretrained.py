"""The trained models that ship inside the package, so that every lesson runs on its own.

Colab gives each notebook a fresh runtime: the run folder 01_train wrote is gone when a learner
opens 02, 03 or 04 from its badge. ``pip install`` of the course therefore brings trained runs
along, ``fast`` and ``original``: each folder of ``cifar_lib/pretrained_runs/`` holds the
checkpoint with its weights in fp16 (half the size; the accuracy in ``metrics.json`` is
measured on those very weights), the training history, and ``provenance.json``: the command,
seed, machine, and the cifar_lib version and git commit that made it.

``ship`` makes such a folder from any finished run (``python -m cifar_lib ship --run-dir ...``).
"""
from __future__ import annotations

import datetime
from pathlib import Path

import torch

from .checkpoint import (
    CHECKPOINT,
    HISTORY,
    METRICS,
    load_checkpoint,
    resolve_checkpoint,
)
from .files import atomic_write, read_json, write_json
from .provenance import code_version

RUNS = Path(__file__).resolve().parent / "pretrained_runs"
PROVENANCE = "provenance.json"


def shipped_run(name: str = "fast") -> Path:
    """The folder of a shipped run (checkpoint.pt, metrics.json, history.json, provenance.json)."""
    folder = RUNS / name
    if not (folder / CHECKPOINT).is_file():
        available = sorted(p.name for p in RUNS.glob("*") if (p / CHECKPOINT).is_file())
        raise FileNotFoundError(f"no shipped run {name!r} in {RUNS}; available: "
                                f"{', '.join(available) or 'none (reinstall cifar_lib)'}")
    return folder


def is_shipped(folder) -> bool:
    """Whether ``folder`` lies inside the package's shipped runs, which only ``ship`` writes:
    an installed package may be read-only, and its models are shared by every user."""
    return RUNS in Path(folder).resolve().parents


def load_pretrained(name: str = "fast", device: str = "auto"):
    """The shipped model ``name`` ('fast' or 'original') as a ``LoadedModel``: weights, class
    names, normalisation and calibration, ready for ``predict`` and ``evaluate_run``, on
    ``device`` ('auto': the best device present, as everywhere).

    >>> run = load_pretrained("fast")
    >>> run.classes[:3], run.calibration is not None
    (('airplane', 'automobile', 'bird'), True)
    """
    from .checkpoint import load_run
    return load_run(shipped_run(name), device)


def describe(name: str = "fast") -> str:
    """One paragraph: what the shipped model is, how good, and the command that made it."""
    folder = shipped_run(name)
    m, p = read_json(folder / METRICS), read_json(folder / PROVENANCE)
    tta = f", {m['test_acc_tta']:.2%} with test-time augmentation" if "test_acc_tta" in m else ""
    return (f"Shipped model '{name}': {m['model']} ({m['parameters']:,} parameters), "
            f"{m['test_acc']:.2%} test accuracy{tta}; trained {m['epochs']} epochs with seed "
            f"{p['seed']} by `{p['command']}` on {p['machine']} ({p['date']}).")


def ship(run_dir, name: str = "fast", *, command: str, train_split, test_split, machine: str,
         cpu_id: dict | None = None, dest: Path = RUNS) -> Path:
    """Copy a finished run into ``dest/name`` with fp16 weights; re-measure its accuracy.

    ``train_split``, ``test_split``: CIFAR-10's (``CifarSplit``s). ``machine``: the CPU that
    trained the run, in words; ``cpu_id``: its vendor, family and model numbers
    (``bench.records.cpu_id``), which name its generation in tables. The accuracy (with and
    without the run's TTA) is measured in fp32 on the fp16-stored weights, so ``metrics.json``
    states what ships; the temperature is fitted on those weights too, on the run's validation
    split (``calibration.json``, ``calibrate_run``).
    """
    from .calibration import CALIBRATION, calibrate_run
    from .checkpoint import load_run
    from .data import split_validation, validation_size
    from .inference import loss_and_accuracy
    from .ood import OOD_JSON, OOD_TENSORS, fit_run
    # Read before anything is written: the shipped folder is tracked, so our own write would
    # read as an uncommitted change.
    version = code_version()
    src = resolve_checkpoint(run_dir)
    ckpt = load_checkpoint(src)
    fraction = ckpt["config"].get("val_fraction", 0)
    if not fraction:  # checked first, so a refused run leaves the shipped model as it was
        raise ValueError(f"{run_dir} trained on every training image (val_fraction=0): nothing "
                         f"is left to calibrate on; train with the default to ship it")
    for key in ("optimizer", "lookahead", "rng", "scaler"):  # resume state is not shipped
        ckpt.pop(key, None)
    ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    folder = Path(dest) / name
    atomic_write(folder / CHECKPOINT, lambda f: torch.save(ckpt, f))
    for stale in (CALIBRATION, OOD_JSON, OOD_TENSORS):  # fitted for the weights just replaced
        (folder / stale).unlink(missing_ok=True)
    lm = load_run(folder, "cpu")
    metrics = dict(read_json(src.parent / METRICS))
    if lm.tta_level:
        (metrics["test_loss_tta"], metrics["test_acc_tta"]), \
            (metrics["test_loss"], metrics["test_acc"]) = loss_and_accuracy(
                lm.model, test_split, lm.mean, lm.std, tta_level=lm.tta_level, with_plain=True)
    else:
        metrics["test_loss"], metrics["test_acc"] = loss_and_accuracy(lm.model, test_split,
                                                                      lm.mean, lm.std)
    metrics["weights"] = "fp16 (accuracy measured in fp32 on these weights)"
    write_json(folder / METRICS, metrics)
    write_json(folder / HISTORY, read_json(src.parent / HISTORY))
    write_json(folder / PROVENANCE, {
        "command": command, "seed": ckpt["config"].get("seed"), "recipe_config": ckpt["config"],
        "machine": machine, **({"cpu_id": cpu_id} if cpu_id else {}),
        "torch": torch.__version__, "cifar_lib": version,
        "date": datetime.date.today().isoformat()})
    validation = split_validation(train_split, validation_size(len(train_split), fraction))[1]
    # the shipped weights' own temperature, in calibration.json
    calibrate_run(lm, validation, test_split, write=True)
    fit_run(lm, train_split)  # its "none of these" detector, threshold on the validation split
    return folder
