"""Command line: ``python -m cifar_lib {train,evaluate,...} --help``.

Every subcommand lives in one ``_cmd_*`` function registered in ``COMMANDS``. Errors a user can
cause (the library's own exception classes in ``USER_ERRORS``) print one line on stderr and exit
with status 1; any other exception is a bug and shows its traceback. ``--debug`` shows the
traceback of every error.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from . import __version__
from .checkpoint import CheckpointError
from .config import ConfigError, add_override_args
from .course import NotebookFailed
from .data import DataError, add_data_args
from .device import DeviceError
from .errors import UsageError
from .export import FORMATS, ExportError
from .models import UnknownModelError
from .photos import METHODS, PHOTO_METHOD, ImageError
from .train import TrainingDiverged

# The library's errors that a user causes and can fix; each message names the fix. A missing
# file is one too (its message names the path). Anything else, a plain ValueError included,
# is a bug: its traceback is shown.
USER_ERRORS = (DataError, DeviceError, CheckpointError, ConfigError, UnknownModelError,
               ImageError, TrainingDiverged, NotebookFailed, ExportError, UsageError,
               FileNotFoundError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + traceback
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model and save a run folder",
                       description="Train a recipe on CIFAR-10; writes checkpoint.pt, "
                                   "history.json and metrics.json into --run-dir (a folder "
                                   "that already holds a run takes --resume or --overwrite).")
    p.add_argument("--recipe", default="fast",
                   help="'fast' (default), 'airbench94' (the published recipe it races), "
                        "'short' (for slow machines), 'tiny' (the original's accuracy in one "
                        "epoch), "
                        "'race64' (64%% as soon as possible) or 'original' (the original "
                        "notebook: SimpleCNN, Adam, 2 epochs)")
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
                   help="smoke test: one epoch on 2,048 training / 500 test images")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --run-dir from its last epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="train anew in a --run-dir that already holds a run, replacing it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_override_args(p, "FIELD=None sets None where the field takes it (crop_window=None: "
                         "crops cut out, not resized)")
    add_data_args(p)


def train_config(args):
    """The ``TrainConfig`` that ``train`` runs with parsed ``args``: the recipe, its options,
    then ``--set`` overrides (``recipes.configure_with``)."""
    from .recipes import configure_with
    options = dict(seed=args.seed, device=args.device, model=args.model, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, precision=args.precision,
                   train_subset=args.train_subset, test_subset=args.test_subset)
    return configure_with(args.recipe, args.overrides, quick=args.quick, **options)


def _cmd_train(args) -> int:
    from . import distributed
    from .data import load_cifar10
    from .train import fit
    from pathlib import Path
    from .checkpoint import CHECKPOINT
    cfg = train_config(args)
    if (Path(args.run_dir) / CHECKPOINT).is_file() and not (args.resume or args.overwrite):
        raise UsageError(f"{args.run_dir} already holds a run ({CHECKPOINT}): --resume continues "
                         f"an interrupted one, --overwrite trains a new one in its place, or "
                         f"choose another --run-dir")
    train, test = load_cifar10(args.data_root, download=args.download)
    result = fit(cfg, train, test, run_dir=args.run_dir, resume=args.resume,
                 progress=not args.no_progress)
    if distributed.is_main_process():
        m = result.metrics
        tta = f", with TTA {m['test_acc_tta']:.2%}" if "test_acc_tta" in m else ""
        print(f"test accuracy {m['test_acc']:.2%}{tta} after {m['epochs']} epochs "
              f"({m['train_seconds']:.0f} s training); run saved in {args.run_dir}")
        if cfg.val_fraction:  # a finished run comes calibrated, on the images it held out
            try:
                _calibrate(args.run_dir, cfg.val_fraction, train, test, device=cfg.device,
                           progress=not args.no_progress)
                _fit_detector(args.run_dir, train)
            except KeyboardInterrupt:
                print(f"Interrupted after training: the run is saved; calibrate it with "
                      f"python -m cifar_lib calibrate --run-dir {args.run_dir}", file=sys.stderr)
                raise
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
    p.add_argument("--uncalibrated", action="store_true",
                   help="plain softmax probabilities even where the run has a temperature "
                        "(NLL and ECE change, accuracy does not)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(p)


def _cmd_evaluate(args) -> int:
    from .calibration import describe_calibration
    from .checkpoint import load_run
    from .data import load_cifar10_test
    from .evaluation import evaluate_run
    # a missing run fails before the data load
    lm = load_run(args.run_dir, args.device, calibrated=not args.uncalibrated)
    test = load_cifar10_test(args.data_root, download=args.download)
    report = evaluate_run(lm, test.subset(args.test_subset), args.tta_level, write=False,
                          progress=not args.no_progress,
                          calibrated=not args.uncalibrated)
    print(json.dumps({"run": str(args.run_dir), "model": report.info["model"],
                      "tta_level": report.info["tta_level"], "test_images": report.n,
                      "test_acc": report.accuracy, "nll": report.nll, "ece": report.ece,
                      "temperature": report.info["temperature"],
                      "calibration": describe_calibration(lm, args.tta_level,
                                                          not args.uncalibrated)}))
    return 0


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a run's temperature so its probabilities are honest",
                       description="Temperature scaling: fit T and the 'not confident' "
                                   "threshold on the run's validation split (training images it "
                                   "held out), report NLL and ECE before/after on the test set, "
                                   "and write calibration.json into the run folder; predict and "
                                   "evaluate then use softmax(logits / T). Then fit the 'none of "
                                   "these' detector on the same images (ood.json). `train` does "
                                   "both itself at the end of a run.")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_args(p)


def _cmd_calibrate(args) -> int:
    from .checkpoint import load_run
    from .data import load_cifar10
    from .pretrained import is_shipped
    # a missing run fails before the data load; the calibration it replaces is not read
    lm = load_run(args.run_dir, args.device, calibrated=False)
    if lm.folder is not None and is_shipped(lm.folder):
        raise ConfigError(f"{lm.folder} ships inside cifar_lib, already calibrated; to calibrate "
                          f"it again, copy it first: cp -r {lm.folder} my_run && python -m "
                          f"cifar_lib calibrate --run-dir my_run")
    fraction = lm.config.get("val_fraction", 0)
    if not fraction:
        raise ConfigError(f"{args.run_dir} trained on every training image (val_fraction=0), "
                          f"so no image is left to calibrate on: train it again with the "
                          f"default val_fraction")
    train, test = load_cifar10(args.data_root, download=args.download)
    _calibrate(lm, fraction, train, test, device=args.device, progress=not args.no_progress)
    _fit_detector(args.run_dir, train)
    return 0


def _fit_detector(run_dir, train) -> None:
    """Fit the run's "none of these" detector on its validation split and say what it chose."""
    from .ood import fit_run
    d = fit_run(run_dir, train)
    print(f"'none of these' below {d.score} score {d.threshold:.4g}: chosen to keep "
          f"{d.tpr:.0%} of the validation images")


