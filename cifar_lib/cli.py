"""Command line: ``python -m cifar_lib {train,evaluate,...} --help``.

Every subcommand lives in one ``_cmd_*`` function registered in ``COMMANDS``; errors a user can
cause print one line on stderr and exit non-zero, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from .checkpoint import CheckpointError
from .data import DataError
from .device import DeviceError
from .models import UnknownModelError
from .train import TrainingDiverged

USER_ERRORS = (DataError, DeviceError, CheckpointError, UnknownModelError, TrainingDiverged,
               ValueError, FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="folder containing cifar-10-batches-py (default: $CIFAR10_ROOT, "
                        "else ~/.cache/cifar_lib/data)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 with torchvision if it is missing (needs internet)")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model and save a run folder",
                       description="Train a recipe on CIFAR-10; writes checkpoint.pt, "
                                   "history.json and metrics.json into --run-dir.")
    p.add_argument("--recipe", default="fast", help="'fast' (airbench-style, default) or "
                   "'seed' (the original notebook: SimpleCNN, Adam, 2 epochs)")
    p.add_argument("--run-dir", default="runs/default", help="output folder (default: runs/default)")
    p.add_argument("--model", help="override the recipe's model (simple_cnn, airbench)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--batch-size", type=int, help="override the batch size (per process)")
    p.add_argument("--lr", type=float, help="override the peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed for everything (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--precision", choices=["auto", "gpu", "bf16", "fp16", "fp32"],
                   help="override the recipe's autocast precision: auto (mixed on GPUs and on "
                        "CPUs with native bf16), gpu (mixed on GPUs only), or one dtype")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--test-subset", type=int, help="use only the first N test images")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: one epoch on 2,048 training / 1,000 test images")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --run-dir from its last epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_args(p)


def _cmd_train(args) -> int:
    from .data import load_cifar10
    from .recipes import get_recipe, quick
    from .train import fit
    overrides = {k: v for k, v in dict(model=args.model, epochs=args.epochs,
                                       batch_size=args.batch_size, lr=args.lr,
                                       precision=args.precision, train_subset=args.train_subset,
                                       test_subset=args.test_subset).items() if v is not None}
    if "model" in overrides and overrides["model"] != get_recipe(args.recipe).model:
        overrides.setdefault("model_kwargs", {})
    cfg = get_recipe(args.recipe, seed=args.seed, device=args.device)
    cfg = (quick(cfg) if args.quick else cfg).replace(**overrides)
    train, test = load_cifar10(args.data_root, download=args.download)
    result = fit(cfg, train, test, run_dir=args.run_dir, resume=args.resume,
                 progress=not args.no_progress)
    from . import distributed
    if distributed.is_main_process():
        m = result.metrics
        tta = f", with TTA {m['test_acc_tta']:.2%}" if "test_acc_tta" in m else ""
        print(f"test accuracy {m['test_acc']:.2%}{tta} after {m['epochs']} epochs "
              f"({m['train_seconds']:.0f} s training); run saved in {args.run_dir}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a saved run",
                       description="Evaluate a run folder's checkpoint on the CIFAR-10 test set "
                                   "and print the results as JSON.")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file) to evaluate")
    p.add_argument("--tta-level", type=int, choices=[0, 1, 2],
                   help="test-time augmentation (default: the run's own setting)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--test-subset", type=int, help="evaluate only the first N test images")
    _add_data_args(p)


def _cmd_evaluate(args) -> int:
    from .checkpoint import load_model
    from .data import load_cifar10
    from .device import select_device
    from .inference import accuracy, predict_logits
    model, ckpt = load_model(args.run_dir, select_device(args.device))
    _, test = load_cifar10(args.data_root, download=args.download)
    test = test.subset(args.test_subset)
    tta = args.tta_level if args.tta_level is not None else ckpt["config"].get("tta_level", 0)
    logits = predict_logits(model, test.images, ckpt["mean"], ckpt["std"], tta_level=tta)
    print(json.dumps({"run": str(args.run_dir), "model": ckpt["model"], "tta_level": tta,
                      "test_images": len(test), "test_acc": accuracy(logits, test.labels)}))
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="inference speed of a saved run (CPU and GPU)",
                       description="Measure inference throughput and latency per batch size "
                                   "(warm-up, torch.utils.benchmark, median and IQR), beside the "
                                   "seed's single-call timing; writes a JSON record and prints "
                                   "a markdown table.")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file)")
    p.add_argument("--batch-sizes",
                   help="comma-separated, e.g. 1,8,32,128,512,1024 (the default)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                   help="auto: CPU and GPU (GPU rows say when there is none); default auto")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (slow to compile on a CPU)")
    p.add_argument("--min-run-time", type=float, help="seconds of timing per row (default 0.3)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's, usually the cores)")
    p.add_argument("--out", help="JSON file to write (default: RUN_DIR/bench_inference.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: batch sizes 1,32,256 and short timings")


def _cmd_bench(args) -> int:
    from pathlib import Path

    from .bench_inference import benchmark_run, markdown_table, parse_batch_sizes, write_record
    from .checkpoint import resolve_checkpoint
    kwargs = {"device": args.device, "compile": args.compile}
    if args.batch_sizes:
        kwargs["batch_sizes"] = parse_batch_sizes(args.batch_sizes)
    if args.min_run_time is not None:
        kwargs["min_run_time"] = args.min_run_time
    if args.threads is not None:
        kwargs["threads"] = args.threads
    rows, model_info = benchmark_run(args.run_dir, quick=args.quick,
                                     log=lambda s: print(s, file=sys.stderr), **kwargs)
    run_folder = resolve_checkpoint(args.run_dir).parent
    out = Path(args.out) if args.out else run_folder / "bench_inference.json"
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    # The command as parsed (sys.argv is someone else's when main() is called from Python).
    command = ["python -m cifar_lib bench --run-dir", str(args.run_dir), "--device", args.device]
    for flag in ("batch_sizes", "min_run_time", "threads", "out"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    command += [f"--{flag}" for flag in ("compile", "quick") if getattr(args, flag)]
    write_record(out, rows, command=" ".join(command), settings=settings, model=model_info)
    print(markdown_table(rows))
    print(f"\nrecord written to {out}")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify your own photos with a saved run",
                       description="Print the top-k CIFAR-10 classes for each image. A file "
                                   "that cannot be read gets a one-line error; the others are "
                                   "still classified, and the exit status is 1.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="below this top probability the answer is marked 'not confident' "
                        "(default 0.5)")
    p.add_argument("--method", choices=["center_crop", "squash"], default="center_crop",
                   help="how a photo becomes 32×32 (default center_crop)")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or mps")


def _cmd_predict(args) -> int:
    from .predict import predict
    results = predict(args.run_dir, args.images, top_k=args.top_k, threshold=args.threshold,
                      method=args.method, device=args.device, errors="report")
    for path, r in zip(args.images, results):
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            print(f"{path}: {r.summary()}")
    return 1 if any(r.error for r in results) else 0


COMMANDS = {"train": (_add_train, _cmd_train), "evaluate": (_add_evaluate, _cmd_evaluate),
            "bench": (_add_bench, _cmd_bench), "predict": (_add_predict, _cmd_predict)}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cifar_lib",
                     description="Train, evaluate and use CIFAR-10 classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
