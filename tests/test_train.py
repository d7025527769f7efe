import json
from contextlib import nullcontext

import pytest
import torch

from cifar_lib.config import ConfigError
from cifar_lib.checkpoint import (CheckpointError, load_checkpoint, load_model, load_weights,
                                  save_checkpoint)
from cifar_lib.data import load_cifar10
from cifar_lib.models import build_model
from cifar_lib.recipes import configure
from cifar_lib.train import TrainingDiverged, fit


def _tiny(recipe="original", **kw):
    base = dict(epochs=2, batch_size=32, device="cpu")
    if recipe == "fast":
        # a narrow net and a learning rate for batch 32 instead of 1024
        base.update(model_kwargs={"widths": (16, 32, 32)}, precision="fp32", lr=0.2)
    return configure(recipe, **{**base, **kw})


@pytest.fixture
def data(synthetic_root):
    return load_cifar10(synthetic_root)


@pytest.mark.parametrize("recipe", ["original", "fast"])
def test_quick_run_learns_well_above_chance(data, recipe):
    result = fit(_tiny(recipe, epochs=4), *data, progress=False)
    assert result.metrics["test_acc"] > 0.5  # chance is 0.1 on this toy data
    assert not result.model.training  # eval mode, ready to predict, as FitResult says
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "seconds",
            "images_per_second"} <= set(result.history[-1])


def test_final_evaluation_takes_the_plain_accuracy_from_the_tta_pass(data, monkeypatch):
    """With TTA and no evaluation in the last epoch the plain images go through the network
    once, as TTA's first view: one evaluation gives both accuracies."""
    from cifar_lib import inference
    calls, real = [], inference.predict_logits

    def spy(*args, **kwargs):
        calls.append((kwargs["tta_level"], kwargs.get("with_plain", False)))
        return real(*args, **kwargs)
    monkeypatch.setattr(inference, "predict_logits", spy)
    cfg = _tiny("fast", epochs=1, eval_every=0, tta_level=1)
    result = fit(cfg, *data, progress=False)
    assert calls == [(1, True)]
    calls.clear()
    plain = inference.loss_and_accuracy(result.model, data[1], cfg.mean, cfg.std)
    assert (result.metrics["test_loss"], result.metrics["test_acc"]) == pytest.approx(plain)
    tta = inference.loss_and_accuracy(result.model, data[1], cfg.mean, cfg.std, tta_level=1,
                                      tta_fraction=cfg.tta_fraction)
    assert (result.metrics["test_loss_tta"], result.metrics["test_acc_tta"]) == pytest.approx(tta)


def _fit_recording_windows(cfg, data, monkeypatch):
    """fit(cfg) on data; returns (result, sorted set of (epoch, image height×width) trained)."""
    from cifar_lib import train as train_module
    sizes, real_step = [], train_module.train_step

    def recording_step(t, x, y, step):
        sizes.append((step // t.steps_per_epoch, tuple(x.shape[-2:])))
        return real_step(t, x, y, step)
    monkeypatch.setattr(train_module, "train_step", recording_step)
    return fit(cfg, *data, progress=False), sorted(set(sizes))


def test_crop_epochs_train_on_windows_then_on_whole_images(data, monkeypatch):
    cfg = _tiny("fast", epochs=3, crop_epochs=2, crop_size=20)
    result, windows = _fit_recording_windows(cfg, data, monkeypatch)
    assert windows == [(0, (20, 20)), (1, (20, 20)), (2, (32, 32))]
    assert result.metrics["test_acc"] > 0.3  # evaluated on whole images; chance is 0.1


def test_progressive_crop_sizes_change_the_window_each_crop_epoch(data, monkeypatch):
    cfg = _tiny("fast", epochs=4, crop_epochs=3, crop_size=(16, 20, 28))
    _, windows = _fit_recording_windows(cfg, data, monkeypatch)
    assert windows == [(0, (16, 16)), (1, (20, 20)), (2, (28, 28)), (3, (32, 32))]


def test_final_tta_evaluation_uses_the_configs_tta_fraction(data, monkeypatch):
    from cifar_lib import inference
    calls, real = [], inference.loss_and_accuracy

    def spy(model, split, **kwargs):
        calls.append((kwargs["tta_level"], kwargs["tta_fraction"]))
        return real(model, split, **kwargs)
    monkeypatch.setattr(inference, "loss_and_accuracy", spy)
    fit(_tiny("fast", epochs=1, tta_fraction=0.3), *data, progress=False)
    assert calls == [(0, 0.3), (2, 0.3)]  # the epoch's plain evaluation, then the TTA one


def _one_step(cfg, data, x, y):
    """One train_step of a fresh ``prepare(cfg)`` on (x, y): (loss, logits, parameters)."""
    from cifar_lib.train import prepare, train_step
    torch.manual_seed(0)
    t = prepare(cfg, data[0], torch.device("cpu"))
    loss, logits = train_step(t, x, y, 0)
    return t, loss, logits, [p.detach().clone() for p in t.model.parameters()]


def test_micro_batches_give_the_whole_batchs_step(data):
    """Without BatchNorm the summed micro-batch gradients are the whole batch's: same step."""
    x, y = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    # SGD: Adam's first step, lr·sign(gradient), would magnify rounding in near-zero gradients
    cfg = _tiny("original", batch_size=40, optimizer="sgd", lr=0.5)
    _, loss, logits, params = _one_step(cfg, data, x, y)
    _, loss_mb, logits_mb, params_mb = _one_step(cfg.replace(micro_batch=16), data, x, y)
    assert logits_mb.shape == (40, 10) and torch.allclose(logits_mb, logits, atol=1e-6)
    assert loss_mb.item() == pytest.approx(loss.item(), rel=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params, params_mb))
    from cifar_lib.train import prepare
    torch.manual_seed(0)
    before = prepare(cfg, data[0], torch.device("cpu")).model.parameters()
    assert not all(torch.equal(a, b) for a, b in zip(params, before))  # the step did move


def test_micro_batches_sync_data_parallel_gradients_once(data):
    """Under DDP only the last micro-batch's backward averages across ranks (no_sync before)."""
    from cifar_lib import train as train_module
    cfg = _tiny("fast", batch_size=40, micro_batch=16)
    t = train_module.prepare(cfg, data[0], torch.device("cpu"))
    calls = []

    class Wrapped(torch.nn.Module):  # stands in for DistributedDataParallel
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(len(x))
            return self.inner(x)

        def no_sync(self):
            calls.append("no_sync")
            return nullcontext()
    t.ddp_model = Wrapped(t.model)
    loss, logits = train_module.train_step(t, torch.randn(40, 3, 32, 32),
                                           torch.randint(0, 10, (40,)), 0)
    assert calls == ["no_sync", 16, "no_sync", 16, 8] and logits.shape == (40, 10)
    assert torch.isfinite(loss)


def test_same_seed_same_weights_and_other_seed_differs(data):
    def weights(seed):
        return fit(_tiny("fast", seed=seed), *data, progress=False).model.state_dict()
    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError, match="nope.*original, airbench94, fast, short, tiny, race64"):
        configure("nope")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        configure("original", epoch=3)
    # a former name is refused, naming the new one
    with pytest.raises(ValueError, match="'seed' is now called 'original'"):
        configure("seed")


