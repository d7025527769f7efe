"""Data-parallel training: 2 CPU processes with Gloo under torchrun, against one process."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from cifar_lib import distributed
from cifar_lib.checkpoint import load_checkpoint, load_model, load_weights, save_checkpoint
from cifar_lib.data import CifarSplit, load_cifar10
from cifar_lib.device import DeviceError
from cifar_lib.inference import accuracy, predict_logits
from cifar_lib.batches import BatchIterator
from cifar_lib.models import build_model
from cifar_lib.recipes import configure
from cifar_lib.train import fit

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with Gloo is not available")

REPO = Path(__file__).resolve().parents[1]
# A narrow net and a small-batch learning rate; the whitening bias freezes after epoch 1 (DDP
# must then be re-wrapped). airbench94's lookahead averages every 5 steps, i.e. once per epoch
# here; the fast recipe's Muon orthogonalises the synchronised gradients on each rank, and its
# first epoch of 3 is on crops (each rank its share of the draws).
# eval_every=0: the final evaluation gives the plain and the TTA accuracy from one pass
TINY = dict(epochs=3, whiten_bias_epochs=1, device="cpu", precision="fp32", lr=0.4,
            model_kwargs={"widths": (16, 32, 32)}, eval_every=0)

WORKERS = Path(__file__).resolve().parent / "workers"  # recipe_worker.py, failing_worker.py


class Torchrun:
    """``torchrun --standalone --nproc-per-node=2 args``, started now, in the background."""

    def __init__(self, args, log_dir: Path, env=None):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               *map(str, args)]
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        paths = [str(REPO), *filter(None, [full_env.get("PYTHONPATH")])]
        full_env.update(PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1", **(env or {}))
        log_dir.mkdir(parents=True)
        self.out, self.err = log_dir / "stdout", log_dir / "stderr"  # files: pipes could fill up
        with open(self.out, "w") as out, open(self.err, "w") as err:
            # Own session, so a hung job can be killed with all its workers.
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=err,
                                         start_new_session=True)
        self.t0, self.t1 = time.monotonic(), None
        self.waiter = threading.Thread(target=self._note_end, daemon=True)
        self.waiter.start()

    def _note_end(self):
        self.proc.wait()
        self.t1 = time.monotonic()  # when it ended, not when a test got round to asking

    def wait(self, timeout: float = 150):
        """(returncode, stdout, stderr, seconds it ran), or fail if still running at ``timeout``."""
        self.waiter.join(max(0.0, timeout - (time.monotonic() - self.t0)))
        if self.t1 is None:
            self.kill()
            pytest.fail(f"torchrun still running after {timeout} s (hung?)\n"
                        f"{self.err.read_text()[-3000:]}")
        return (self.proc.returncode, self.out.read_text(), self.err.read_text(),
                self.t1 - self.t0)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()




@pytest.fixture(scope="module")
def root(tmp_path_factory, cifar_folder):
    # 320 training images: 5 global batches of 64 per epoch; 64 test images.
    return cifar_folder(tmp_path_factory.mktemp("ddp"), n_per_batch=64)


@pytest.fixture(scope="module")
def jobs(root, tmp_path_factory):
    """Every torchrun job of this module, started at once: much of each is start-up (imports,
    rendezvous, a timeout), which overlaps. Each test waits for its own."""
    d = tmp_path_factory.mktemp("jobs")
    failing = [WORKERS / "failing_worker.py", "train", "--recipe", "original", "--device", "cpu",
               "--no-progress", "--data-root", root, "--run-dir"]
    specs = {
        "seed": (["-m", "cifar_lib", "train", "--recipe", "original", "--batch-size", 32, "--device",
                  "cpu", "--test-subset", 63, "--no-progress", "--data-root", root, "--run-dir",
                  d / "seed"], {}),
        **{recipe: ([WORKERS / "recipe_worker.py", root, d / recipe, recipe, repr(TINY)], {})
           for recipe in ("fast", "airbench94")},
        # epochs 2 and 3 on the half of the images with the highest loss, chosen alike on both
        # ranks from both ranks' losses
        "fast_hardest": ([WORKERS / "recipe_worker.py", root, d / "fast_hardest", "fast",
                          repr({**TINY, "hardest_fraction": 0.5, "hardest_from_epoch": 1})], {}),
        "bad_root": (["-m", "cifar_lib", "train", "--device", "cpu", "--data-root", d / "none",
                      "--run-dir", d / "bad"], {}),
        "crash": ([*failing, d / "crash"], {"TEST_FAILURE": "crash"}),
        # rank 0 gives up waiting for the stuck rank after 15 s. (The timeout covers joining the
        # process group too: 2 s was too short for both ranks to join on a loaded 2-core machine.)
        "hang": ([*failing, d / "hang"], {"TEST_FAILURE": "hang", distributed.TIMEOUT_ENV: "15"}),
    }
    started = {name: Torchrun(args, d / "logs" / name, env) for name, (args, env) in specs.items()}
    yield d, started
    for job in started.values():  # whatever a failed test left running
        job.kill()


def _close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=lambda m: f"{k}: {m}", **tol)


def test_shards_of_a_global_batch_are_the_single_process_batch():
    images = torch.randint(0, 256, (203, 3, 32, 32), dtype=torch.uint8)
    split = CifarSplit(images, torch.arange(203) % 10)
    kw = dict(shuffle=True, flip="random", translate=2, drop_last=True, seed=5)
    single = BatchIterator(split, 64, **kw)
    ranks = [BatchIterator(split, 32, shard=(r, 2), **kw) for r in range(2)]
    for epoch in range(2):
        for it in (single, *ranks):
            it.epoch = epoch
        one, parts = list(single), list(zip(*(list(it) for it in ranks)))
        assert len(one) == len(parts) == 203 // 64
        for (x, y), ((x0, y0), (x1, y1)) in zip(one, parts):
            # the same images, flips and shifts: rank r holds positions r, r + 2, ...
            assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
            assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_data_parallel_original_recipe_equals_one_process_with_the_global_batch(root, jobs,
                                                                           one_thread):
    # python -m torch.distributed.run --standalone --nproc-per-node=2 -m cifar_lib train
    #     --recipe seed --batch-size 32 --device cpu --test-subset 63 ...
    d, started = jobs
    run = d / "seed"
    rc, out, err, _ = started["seed"].wait()
    assert rc == 0, err[-3000:]
    assert out.count("test accuracy") == 1  # rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["test_images"] == 63

    # The checkpoint loads into a plain single-process model ...
    model, _ = load_model(run)
    train, test = load_cifar10(root)
    test = test.subset(63)
    # ... and the reported accuracy is over the whole (odd-sized) test set, not one shard.
    assert metrics["test_acc"] == pytest.approx(
        accuracy(predict_logits(model, test.images, (0.5,) * 3, (0.5,) * 3), test.labels))

    # No BatchNorm: DDP's mean of two batch-32 gradients is the batch-64 gradient, so the
    # weights match one process with batch 64 up to float rounding. Adam turns rounding noise in
    # a near-zero gradient into a whole lr-sized step, so a few weights in a thousand differ by
    # ~1e-3; hence: almost all weights equal, and all close norm-wise. (Measured: ≥ 99.7% and
    # 4e-4 here; other batches or another seed give ≤ 32% and ≥ 0.2.)
    single = fit(configure("original", batch_size=64, device="cpu", test_subset=63), train, test,
                 progress=False)
    a, b = model.state_dict(), single.model.state_dict()
    for k in a:
        assert torch.isclose(a[k], b[k], rtol=1e-3, atol=1e-5).float().mean() >= 0.99, k
        assert (a[k] - b[k]).norm() <= 1e-2 * b[k].norm(), k
    assert metrics["test_acc"] == pytest.approx(single.metrics["test_acc"], abs=2 / 63)


@pytest.mark.parametrize("recipe", ["fast", "airbench94"])
def test_data_parallel_recipe_keeps_ranks_in_sync(root, jobs, one_thread, recipe):
    d, started = jobs
    run = d / recipe
    rc, out, err, _ = started[recipe].wait()
    assert rc == 0, err[-3000:]
    # Muon or lookahead, whitening-bias freezing and BatchNorm buffers leave both ranks
    # identical, and identical to the checkpoint rank 0 wrote.
    rank0, rank1 = (torch.load(run / f"rank{r}.pt") for r in range(2))
    _close(rank0, rank1, rtol=0, atol=0)
    model, _ = load_model(run)
    _close(model.state_dict(), rank0, rtol=0, atol=0)
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # both accuracies are the whole test set's, as one process evaluates the checkpoint
    cfg, test = configure(recipe, **TINY), load_cifar10(root)[1]
    metrics = json.loads((run / "metrics.json").read_text())
    for level, key in ((0, "test_acc"), (cfg.tta_level, "test_acc_tta")):
        logits = predict_logits(model, test.images, cfg.mean, cfg.std, tta_level=level,
                                tta_fraction=cfg.tta_fraction)
        assert metrics[key] == pytest.approx(accuracy(logits, test.labels)), key

    # BatchNorm normalises each process's 32 images, not all 64: close to, not equal to, one
    # process with batch 64. On this toy data both should learn it about equally well.
    single = fit(configure(recipe, batch_size=64, **TINY), *load_cifar10(root),
                 progress=False)
    ddp_acc = json.loads((run / "metrics.json").read_text())["test_acc"]
    assert ddp_acc > 0.5 and abs(ddp_acc - single.metrics["test_acc"]) <= 0.15


def test_data_parallel_training_on_the_hardest_images_keeps_ranks_in_sync(jobs):
    d, started = jobs
    run = d / "fast_hardest"
    rc, out, err, _ = started["fast_hardest"].wait()
    assert rc == 0, err[-3000:]
    rank0, rank1 = (torch.load(run / f"rank{r}.pt") for r in range(2))
    _close(rank0, rank1, rtol=0, atol=0)
    kept0, kept1 = (torch.load(run / f"kept{r}.pt") for r in range(2))
    assert len(kept0) == 2 and all(torch.equal(a, b) for a, b in zip(kept0, kept1))
    n = json.loads((run / "metrics.json").read_text())["train_images"]
    per_rank = lambda images: images // 2 // 32 * 32  # whole batches of 32 on each rank
    history = json.loads((run / "history.json").read_text())
    assert [h["images"] for h in history] == [2 * per_rank(n), *[2 * per_rank(n // 2)] * 2]


def test_a_bad_argument_on_every_rank_fails_fast_with_the_one_line_error(jobs):
    # Fast: before the default collective timeout could have ended it (the seconds include the
    # start-up of all the module's jobs at once, as below)
    rc, out, err, seconds = jobs[1]["bad_root"].wait()
    assert rc != 0 and seconds < distributed.DEFAULT_TIMEOUT_S
    assert "error: CIFAR-10 not found" in err and "DataError" not in err  # no worker traceback


@pytest.mark.parametrize("failure", ["crash", "hang"])
def test_a_failure_in_one_rank_stops_the_whole_job(jobs, failure):
    # A crash ends the job through torchrun, which stops the other ranks when one exits non-zero;
    # a hang through the collective timeout (15 s here). Either ends before the default timeout
    # alone (300 s) could have. The seconds count from the job's start, so they include starting
    # all the module's jobs at once, which is slow on a small, loaded machine.
    rc, out, err, seconds = jobs[1][failure].wait()
    assert rc != 0 and seconds < distributed.DEFAULT_TIMEOUT_S
    assert "test accuracy" not in out
    assert ("simulated crash on rank 1" if failure == "crash" else "Timed out") in err


def test_device_checks_come_before_the_process_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            distributed.setup("cuda")
    with pytest.raises(DeviceError, match=r"CUDA GPUs \(NCCL\) or on CPUs"):
        distributed.setup("meta")  # neither cuda nor cpu
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.setup("cpu").enabled


def test_checkpoints_move_between_wrapped_and_plain_models(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        plain = build_model("simple_cnn")
        wrapped = torch.nn.parallel.DistributedDataParallel(build_model("simple_cnn"))
        args = dict(model_name="simple_cnn", model_kwargs={}, classes=range(10),
                    mean=[0.5] * 3, std=[0.5] * 3)
        save_checkpoint(tmp_path / "ddp.pt", wrapped, **args)   # saved without "module."
        load_weights(plain, load_checkpoint(tmp_path / "ddp.pt"))
        _close(plain.state_dict(), wrapped.module.state_dict(), rtol=0, atol=0)
        save_checkpoint(tmp_path / "one.pt", build_model("simple_cnn"), **args)
        load_weights(wrapped, load_checkpoint(tmp_path / "one.pt"))  # into the wrapped model
        _close(wrapped.module.state_dict(), load_model(tmp_path / "one.pt")[0].state_dict(),
               rtol=0, atol=0)
    finally:
        dist.destroy_process_group()
