"""Muon: the orthogonalisation, one step by hand, the SGD half, and how ``fit`` uses it."""
import pytest
import torch
from torch import nn

from cifar_lib import muon
from cifar_lib.muon import Muon, iteration_dtype, orthogonalize
from cifar_lib.recipes import configure
from cifar_lib.train import Training, lr_multiplier, make_optimizer, prepare
from cifar_lib.models import build_model


def _random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(16, 64), (64, 16)])
def test_orthogonalize_keeps_the_singular_vectors_and_pushes_the_values_towards_one(shape):
    k = min(shape)
    left, _ = torch.linalg.qr(_random(shape[0], k, seed=1))
    right, _ = torch.linalg.qr(_random(shape[1], k, seed=2))
    g = left @ torch.diag(torch.linspace(1, 10, k)) @ right.T  # singular values 1 … 10
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    o = orthogonalize(g, steps=5)
    assert o.shape == g.shape and o.dtype == g.dtype
    # In g's singular basis the result is diagonal: same singular vectors, new values.
    inner = u.T @ o @ vh.T
    off_diagonal = inner - torch.diag(torch.diagonal(inner))
    assert off_diagonal.abs().max() < 1e-4
    values = torch.diagonal(inner)
    assert s.max() / s.min() == pytest.approx(10, rel=1e-4)  # spread out to begin with ...
    assert values.min() > 0.6 and values.max() < 1.25  # ... squeezed to about 1


def test_orthogonalize_does_not_depend_on_the_scale_of_the_gradient():
    g = _random(8, 24)
    assert torch.allclose(orthogonalize(g), orthogonalize(1000 * g), atol=1e-5)