def _calibrate(run, val_fraction: float, train, test, *, device: str, progress: bool) -> None:
    """Calibrate ``run`` on the validation split it held out of ``train`` (``val_fraction``),
    measure it on ``test``, and print what was chosen."""
    from .calibration import calibrate_run
    from .data import split_validation, validation_size
    validation = split_validation(train, validation_size(len(train), val_fraction))[1]
    c = calibrate_run(run, validation, test, device=device, progress=progress)
    print(f"temperature T={c.temperature:.3f}, fitted on {c.fitted_on}, TTA level "
          f"{c.tta_level}")
    if c.report_images:
        print(f"on the {c.report_images:,} test images (accuracy {c.accuracy:.2%} either way): "
              f"ECE {c.ece_before:.2%} -> {c.ece_after:.2%}, NLL {c.nll_before:.4f} -> "
              f"{c.nll_after:.4f}")
    if c.threshold:
        t = c.threshold
        print(f"'not confident' below {t['threshold']:.2f}: on the validation split the "
              f"{t['coverage']:.1%} of predictions above it were right {t['accuracy']:.1%} of "
              f"the time (target {c.target_accuracy:.0%})"
              + (f"; on the test set {t['test_coverage']:.1%} and {t['test_accuracy']:.1%}"
                 if "test_coverage" in t else ""))
    else:
        print(f"no confidence threshold reaches {c.target_accuracy:.0%} accuracy: predict "
              f"uses 0.5")


