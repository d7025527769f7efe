"""Muon for convolution filters, Nesterov SGD for everything else, in one optimiser.

Muon (MomentUm Orthogonalized by Newton-Schulz, Keller Jordan 2024) keeps a momentum buffer as
SGD does, but instead of stepping along it, it steps along its *orthogonalised* version: the
matrix with the same singular vectors and every singular value near 1. Each weight matrix then
moves the same distance in every direction the gradient points to, so rare directions are not
drowned out by common ones. airbench94_muon trains CIFAR-10's conv filters this way and needs 8
epochs instead of airbench94's 9.9 for the same 94%.

``torch.optim.Muon`` takes 2-D parameters only; a conv filter out×in×kh×kw is treated here as
the out×(in·kh·kw) matrix it is in the convolution's matrix product, and reshaped back.
"""
from __future__ import annotations

import torch

from .device import BF16_MIN_CAPABILITY, cuda_capability

# The quintic whose slope at 0 is as large as possible while every singular value in (0, 1]
# is mapped into roughly [0.7, 1.2] after 3-5 iterations (Jordan et al.): not exactly 1, but a
# far cheaper iteration than an SVD, and just as good for training.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def iteration_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs with native bf16 (compute capability 8.0+: as published, tensor cores make
    the iteration nearly free); fp32 elsewhere: on CPUs, where it stays exact and deterministic,
    and on older GPUs (a T4), where bf16 matmuls are emulated slowly or not supported at all."""
    if device.type == "cuda" and cuda_capability(device) >= BF16_MIN_CAPABILITY:
        return torch.bfloat16
    return torch.float32


def orthogonalize(g: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalise a matrix g (rows × cols): same singular vectors, singular
    values pushed towards 1 by ``steps`` Newton-Schulz iterations. Returns a rows × cols tensor
    of g's dtype, computed in ``iteration_dtype(g.device)``."""
    if g.ndim != 2:
        raise ValueError(f"orthogonalize takes a matrix, got shape {tuple(g.shape)}; reshape a "
                         f"conv filter out×in×kh×kw to out×(in·kh·kw) first")
    a, b, c = NS_COEFFICIENTS
    x = g.to(iteration_dtype(g.device))
    x = x / (x.norm() + eps)           # every singular value ≤ 1: inside the iteration's range
    tall = x.size(0) > x.size(1)
    if tall:                           # iterate on the smaller Gram matrix
        x = x.T
    if x.dtype == torch.float32:
        x = _newton_schulz_on_gram(x, steps)
    else:  # in bf16 the products accumulated on the Gram matrix double the rounding error
        for _ in range(steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


def _newton_schulz_on_gram(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The iteration of ``orthogonalize`` for x (rows ≤ cols), with the rows × cols products
    done once instead of twice an iteration.

    Each iteration is x ← p(G)·x with G = x·xᵀ (rows × rows) and p(G) = a·I + b·G + c·G²; the
    next G is p(G)·G·p(G). So everything runs on rows × rows matrices, the p(G)s multiplied into
    one q, and x is touched twice in all: G = x·xᵀ at the start, q·x at the end. For a filter
    bank of 256 × 2,304 (a 3×3 convolution of 256 channels) that is half the work."""
    a, b, c = NS_COEFFICIENTS
    gram = x @ x.T
    q = None
    for k in range(steps):
        p = torch.addmm(gram, gram, gram, beta=b, alpha=c)   # b·G + c·G²
        p.diagonal().add_(a)                                  # + a·I
        q = p if q is None else p @ q
        if k < steps - 1:
            gram = p @ gram @ p
    return x if q is None else q @ x


class Muon(torch.optim.Optimizer):
    """Muon on the groups with ``muon=True`` (default), Nesterov SGD on the others.

    Muon groups (parameters with ≥ 2 dimensions, e.g. conv filters out×in×kh×kw): each step
    rescales the weight to norm sqrt(out) (airbench's weight normalisation, on by default:
    ``normalize_weights``; it makes weight decay unnecessary), then moves it by
    ``lr × orthogonalize(momentum update)``, reshaped to the weight's shape.
    SGD groups (``muon=False``: biases, the linear head): exactly ``torch.optim.SGD`` with
    ``nesterov=True`` and coupled ``weight_decay``.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.6, nesterov: bool = True,
                 weight_decay: float = 0.0, muon: bool = True, normalize_weights: bool = True,
                 ns_steps: int = 3):
        if lr < 0:
            raise ValueError(f"lr must be ≥ 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        muon=muon, normalize_weights=normalize_weights, ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"] if group["muon"] else ():
                if p.ndim < 2:
                    raise ValueError(f"Muon orthogonalises matrices and filters; a parameter of "
                                     f"shape {tuple(p.shape)} belongs in a group with muon=False")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = self._momentum(p, group)
                if group["muon"]:
                    if group["normalize_weights"]:
                        p.mul_(len(p) ** 0.5 / p.norm())
                    update = orthogonalize(update.reshape(len(p), -1),
                                           group["ns_steps"]).view_as(p)
                p.add_(update, alpha=-group["lr"])
        return loss

    def _momentum(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        """The (Nesterov) momentum direction for p, as torch's SGD computes it (no dampening)."""
        g = p.grad
        if group["weight_decay"] and not group["muon"]:
            g = g.add(p, alpha=group["weight_decay"])
        if group["momentum"] == 0:
            return g
        state = self.state[p]
        if "momentum_buffer" not in state:  # the first step starts the buffer at g, as SGD does
            state["momentum_buffer"] = g.clone()
        else:
            state["momentum_buffer"].mul_(group["momentum"]).add_(g)
        buf = state["momentum_buffer"]
        return g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
