"""CIFAR-10 from its batch files into memory as uint8 tensors.

The files are read directly (not through ``torchvision.datasets.CIFAR10``), with a restricted
unpickler: a batch file is a pickle, and a pickle can run arbitrary code when loaded, so only the
few globals that a genuine CIFAR batch needs are admitted.
"""
from __future__ import annotations

import numbers
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UsageError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
ENV_VAR = "CIFAR10_ROOT"
DEFAULT_ROOT = Path.home() / ".cache" / "cifar_lib" / "data"


class DataError(RuntimeError):
    """The CIFAR-10 files are missing or unreadable; the message says what to do."""


@dataclass
class CifarSplit:
    """One split held in memory.

    images: uint8 tensor N×3×32×32 (RGB); labels: int64 tensor N; classes: the ten names.
    """
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None) -> "CifarSplit":
        """The first ``n`` examples (all when ``n`` is None): quick runs and tests."""
        if n is not None and not (isinstance(n, numbers.Integral) and not isinstance(n, bool)
                                  and n >= 1):
            raise UsageError(f"the number of examples to use must be None (all) or a whole "
                             f"number ≥ 1, got {n!r}")
        if n is None or n >= len(self):
            return self
        return CifarSplit(self.images[:n], self.labels[:n], self.classes)


# Held out from the training images to choose things on (temperature, confidence threshold,
# TTA policy, photo preprocessing), so that the test images measure and choose nothing. The
# same images for every run and seed: a fixed generator, not the run's seed.
VALIDATION_SIZE = 5_000
_VALIDATION_SEED = 20_240_601


def validation_size(n_train: int, fraction: float) -> int:
    """How many of ``n_train`` training images a validation ``fraction`` holds out."""
    return round(n_train * fraction)


def split_validation(train: CifarSplit, size: int = VALIDATION_SIZE
                     ) -> tuple[CifarSplit, CifarSplit]:
    """(rest, validation): ``size`` images held out of ``train``, the same share of each class.

    Deterministic: the same ``train`` and ``size`` give the same split whatever the run's seed.
    Both parts keep the original order of their images. ``size=0`` gives (train, empty split).
    """
    if size < 0 or size >= len(train):
        raise ValueError(f"validation size must be in [0, {len(train)}), got {size}")
    g = torch.Generator().manual_seed(_VALIDATION_SEED)
    n_classes = len(train.classes)
    held = torch.zeros(len(train), dtype=torch.bool)
    for c in range(n_classes):  # size/10 of each class (the remainder to the first classes)
        idx = (train.labels == c).nonzero().flatten()
        take = min(len(idx), size // n_classes + (c < size % n_classes))
        held[idx[torch.randperm(len(idx), generator=g)[:take]]] = True
    return (CifarSplit(train.images[~held], train.labels[~held], train.classes),
            CifarSplit(train.images[held], train.labels[held], train.classes))


def class_counts(split: CifarSplit) -> dict[str, int]:
    """Images per class, by name."""
    counts = torch.bincount(split.labels, minlength=len(split.classes)).tolist()
    return dict(zip(split.classes, counts))


# Exactly what numpy arrays inside a CIFAR pickle need (numpy 1.x and 2.x spellings).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: not something a CIFAR-10 batch contains")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    """Unpickle one batch file safely; any failure names the file."""
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, corrupt, or a pickle carrying foreign objects
        raise DataError(f"{path} is not a valid CIFAR-10 batch file ({e}); "
                        f"delete the folder and download it again") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a valid CIFAR-10 batch file (not a dict)")
    return batch


def _decode(path: Path, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """Batch dict → (uint8 N×3×32×32, int64 N), checking shapes and label range."""
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be an N×3072 array, got "
                        f"{getattr(data, 'shape', type(data).__name__)}")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels out of range 0–9 "
                        f"(found {labels.min()}…{labels.max()})")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), labels


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else $CIFAR10_ROOT, else ``DEFAULT_ROOT``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return DEFAULT_ROOT


def _load_split(folder: Path, files: tuple[str, ...]) -> CifarSplit:
    images, labels = [], []
    for name in files:
        x, y = _decode(folder / name, _read_batch(folder / name))
        images.append(x)
        labels.append(y)
    return CifarSplit(torch.from_numpy(np.concatenate(images)),
                      torch.from_numpy(np.concatenate(labels)))


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR10  # only needed for the download itself
    try:
        for train in (True, False):
            CIFAR10(root=str(root), train=train, download=True)
    except (OSError, RuntimeError) as e:  # no connection, a refused or damaged download
        raise DataError(
            f"could not download CIFAR-10 into {root} ({e}): check the connection, or unpack "
            f"cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there "
            f"yourself, so that {root / FOLDER} exists") from e


def add_data_args(parser) -> None:
    """``--data-root`` and ``--download`` for a command that reads CIFAR-10 (argparse)."""
    parser.add_argument("--data-root", default=None,
                        help=f"folder containing {FOLDER} (default: ${ENV_VAR}, else "
                             f"~/.cache/cifar_lib/data)")
    parser.add_argument("--download", action="store_true",
                        help="download CIFAR-10 with torchvision if it is missing (needs internet)")


def load_cifar10(root: str | os.PathLike | None = None,
                 download: bool = False) -> tuple[CifarSplit, CifarSplit]:
    """Load (train, test): 50,000 and 10,000 images as uint8 N×3×32×32 tensors, labels int64 N.

    ``root`` is the folder that contains ``cifar-10-batches-py`` (as in torchvision); None:
    ``$CIFAR10_ROOT``, else ``~/.cache/cifar_lib/data``. ``download``: fetch what is missing
    with torchvision. A missing or damaged file raises ``DataError`` naming the fix.
    """
    folder = _data_folder(root, download, TRAIN_FILES + TEST_FILES)
    return _load_split(folder, TRAIN_FILES), _load_split(folder, TEST_FILES)


def load_cifar10_test(root: str | os.PathLike | None = None,
                      download: bool = False) -> CifarSplit:
    """The 10,000 test images alone (``load_cifar10``'s second split), for work that reads no
    training image: a missing or damaged training file does not stop it."""
    return _load_split(_data_folder(root, download, TEST_FILES), TEST_FILES)


def _data_folder(root, download: bool, files: tuple[str, ...]) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` once it holds ``files``."""
    root = resolve_root(root)
    folder = root / FOLDER
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and download:
        _download(root)
        missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 not found: looked in {folder} (missing {', '.join(missing)}). "
            f"Pass root=<folder containing {FOLDER}> (command line: --data-root; a lesson's "
            f"parameter: data_root), set {ENV_VAR}, or use download=True (--download; "
            f"download) where there is internet.")
    return folder


def write_batch(path: str | os.PathLike, images: np.ndarray, labels) -> None:
    """Write images (uint8 N×3×32×32) and labels in the official batch-file format.

    Used by the tests to make small synthetic data sets; handy for custom data too.
    """
    images = np.asarray(images, dtype=np.uint8)
    batch = {"batch_label": "synthetic", "labels": [int(v) for v in labels],
             "data": images.reshape(len(images), 3072),
             "filenames": [f"{i}.png" for i in range(len(images))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)