def _add_bench(sub) -> None:
    from .bench import BENCHMARKS
    p = sub.add_parser("bench", help="benchmarks: " + ", ".join(BENCHMARKS),
                       description="Run a benchmark: it prints a markdown table and writes a "
                                   "JSON record (numbers, command, machine, versions, date).")
    names = p.add_subparsers(dest="benchmark", required=True, parser_class=_Parser)
    for name, module in BENCHMARKS.items():
        b = names.add_parser(name, help=module.__doc__.strip().splitlines()[0].replace("%", "%%"),
                             description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(b)
        if b.get_default("out") is not None:
            b.set_defaults(out=_DefaultOut(b.get_default("out")))


class _DefaultOut(str):
    """A benchmark's --out default as parsed, told apart from the same path typed."""


def _cmd_bench(args) -> int:
    from .bench import BENCHMARKS, SMOKE_DIR
    smoke = getattr(args, "quick", False) or getattr(args, "limit", None)
    out = vars(args).get("out", "")
    redirected = smoke and (out is None or isinstance(out, _DefaultOut))
    if redirected:  # a smoke test measures nothing worth keeping: never over the committed record
        args.out = f"{SMOKE_DIR}/{args.benchmark}.json"
    status = BENCHMARKS[args.benchmark].main(args)
    if redirected and status == 0:
        print(f"a smoke test: its record is {args.out} (--out FILE.json to choose)",
              file=sys.stderr)
    return status


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify your own photos with a saved run",
                       description="Print the top-k CIFAR-10 classes for each image. A file "
                                   "that cannot be read gets a one-line error; the others are "
                                   "still classified, and the exit status is 1.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--threshold", type=float, default=None,
                   help="below this top probability the answer is marked 'not confident' "
                        "(default: the run's calibrated threshold, chosen to keep 99%% accuracy "
                        "on its validation split; 0.5 for an uncalibrated run)")
    p.add_argument("--method", choices=list(METHODS), default=PHOTO_METHOD,
                   help=f"how a photo becomes 32×32: {', '.join(METHODS)} (default "
                        f"{PHOTO_METHOD}, the original notebook's way; multi_crop averages "
                        f"six crops)")
    p.add_argument("--device", default="auto",
                   help="auto (default: CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--uncalibrated", action="store_true",
                   help="plain softmax probabilities even where the run has a temperature")


def _cmd_predict(args) -> int:
    from .calibration import describe_calibration
    from .checkpoint import load_run
    from .photos import predict
    lm = load_run(args.run_dir, args.device, calibrated=not args.uncalibrated)
    print(describe_calibration(lm, calibrated=not args.uncalibrated))
    threshold = (lm.confidence_threshold(not args.uncalibrated) if args.threshold is None
                 else args.threshold)
    print(f"'not confident' below a top probability of {threshold:.2f}")
    results = predict(lm, args.images, top_k=args.top_k, threshold=threshold,
                      method=args.method, errors="report", calibrated=not args.uncalibrated)
    for path, r in zip(args.images, results):
        if r.error:
            print(f"error: {r.error}", file=sys.stderr)
        else:
            print(f"{path}: {r.summary()}")
    return 1 if any(r.error for r in results) else 0


def _add_ship(sub) -> None:
    p = sub.add_parser("ship", help="package a finished run as the model shipped with cifar_lib",
                       description="Copy a finished run into cifar_lib/pretrained_runs/NAME with "
                                   "fp16 weights, re-measure its test accuracy on those weights "
                                   "and record the command that trained it (maintainers).")
    p.add_argument("--run-dir", required=True, help="the finished run folder")
    p.add_argument("--name", default="fast", help="name of the shipped run (default fast)")
    p.add_argument("--trained-by", required=True, metavar="COMMAND",
                   help="the exact command that trained the run, for provenance.json")
    add_data_args(p)


