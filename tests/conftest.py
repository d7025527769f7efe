"""Shared fixtures: small synthetic CIFAR folders in the real format, and the real data."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cifar_lib.data import FOLDER, TEST_FILES, TRAIN_FILES, DataError, load_cifar10, write_batch

# Under pytest-xdist (`make test` runs one worker per core) each worker gets its share of the
# cores, for torch here and, through OMP_NUM_THREADS, for the kernels and commands it starts:
# threads beyond the cores wait for each other and make every step many times slower.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _SHARE = max(1, (os.cpu_count() or 1) // _WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(_SHARE)
    torch.set_num_threads(_SHARE)


def make_cifar_folder(root, n_per_batch: int = 40, seed: int = 0):
    """Write a tiny CIFAR-10 (5 train batches + test batch + meta) under root/cifar-10-batches-py.

    Images are a learnable toy: each class is a distinct mean colour plus noise.
    """
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    colours = rng.integers(30, 225, size=(10, 3))
    for name in TRAIN_FILES + TEST_FILES:
        labels = rng.integers(0, 10, size=n_per_batch)
        noise = rng.normal(0, 20, size=(n_per_batch, 3, 32, 32))
        images = np.clip(colours[labels][:, :, None, None] + noise, 0, 255).astype(np.uint8)
        write_batch(folder / name, images, labels)
    return root


@pytest.fixture(scope="session")
def cifar_folder():
    """``make_cifar_folder`` for tests that need a folder of their own size or scope."""
    return make_cifar_folder


@pytest.fixture
def synthetic_root(tmp_path):
    return make_cifar_folder(tmp_path)


def real_data_or_skip():
    """(train, test) of the real CIFAR-10 from $CIFAR10_ROOT. Where it is absent the test is
    skipped on a laptop, but fails under CI (CI=true), which always has the data: a silent
    skip there would hide that nothing was checked."""
    try:
        return load_cifar10()
    except DataError as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the real CIFAR-10 is missing: {e}")
        pytest.skip(f"real CIFAR-10 not available: {e}")


@pytest.fixture(scope="session")
def cifar10():
    """(train, test) of the real CIFAR-10 (see ``real_data_or_skip``)."""
    return real_data_or_skip()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for the rest of a module. Tensors this small gain nothing from
    threads, and on a busy 2-core machine OpenMP threads that wait for each other can make a
    step many times slower; torchrun's workers run on one thread too (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
