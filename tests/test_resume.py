"""Resume crosses every state change: an interrupted and resumed run equals an uninterrupted
one bit for bit, even when the resume falls after the whitening bias freezes, after the crop
epochs or under bf16 autocast, and the restored state lands on the model's device."""
from __future__ import annotations

import pytest
import torch

from cifar_lib import train as train_module
from cifar_lib.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure
from cifar_lib.train import fit, prepare, restore

WHITEN_BIAS = "0.bias"  # AirbenchNet is a Sequential: its whitening conv is module 0


def _tiny_airbench(**kw):
    base = dict(model_kwargs={"widths": (16, 32, 32)}, lr=0.2, batch_size=32, precision="fp32",
                device="cpu", whiten_bias_epochs=1, epochs=3)
    return configure("airbench94", **{**base, **kw})  # SGD, lookahead, whitening bias freeze


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture
def data(synthetic_root):
    return load_cifar10(synthetic_root)


def _interrupt_after(epoch):
    def callback(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt
    return callback


def _record_checkpoints(run_dir, into):
    """A callback keeping each epoch's checkpoint (saved just before callbacks run)."""
    def callback(row):
        into[row["epoch"]] = load_checkpoint(run_dir)
    return callback


def _interrupted_then_resumed(cfg, data, run_dir, after, callbacks=()):
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, *data, run_dir=run_dir, callbacks=[*callbacks, _interrupt_after(after)],
            progress=False)
    assert load_checkpoint(run_dir)["epoch"] == after
    return fit(cfg, *data, run_dir=run_dir, resume=True, callbacks=callbacks, progress=False)


def _assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"entries differ after resume: {different}"


@pytest.fixture(scope="module")
def freeze_runs(cifar_folder, tmp_path_factory):
    """The tiny airbench94 config (whitening bias trained in epoch 1 only) run twice: straight
    through, and interrupted after epoch 1 then resumed; with every epoch's checkpoint."""
    tmp = tmp_path_factory.mktemp("freeze")
    data = load_cifar10(cifar_folder(tmp / "data"))
    cfg = _tiny_airbench()
    full_ckpts, cut_ckpts = {}, {}
    full = fit(cfg, *data, run_dir=tmp / "full",
               callbacks=[_record_checkpoints(tmp / "full", full_ckpts)], progress=False)
    resumed = _interrupted_then_resumed(cfg, data, tmp / "cut", after=1,
                                        callbacks=[_record_checkpoints(tmp / "cut", cut_ckpts)])
    return full, full_ckpts, resumed, cut_ckpts


def test_resume_across_the_whitening_bias_freeze_is_bit_identical(freeze_runs):
    full, full_ckpts, resumed, cut_ckpts = freeze_runs
    _assert_bit_identical(full.model.state_dict(), resumed.model.state_dict())
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for epoch in (1, 2, 3):  # every checkpoint on the way, resume state included
        _assert_bit_identical(full_ckpts[epoch]["state_dict"], cut_ckpts[epoch]["state_dict"])
        _assert_bit_identical(full_ckpts[epoch]["lookahead"], cut_ckpts[epoch]["lookahead"])


def test_whitening_bias_trains_in_epoch_one_only(freeze_runs):
    _, _, resumed, ckpts = freeze_runs
    bias = {epoch: ckpts[epoch]["state_dict"][WHITEN_BIAS] for epoch in (1, 2, 3)}
    assert bias[1].abs().sum() > 0  # initialised to zero, then trained in epoch 1
    # Frozen from epoch 2 on: no gradient step moves it. Lookahead still pulls it once to its
    # slow average at the first averaging step of epoch 2; from then on the net and the slow
    # copy agree and it stays fixed.
    assert not resumed.model[0].bias.requires_grad
    assert torch.equal(bias[2], ckpts[2]["lookahead"][WHITEN_BIAS])
    assert torch.equal(bias[2], bias[3])
    assert torch.equal(resumed.model.state_dict()[WHITEN_BIAS], bias[3])