def test_diverging_loss_stops_with_a_clear_message(data):
    cfg = _tiny(optimizer="sgd", lr=1e12, momentum=0.9)
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        fit(cfg, *data, progress=False)


def test_run_folder_holds_checkpoint_metrics_and_history(data, tmp_path):
    result = fit(_tiny(), *data, run_dir=tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    model, ckpt = load_model(tmp_path)
    assert ckpt["classes"][0] == "airplane" and ckpt["mean"] == [0.5, 0.5, 0.5]
    x = torch.randn(4, 3, 32, 32)
    result.model.eval()
    assert torch.allclose(model(x), result.model(x))


def test_checkpoint_from_another_architecture_is_refused(data, tmp_path):
    fit(_tiny(), *data, run_dir=tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="'simple_cnn'.*not 'airbench'"):
        load_weights(build_model("airbench"), ckpt, model_name="airbench")
    with pytest.raises(CheckpointError, match="does not fit.*weights missing.*use the checkpoint"):
        load_weights(build_model("airbench"), ckpt)


def test_not_a_checkpoint_and_missing_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint.*train one first"):
        load_model(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path)


def test_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model = build_model("simple_cnn")
    args = dict(model_name="simple_cnn", model_kwargs={}, classes=range(10), mean=[0.5] * 3,
                std=[0.5] * 3)
    save_checkpoint(tmp_path / "checkpoint.pt", model, **args)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def crash(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "checkpoint.pt", build_model("simple_cnn"), **args)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("recipe, extra", [
    ("original", {}), ("fast", {}),
    # the losses that choose epoch 3's images must survive the interruption
    ("fast", dict(hardest_fraction=0.5, hardest_from_epoch=1)),
    ("fast", dict(hardest_fraction=(0.5, 0.75), hardest_from_epoch=1))])
def test_interrupted_then_resumed_run_equals_uninterrupted(data, tmp_path, recipe, extra):
    cfg = _tiny(recipe, epochs=3, **extra)
    full = fit(cfg, *data, run_dir=tmp_path / "full", progress=False)

    def interrupt_after_first_epoch(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, *data, run_dir=tmp_path / "cut", callbacks=[interrupt_after_first_epoch],
            progress=False)
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 1
    resumed = fit(cfg, *data, run_dir=tmp_path / "cut", resume=True, progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]


def test_resume_of_a_finished_run_or_another_model_is_refused(data, tmp_path):
    fit(_tiny(epochs=1), *data, run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="finished run"):
        fit(_tiny(epochs=1), *data, run_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="not 'airbench'"):
        fit(_tiny("fast"), *data, run_dir=tmp_path, resume=True, progress=False)


def test_a_finished_run_of_the_same_settings_is_loaded_not_trained_again(data, tmp_path):
    from cifar_lib.train import load_finished
    train, test = data
    cfg = configure("original", quick=True, device="cpu")
    assert load_finished(cfg, tmp_path / "run") is None                  # nothing there yet
    done = fit(cfg, train, test, run_dir=tmp_path / "run", progress=False)
    again = load_finished(cfg, tmp_path / "run")
    assert again.history == json.loads(json.dumps(done.history)) and again.metrics == done.metrics
    state = done.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in again.model.state_dict().items())
    assert not again.model.training
    assert load_finished(cfg.replace(seed=1), tmp_path / "run") is None  # other settings
    ckpt = load_checkpoint(tmp_path / "run")
    ckpt["optimizer"] = {}                                                # an unfinished run
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    assert load_finished(cfg, tmp_path / "run") is None