def _direct_newton_schulz(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The iteration as published (x rows ≤ cols, already normalised), in float64."""
    a, b, c = muon.NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


@pytest.mark.parametrize("steps", [0, 1, 3, 5])
@pytest.mark.parametrize("shape", [(16, 144), (64, 576), (144, 16)])
def test_orthogonalize_in_fp32_is_the_published_iteration_up_to_rounding(shape, steps):
    g = _random(*shape)
    g[:, :4] *= 30                     # a few strong directions, as in real gradients
    x = (g / g.norm()).double()
    expected = _direct_newton_schulz(x if shape[0] <= shape[1] else x.T, steps)
    expected = expected if shape[0] <= shape[1] else expected.T
    assert torch.allclose(orthogonalize(g, steps).double(), expected, atol=1e-5)


def test_the_gram_form_builds_no_rows_by_cols_product_but_the_first_and_last(monkeypatch):
    calls = []
    real_mm = torch.Tensor.__matmul__

    def matmul(a, b):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return real_mm(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", matmul)
    orthogonalize(_random(8, 72), steps=3)     # fp32, on the CPU
    wide = [c for c in calls if 72 in c[0] + c[1]]
    assert wide == [((8, 72), (72, 8)), ((8, 8), (8, 72))]  # x·xᵀ, then q·x: once each


def test_orthogonalize_refuses_anything_but_a_matrix():
    with pytest.raises(ValueError, match="reshape a conv filter"):
        orthogonalize(torch.ones(2, 3, 3, 3))


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float32),   # T4: no native bf16
                                               ((8, 0), torch.bfloat16),  # A100
                                               ((9, 0), torch.bfloat16)]) # H100
def test_the_iteration_runs_in_bf16_only_on_gpus_with_native_bf16(monkeypatch, capability, dtype):
    monkeypatch.setattr(muon, "cuda_capability", lambda device: capability)
    assert iteration_dtype(torch.device("cuda", 0)) == dtype
    assert iteration_dtype(torch.device("cpu")) == torch.float32


def test_one_step_is_normalise_then_move_by_lr_times_the_orthogonalised_gradient():
    w = nn.Parameter(_random(8, 4, 3, 3))
    w0 = w.detach().clone()
    w.grad = _random(8, 4, 3, 3, seed=1)
    Muon([w], lr=0.1, momentum=0.5).step()
    # The first step's momentum buffer is the gradient; Nesterov looks one step ahead: g + 0.5·g.
    expected = (w0 * 8 ** 0.5 / w0.norm()
                - 0.1 * orthogonalize((1.5 * w.grad).reshape(8, -1)).view(8, 4, 3, 3))
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    assert w.shape == (8, 4, 3, 3)


def test_muon_steps_have_the_same_size_whatever_the_gradients_size():
    def step_taken(scale):
        w = nn.Parameter(torch.eye(6, 10))
        w.grad = scale * _random(6, 10)
        Muon([w], lr=0.05, momentum=0.6, normalize_weights=False).step()
        return (w.detach() - torch.eye(6, 10)).norm().item()
    assert step_taken(1e-4) == pytest.approx(step_taken(1e4), rel=1e-4)


def test_muon_solves_a_toy_least_squares_problem():
    target = _random(6, 10, seed=2)
    w = nn.Parameter(torch.zeros(6, 10))
    opt = Muon([w], lr=0.3, momentum=0.6, normalize_weights=False)
    losses = []
    for step in range(100):
        # Each step moves every singular direction by about lr, whatever the gradient's size:
        # a decaying lr (as in training) is what lets it settle.
        opt.param_groups[0]["lr"] = 0.3 * (1 - step / 100)
        loss = ((w - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-5 * losses[0]


def test_groups_without_muon_are_exactly_nesterov_sgd():
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    opt_ours = Muon(ours.parameters(), muon=False, lr=0.1, momentum=0.85, weight_decay=0.01)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.85, nesterov=True,
                                 weight_decay=0.01)
    x = _random(16, 5)
    for _ in range(4):
        for net, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_muon_refuses_vectors_and_bad_hyperparameters():
    with pytest.raises(ValueError, match="muon=False"):
        Muon([nn.Parameter(torch.ones(4))])
    with pytest.raises(ValueError, match="momentum"):
        Muon([nn.Parameter(torch.ones(4, 4))], momentum=1.0)
    with pytest.raises(ValueError, match="lr"):
        Muon([nn.Parameter(torch.ones(4, 4))], lr=-1)


def test_muon_is_deterministic_and_its_state_round_trips():
    def train(state=None):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(2))
        net(torch.zeros(1, 3, 6, 6))
        opt = Muon([dict(params=[net[0].weight]),
                    dict(params=[net[0].bias, *net[2].parameters()], muon=False)], lr=0.05)
        x = _random(4, 3, 6, 6)
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
        return net, opt
    (a, opt_a), (b, _) = train(), train()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    state = opt_a.state_dict()
    assert state["param_groups"][0]["muon"] is True and state["param_groups"][1]["muon"] is False
    assert len(state["state"]) == 4  # a momentum buffer for each parameter


def test_fast_muon_puts_filters_in_muon_and_biases_and_head_in_sgd():
    cfg = configure("fast")
    model = build_model(cfg.model, **cfg.model_kwargs)
    opt = make_optimizer(cfg, model)
    assert isinstance(opt, Muon)
    filters, biases, whiten_bias, head = opt.param_groups
    assert filters["muon"] and all(p.ndim == 4 for p in filters["params"])
    assert len(filters["params"]) == 6  # two convolutions per block; the whitening is frozen
    assert (filters["lr"], filters["momentum"]) == (0.17, 0.6)
    assert not biases["muon"] and all(p.ndim == 1 for p in biases["params"])
    assert whiten_bias["params"] == [model.whitening.bias]
    assert whiten_bias["schedule_epochs"] == cfg.whiten_bias_epochs == 3
    assert head["params"] == [model[-2].weight] and head["momentum"] == 0.85
    # airbench94_muon's values, for a mean loss at fast's batch of 1000: biases 0.053 × 1000,
    # the head 0.67 × 1000 × (9/256)², and a decay of 2e-6 × 1000 per step in every SGD group
    # (to the head's rounding to 0.828)
    assert cfg.batch_size == 1000
    assert biases["lr"] == pytest.approx(0.053 * 1000, rel=2e-4)
    assert head["lr"] == pytest.approx(0.67 * 1000 * (9 / 256) ** 2, rel=2e-4)
    for group in (biases, whiten_bias, head):
        assert group["lr"] * group["weight_decay"] == pytest.approx(2e-6 * 1000, rel=2e-4)


def test_fast_muon_lr_decays_linearly_and_the_whitening_bias_sooner(synthetic_root, one_thread):
    from cifar_lib.data import load_cifar10
    from cifar_lib.train import train_step
    train, _ = load_cifar10(synthetic_root)
    cfg = configure("fast", model_kwargs={"widths": (8, 8, 8)}, batch_size=32, epochs=4,
                    whiten_bias_epochs=2, device="cpu", train_subset=128)
    t: Training = prepare(cfg, train.subset(128), torch.device("cpu"))
    assert t.steps_per_epoch == 4
    x, y = next(iter(t.batches))
    lrs = []
    for step in (0, 4, 8, 12):
        train_step(t, x, y, step)
        lrs.append([g["lr"] / g["base_lr"] for g in t.optimizer.param_groups])
    filters = [row[0] for row in lrs]
    whiten = [row[2] for row in lrs]
    assert filters == pytest.approx([1.0, 0.75, 0.5, 0.25])  # no warm-up, linear to 0
    assert whiten == pytest.approx([1.0, 0.5, 0.0, 0.0])     # to 0 over its 2 epochs
    assert lr_multiplier(cfg, 16, 16) == 0.0