def _cmd_ship(args) -> int:
    from .bench.records import cpu_id
    from .data import load_cifar10
    from .device import cpu_has_native_bf16, cpu_model
    from .pretrained import describe, ship
    train, test = load_cifar10(args.data_root, download=args.download)
    # the CPU that trained the run is this one; its thread count is not recorded in the run
    machine = f"{cpu_model()} ({'native bf16' if cpu_has_native_bf16() else 'no native bf16'})"
    folder = ship(args.run_dir, args.name, command=args.trained_by, train_split=train,
                  test_split=test, machine=machine, cpu_id=cpu_id())
    print(f"shipped in {folder}\n{describe(args.name)}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="save a run as one file that runs without cifar_lib",
                       description="Export a run's model, with its normalisation inside, as a "
                                   "torch.export program (.pt2, the default) or ONNX (.onnx, "
                                   "needs the export extra). It takes float32 RGB images in "
                                   "[0, 1], N×3×32×32, and returns logits N×10; the class names "
                                   "are saved with it.")
    p.add_argument("--run-dir", required=True, help="run folder (or checkpoint file) to export")
    p.add_argument("--out", required=True, help="the file to write, e.g. fast.pt2 or fast.onnx")
    p.add_argument("--format", choices=FORMATS,
                   help="pt2 (torch.export.save) or onnx (torch.onnx.export); default: from "
                        "the --out suffix")


def _cmd_export(args) -> int:
    from .export import export_run, format_of, read_metadata
    out = export_run(args.run_dir, args.out, format_of(args.out, args.format))
    classes = read_metadata(out)["classes"]
    print(f"exported {args.run_dir} to {out} ({out.stat().st_size / 1e6:.1f} MB): float32 "
          f"N×3×32×32 images in [0, 1] → logits N×{len(classes)} ({', '.join(classes)})")
    return 0


def _add_course(command: str, help: str):
    def add(sub) -> None:
        from . import course
        p = sub.add_parser(command, help=help, description=f"{help[0].upper()}{help[1:]}. "
                           "Needs the course extra (papermill) and a checkout of the course "
                           "(the notebooks are not part of the installed package).")
        course.add_arguments(p, "run" if command == "run-notebooks" else "sweep")
    return add


def _cmd_course(args) -> int:
    from . import course
    return course.main(args)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="classify photos in the browser (needs gradio)",
                       description="Start a Gradio app: drop, paste or take a photo and see its "
                                   "preprocessing, top-3 probabilities, 'none of these' verdict "
                                   "and Grad-CAM. Stop it with Ctrl-C.")
    p.add_argument("--run-dir", default=None,
                   help="run folder (default: the fast model shipped with cifar_lib)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 up)")
    p.add_argument("--share", action="store_true", help="also a public gradio.live link")


def _cmd_demo(args) -> int:
    from .demo import DemoUnavailable, launch
    try:
        launch(args.run_dir, server_name=args.host, server_port=args.port, share=args.share)
    except DemoUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"train": (_add_train, _cmd_train), "evaluate": (_add_evaluate, _cmd_evaluate),
            "bench": (_add_bench, _cmd_bench), "predict": (_add_predict, _cmd_predict),
            "ship": (_add_ship, _cmd_ship), "calibrate": (_add_calibrate, _cmd_calibrate),
            "export": (_add_export, _cmd_export),
            "demo": (_add_demo, _cmd_demo),
            "run-notebooks": (_add_course("run-notebooks", "run the course notebooks in order "
                                          "with papermill, headlessly"), _cmd_course),
            "sweep": (_add_course("sweep", "run one notebook over a grid of parameters with "
                                  "papermill and collect the results"), _cmd_course)}


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``parser`` and every subcommand below it, so that it may come before or
    after the command (SUPPRESS: a subcommand keeps what was given before it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the full traceback of any error, not one line")
                _add_debug(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cifar_lib",
                     description="Train, evaluate and use CIFAR-10 classifiers.")
    parser.add_argument("--version", action="version", version=f"cifar_lib {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error, not one line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    _add_debug(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    # How this command was typed, for benchmark records (not sys.argv: main() may be called
    # from Python with its own list).
    args.command_line = "python -m cifar_lib " + shlex.join(map(str, argv))
    try:
        return COMMANDS[args.command][1](args)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