# ------------------------------------------------------------------ training on the hardest images

def test_later_epochs_train_on_the_images_with_the_highest_last_loss(data, monkeypatch):
    from cifar_lib import train as train_module
    chosen, trained, real_keep, real_step = [], [], train_module.HardestImages.keep, \
        train_module.train_step

    def recording_keep(self, fraction):
        keep = real_keep(self, fraction)
        chosen.append((self.loss.clone(), keep))
        return keep

    def recording_step(t, x, y, step):
        trained.append((step, t.batches.epoch - 1, t.batches.order.clone(), len(y)))
        return real_step(t, x, y, step)
    monkeypatch.setattr(train_module.HardestImages, "keep", recording_keep)
    monkeypatch.setattr(train_module, "train_step", recording_step)
    cfg = _tiny("fast", epochs=3, hardest_fraction=0.5, hardest_from_epoch=1)
    result = fit(cfg, *data, progress=False)

    n = result.metrics["train_images"]
    k = n // 2
    assert [h["images"] for h in result.history] == [n // 32 * 32, k // 32 * 32, k // 32 * 32]
    assert len(chosen) == 2  # once for each of epochs 2 and 3
    for (loss, keep), epoch in zip(chosen, (1, 2)):
        assert keep.sum() == k
        assert loss[keep].min() >= loss[~keep].max()  # the highest losses, not any k
        assert keep[torch.isinf(loss)].all()  # an image no batch has taken yet counts as hardest
        orders = [order for _, e, order, _ in trained if e == epoch]
        assert set(orders[0].tolist()) == set(keep.nonzero().flatten().tolist())
    # The schedule still spans whole epochs: each epoch's steps start at epoch × S and spread
    # over its S schedule steps, so the learning rate decays to near 0 as on every image.
    steps_per_epoch = n // 32
    for epoch in range(3):
        steps = [step for step, e, _, _ in trained if e == epoch]
        assert steps[0] == epoch * steps_per_epoch
        assert steps[-1] >= (epoch + 1) * steps_per_epoch - steps_per_epoch / len(steps) - 1


def test_each_epoch_trains_on_its_own_share_of_the_hardest_images(data):
    cfg = _tiny("fast", epochs=4, hardest_fraction=(0.5, 0.75, 1.0), hardest_from_epoch=1)
    result = fit(cfg, *data, progress=False)
    n = result.metrics["train_images"]
    assert [h["images"] for h in result.history] == [
        n // 32 * 32, n // 2 // 32 * 32, int(0.75 * n) // 32 * 32, n // 32 * 32]


def test_hardest_images_merge_every_processes_losses():
    from cifar_lib.distributed import Context
    from cifar_lib.train import HardestImages

    class TwoRanks(Context):  # the other rank saw images 2 and 3
        def sum(self, tensor):
            other = torch.zeros_like(tensor)
            other[0, 2], other[0, 3], other[1, 2], other[1, 3] = 5.0, 0.5, 1.0, 1.0
            return tensor + other
    hardest = HardestImages(4, torch.device("cpu"))
    hardest.note(torch.tensor([0, 1]), torch.tensor([[9.0, 0.0], [0.0, 9.0]]),
                 torch.tensor([1, 1]))  # image 0 badly wrong, image 1 right
    hardest.end_epoch(TwoRanks())
    assert torch.isfinite(hardest.loss).all()
    assert hardest.keep(0.5).tolist() == [True, False, True, False]  # losses ≈ 9, 0, 5, 0.5


def test_a_hardest_fraction_smaller_than_a_batch_is_refused(data):
    with pytest.raises(ConfigError, match="hardest_fraction 0.01 of .* less than one batch"):
        fit(_tiny("fast", hardest_fraction=0.01), *data, progress=False)


def test_resuming_with_hardest_images_a_run_started_without_is_refused(data, tmp_path):
    def stop(row):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fit(_tiny("fast", epochs=3, hardest_fraction=1.0), *data, run_dir=tmp_path,
            callbacks=[stop], progress=False)
    with pytest.raises(CheckpointError, match=r"other settings: hardest_fraction=1.0 \(now 0.5\)"):
        fit(_tiny("fast", epochs=3, hardest_fraction=0.5), *data, run_dir=tmp_path, resume=True,
            progress=False)
    # A checkpoint without saved settings is refused too, by what it lacks.
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not training on its hardest images"):
        fit(_tiny("fast", epochs=3, hardest_fraction=0.5), *data, run_dir=tmp_path, resume=True,
            progress=False)
