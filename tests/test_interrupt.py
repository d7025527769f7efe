"""A training process killed with SIGKILL at any moment leaves a loadable checkpoint, and
``--resume`` continues from it to the same final weights as an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_lib.checkpoint import load_checkpoint
from cifar_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "workers" / "pausing_checkpoint_train.py"
EPOCHS = 3  # checkpoint writes: 1, 2, 3 after each epoch, 4 the final (finished) one


def _train_args(root, run_dir, *extra):
    return ["train", "--recipe", "original", "--epochs", str(EPOCHS), "--batch-size", "32",
            "--device", "cpu", "--no-progress", "--data-root", str(root), "--run-dir",
            str(run_dir), *extra]


def _kill_when(line_wanted: str, args, timeout: float = 120) -> list[str]:
    """Run the pausing worker and SIGKILL it as soon as it prints ``line_wanted``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line.strip())
            if line.strip() == line_wanted:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout)
    assert line_wanted in seen, f"the worker ended before {line_wanted!r}: {seen}"
    assert proc.returncode == -signal.SIGKILL
    return seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cifar_folder):
    """An uninterrupted run: its folder and final weights."""
    base = tmp_path_factory.mktemp("sigkill")
    root = cifar_folder(base / "data")
    assert main(_train_args(root, base / "full")) == 0
    return root, base, load_checkpoint(base / "full")["state_dict"]


# (killed when the worker prints, epoch of the checkpoint left behind)
MOMENTS = [("WRITING 2", 1),   # half of epoch 2's checkpoint written: epoch 1's must survive
           ("SAVED 2", 2),     # between two writes, while epoch 3 trains
           ("WRITING 4", 3)]   # during the final write, after the last epoch


@pytest.mark.parametrize("moment, epoch_left", MOMENTS, ids=[m for m, _ in MOMENTS])
def test_sigkill_at_any_moment_leaves_a_checkpoint_that_resumes_to_the_same_weights(
        reference, moment, epoch_left, capsys):
    root, base, final = reference
    run = base / moment.replace(" ", "_")
    _kill_when(moment, _train_args(root, run))
    ckpt = load_checkpoint(run)  # loadable, never half-written
    assert ckpt["epoch"] == epoch_left and "optimizer" in ckpt
    assert main(_train_args(root, run, "--resume")) == 0
    resumed = load_checkpoint(run)["state_dict"]
    assert resumed.keys() == final.keys()
    assert all(torch.equal(resumed[k], final[k]) for k in final)
    # the temporary file the killed write left behind is cleaned up by the next write
    assert not list(run.glob(".checkpoint.pt.*.tmp"))
