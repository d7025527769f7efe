"""torch.hub entry points: the models that ship with cifar_lib, ready to classify raw images.

    model = torch.hub.load("cifar10-course/cifar10-course", "fast")      # or a checkout:
    model = torch.hub.load("path/to/checkout", "fast", source="local")
    logits = model(images)            # float32 N×3×32×32, RGB in [0, 1] → logits N×10
    model.classes[logits.argmax(1)[0]]

Each returns a ``cifar_lib.export.RawImageClassifier`` in eval mode: the normalisation it was
trained with is inside, so it takes images scaled to [0, 1] (``ToTensor()``'s output), not
normalised ones. ``.classes`` names the logits; ``softmax(logits / model.temperature)`` gives
calibrated probabilities. The weights are in the repository itself (nothing is downloaded).
"""
# torch.hub checks that these import; cifar_lib's own modules need numpy and tqdm besides torch.
dependencies = ["torch", "numpy", "tqdm"]


def _shipped(name: str, pretrained: bool):
    from cifar_lib.export import RawImageClassifier, wrap
    from cifar_lib.pretrained import shipped_run
    if pretrained:
        return wrap(shipped_run(name), "cpu")
    from cifar_lib.checkpoint import load_checkpoint
    from cifar_lib.models import build_model
    ckpt = load_checkpoint(shipped_run(name))  # the architecture and normalisation, not weights
    model = build_model(ckpt["model"], **ckpt["model_kwargs"])
    return RawImageClassifier(model, ckpt["mean"], ckpt["std"], ckpt["classes"]).eval()


def fast(pretrained: bool = True):
    """The fast recipe's shipped model (the airbench network; its accuracy: the README's
    results): float32 N×3×32×32 images in [0, 1] → logits N×10. ``pretrained=False``: untrained
    weights."""
    return _shipped("fast", pretrained)


def original(pretrained: bool = True):
    """The original notebook's SimpleCNN, as shipped (its accuracy: the README's results):
    float32 N×3×32×32 images in [0, 1] → logits N×10. ``pretrained=False``: untrained weights."""
    return _shipped("original", pretrained)