def test_resume_under_bf16_autocast_is_bit_identical(data, tmp_path):
    cfg = _tiny_airbench(precision="bf16", train_subset=128,
                         model_kwargs={"widths": (8, 16, 16)}, epochs=2)
    full = fit(cfg, *data, run_dir=tmp_path / "full", progress=False)
    assert full.metrics["precision"] == "bfloat16"
    resumed = _interrupted_then_resumed(cfg, data, tmp_path / "cut", after=1)
    _assert_bit_identical(full.model.state_dict(), resumed.model.state_dict())


def test_resume_of_the_fast_recipe_is_bit_identical(data, tmp_path):
    # Muon's momentum buffers and its groups' own schedules (the whitening bias decays over
    # its epoch) come back from the checkpoint exactly, and so do the colour jitter's draws;
    # the resumed epoch is the first one on whole images after two on crops.
    cfg = configure("fast", model_kwargs={"widths": (8, 16, 16)}, batch_size=32,
                    precision="fp32", device="cpu", whiten_bias_epochs=1, epochs=3,
                    train_subset=128, crop_epochs=2, crop_size=20)
    full = fit(cfg, *data, run_dir=tmp_path / "full", progress=False)
    resumed = _interrupted_then_resumed(cfg, data, tmp_path / "cut", after=2)
    _assert_bit_identical(full.model.state_dict(), resumed.model.state_dict())


def test_restore_maps_everything_to_the_models_device(data, tmp_path, monkeypatch):
    cfg = _tiny_airbench(train_subset=64, model_kwargs={"widths": (8, 16, 16)}, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, *data, run_dir=tmp_path, callbacks=[_interrupt_after(1)], progress=False)

    seen = []
    real_load = train_module.load_checkpoint

    def spy(path, map_location="cpu"):
        seen.append(map_location)
        return real_load(path, map_location=map_location)
    monkeypatch.setattr(train_module, "load_checkpoint", spy)

    device = torch.device("cpu")
    t = prepare(cfg, data[0].subset(cfg.train_subset), device)
    restore(t, tmp_path / CHECKPOINT)
    param_device = next(t.model.parameters()).device
    assert len(seen) == 1
    assert isinstance(seen[0], torch.device) and seen[0] == param_device == device
    assert t.start_epoch == 1
    assert t.lookahead.state and all(v.device == param_device for v in t.lookahead.state.values())
    momenta = [s["momentum_buffer"] for s in t.optimizer.state.values() if "momentum_buffer" in s]
    assert momenta and all(m.device == param_device for m in momenta)


def test_a_new_run_in_a_folder_never_leaves_an_earlier_runs_metrics_beside_its_weights(
        data, tmp_path):
    run_dir = tmp_path / "run"
    fit(_tiny_airbench(epochs=1), *data, run_dir=run_dir, progress=False)
    assert (run_dir / "metrics.json").is_file() and (run_dir / "history.json").is_file()
    with pytest.raises(KeyboardInterrupt):  # a new run into the same folder, interrupted
        fit(_tiny_airbench(epochs=2), *data, run_dir=run_dir, callbacks=[_interrupt_after(1)],
            progress=False)
    assert load_checkpoint(run_dir)["epoch"] == 1
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "history.json").exists()


def test_a_run_resumes_only_with_the_settings_it_started_with(data, tmp_path):
    cfg = configure("original", epochs=2, batch_size=64, device="cpu", precision="fp32")
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, *data, run_dir=tmp_path, callbacks=[_interrupt_after(1)], progress=False)
    with pytest.raises(CheckpointError) as err:  # what it learns: refused, naming both values
        fit(cfg.replace(epochs=3, lr=0.01), *data, run_dir=tmp_path, resume=True,
            progress=False)
    assert "epochs=2 (now 3)" in str(err.value) and "lr=0.001 (now 0.01)" in str(err.value)
    assert load_checkpoint(tmp_path)["epoch"] == 1  # the interrupted run is kept
    # Where it runs and how often it is evaluated may change.
    resumed = fit(cfg.replace(eval_every=0, device="auto"), *data, run_dir=tmp_path,
                  resume=True, progress=False)
    assert len(resumed.history) == 2
