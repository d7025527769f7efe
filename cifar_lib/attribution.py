"""Grad-CAM: which parts of an image a prediction rests on (Selvaraju et al., 2017).

For a convolutional layer with activations A (K channels, h×w) and a class score y, Grad-CAM
weighs each channel by its average gradient, α_k = mean over positions of ∂y/∂A_k, and keeps the
positive part of Σ_k α_k A_k: an h×w map of where evidence *for* the class sits. It is upsampled
to the image's size and scaled to [0, 1] per image. The later the layer, the more it knows about
classes but the coarser the map (3×3 for ``AirbenchNet``, 8×8 for ``SimpleCNN``).

Why not Captum: ``captum.attr.LayerGradCam`` computes the same map, but the method is a few
lines on two known architectures, and a dependency for it would be one more install for every
learner (and on Colab); here the steps stay in view.
"""
from __future__ import annotations

from contextlib import ExitStack

import torch
import torch.nn.functional as F
from torch import nn

from .batches import normalize
from .checkpoint import load_run, unwrap
from .models import AirbenchNet, SimpleCNN


def default_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage whose output still has spatial extent.

    ``SimpleCNN``: ``conv3`` (128×8×8 for a 32×32 image). Its output is taken *before* the ReLU
    the forward pass applies next, so Σ α_k A_k may include negative activations; the ReLU that
    Grad-CAM applies to the map keeps only the positive evidence. ``AirbenchNet``: the last
    ``ConvGroup`` (``model[4]``, ending in a GELU: 256×3×3 for a 32×32 image).
    DDP / torch.compile wrappers are unwrapped. Any other model: ValueError (pass ``layer=``).
    """
    model = unwrap(model)
    if isinstance(model, SimpleCNN):
        return model.conv3
    if isinstance(model, AirbenchNet):
        return model[4]
    raise ValueError(f"no default Grad-CAM layer for {type(model).__name__}: pass layer=<the "
                     f"last convolutional module whose output is N×C×h×w>, e.g. "
                     f"grad_cam(model, x, layer=model.features[-1])")


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    """``target`` (None, an int, or an int tensor of N) → int64 N on the logits' device."""
    n, c = logits.shape
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, device=logits.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"target must be a class index or an int tensor of N, got {t.dtype}")
    t = t.long().expand(n) if t.ndim == 0 else t.long()
    if t.shape != (n,):
        raise ValueError(f"target must be one class index or one per image ({n}), "
                         f"got shape {tuple(t.shape)}")
    if n and (t.min() < 0 or t.max() >= c):
        raise ValueError(f"target classes must be in 0..{c - 1}, got {t.tolist()}")
    return t


def _normalise_maps(cam: torch.Tensor) -> torch.Tensor:
    """N×H×W ≥ 0 → each map divided by its max; an all-zero map stays zero (never NaN)."""
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), 0.0)


def grad_cam(model: nn.Module, images: torch.Tensor, target=None,
             layer: nn.Module | None = None) -> torch.Tensor:
    """Grad-CAM maps float N×H×W in [0, 1] (on the images' device) for normalised float images
    N×3×H×W.

    target: the class to explain, one int for all images or an int tensor of N; None = each
    image's predicted class. layer: the module whose output (N×K×h×w) is explained; None =
    ``default_layer(model)``. The model runs in eval mode (its earlier modes are restored);
    gradients are taken with ``torch.autograd.grad`` with respect to the layer's output only, so
    no parameter's ``.grad`` changes. Works inside ``torch.no_grad()``/``inference_mode()``.
    """
    return _grad_cam(model, images, target, layer)[0]


def _grad_cam(model: nn.Module, images: torch.Tensor, target, layer: nn.Module | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``grad_cam``'s maps N×H×W and the eval-mode logits N×C (detached) they explain."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be normalised float N×C×H×W, got {images.dtype} "
                         f"{tuple(images.shape)}: uint8 images go through batches.normalize "
                         f"(or use cam_for_run)")
    layer = default_layer(model) if layer is None else layer
    captured: list[torch.Tensor] = []

    def capture(module, inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"the Grad-CAM layer must output N×K×h×w, {type(module).__name__} "
                             f"gave {getattr(output, 'shape', type(output).__name__)}: pick a "
                             f"convolutional layer")
        if captured:
            raise ValueError(f"{type(module).__name__} runs more than once per forward pass: "
                             f"pick a layer that runs once")
        # A fresh leaf: the gradient stops here (nothing upstream is differentiated), and it
        # has requires_grad even when the model's parameters are frozen. The clone lets later
        # in-place ops (ReLU(inplace=True)) run without touching the leaf.
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf.clone()

    modes = {m: m.training for m in model.modules()}
    with ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.callback(lambda: [m.train(mode) for m, mode in modes.items()])
        stack.callback(layer.register_forward_hook(capture).remove)
        model.eval()
        x = images.detach().clone()  # an inference-mode tensor cannot enter autograd
        logits = model(x)
        if not captured:
            raise ValueError(f"{type(layer).__name__} did not run in the model's forward pass: "
                             f"pass a layer of this model")
        t = _targets(target, logits)
        # In eval mode images do not interact (BatchNorm uses running stats), so the sum's
        # gradient with respect to each image's activations is that image's own.
        score = logits.float().gather(1, t[:, None]).sum()
        acts = captured[0]
        (grads,) = torch.autograd.grad(score, acts)
    acts, grads = acts.detach().float(), grads.float()
    weights = grads.mean(dim=(2, 3), keepdim=True)               # N×K×1×1: α_k
    cam = F.relu((weights * acts).sum(1, keepdim=True))          # N×1×h×w
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return _normalise_maps(cam[:, 0].clamp_min(0)), logits.detach()


def cam_for_run(run, images: torch.Tensor, target=None, device: str | torch.device = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM for a run (folder, checkpoint or ``LoadedModel``) on uint8 images N×3×32×32.

    Returns CPU tensors (maps float N×32×32 in [0, 1], predicted int64 N, probs float N×C).
    The images are normalised with the run's mean/std. Predictions and probabilities come from
    the same single forward pass the maps explain (no test-time augmentation, so they can differ
    from the run's TTA predictions; the run's temperature applies only if fitted without TTA).
    ``device`` is where a run folder is loaded; a ``LoadedModel`` stays where it is.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 N×3×H×W, got {images.dtype} "
                         f"{tuple(images.shape)}")
    lm = load_run(run, device)
    model_device = next(lm.model.parameters()).device
    x = normalize(images.to(model_device), lm.mean, lm.std)
    maps, logits = _grad_cam(lm.model, x, target, None)
    probs = lm.probabilities(logits, tta_level=0)
    return maps.cpu(), probs.argmax(1).cpu(), probs.cpu()


def cam_titles(classes, predicted: torch.Tensor, probs: torch.Tensor,
               labels: torch.Tensor | None = None) -> list[str]:
    """Panel titles for ``plot_grad_cam``: 'cat 91%' for a right prediction (or with no
    labels), 'dog→cat 62%' (true→predicted, confidence) for a wrong one."""
    titles = []
    for i, p in enumerate(predicted.tolist()):
        conf = f"{float(probs[i, p]):.0%}"
        wrong = labels is not None and int(labels[i]) != p
        titles.append(f"{classes[int(labels[i])]}→{classes[p]} {conf}" if wrong
                      else f"{classes[p]} {conf}")
    return titles
