"""Open set: how well each "none of these" score tells unknown images from known ones.

    python -m cifar_lib bench open-set [--recipe short] [--epochs 4] [--known 0 1 2 3 4 5]
        [--seed 0] [--fast-images 10000] [--quick] [--out FILE.json]

A classifier trained on some classes meets images of others. Here a quick model is trained on
six CIFAR-10 classes (``--known``, by default airplane, automobile, bird, cat, deer, dog) and
the four others play the unknown: their test images must score lower than the known classes'
test images. Further unknowns: the known classes' test images under every corruption of
``cifar_lib.corruptions`` at severity 5 (still the known classes, only degraded: a detector
that flags them is hedging on hard images, not finding new classes), synthetic images (uniform
noise, smooth noise, one flat colour) and the views of the shipped giraffe photo
(``sample_images/giraffe.jpg``: its six ``multi_crop`` views and the centred square).

Each score of ``cifar_lib.ood`` (msp, energy, mahalanobis, knn) is measured by AUROC and by the
false-alarm rate at 95% true-positive rate (the share of unknowns still taken for known when
95% of the known test images are kept). The feature scores are fitted on the training images
outside the validation split (``data.split_validation``); which score is best is chosen on the
validation split (known classes' validation images against the held-out classes'), never on
the test images. The shipped fast model (all ten classes) is measured the same way against the
corrupted, synthetic and photo unknowns, the first ``--fast-images`` test images being known.

Rows: model ('open-set 6' or 'fast'), score, unknowns, auroc, fpr_at_95_tpr, known (images),
unknown (images). The record adds ``selection`` (validation AUROC per score and the chosen
one), ``open_set_accuracy`` (the 6-class model's test accuracy) and ``photos`` (each sample
photo's score and verdict under the fast model's chosen detector, threshold from validation).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import LoadedModel, load_run
from ..corruptions import CORRUPTIONS, corrupt
from ..data import CLASSES, CifarSplit, add_data_args, load_cifar10, split_validation
from ..photos import SAMPLE_LABELS, load_image, model_views, sample_images
from ..ood import (SCORES, TPR, all_scores, auroc, features_and_logits, fit_state, fpr_at_tpr,
                   threshold_at_tpr)
from ..pretrained import RUNS
from ..recipes import configure
from ..train import fit
from .records import print_table, settings, write_record

RECORD = Path(__file__).resolve().parent.parent / "records" / "open_set.json"
KNOWN = (0, 1, 2, 3, 4, 5)
FIT_IMAGES = 5_000        # training features the Mahalanobis means/covariance and k-NN bank use
CORRUPTED_PER_KIND = 200  # known test images per corruption (10 corruptions: 2,000 images)
SYNTHETIC_PER_KIND = 300
FAST_IMAGES = 2_000


def known_split(split: CifarSplit, known: tuple[int, ...]) -> CifarSplit:
    """The images of the ``known`` classes, labels renumbered 0..len(known)−1 in that order."""
    remap = torch.full((len(split.classes),), -1, dtype=torch.long)
    remap[list(known)] = torch.arange(len(known))
    keep = remap[split.labels] >= 0
    return CifarSplit(split.images[keep], remap[split.labels[keep]],
                      tuple(split.classes[c] for c in known))


def unknown_images(split: CifarSplit, known: tuple[int, ...]) -> torch.Tensor:
    """uint8 images of the classes not in ``known``."""
    return split.images[~torch.isin(split.labels, torch.tensor(known))]


def synthetic(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """uint8 n×3×32×32 images of three kinds: 'noise' (uniform per pixel), 'smooth noise'
    (4×4 random colours upsampled bilinearly) and 'flat colour' (one random colour)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    smooth = F.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    flat = torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, 32, 32)
    as_uint8 = lambda x: (x * 255).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    return {"noise": noise, "smooth noise": as_uint8(smooth), "flat colour": as_uint8(flat)}


def giraffe_views() -> torch.Tensor:
    """uint8 7×3×32×32: the six multi_crop views and the centred square of the giraffe photo."""
    photo = load_image(next(p for p in sample_images() if p.name == "giraffe.jpg"))
    return torch.cat([model_views(photo, 32, "multi_crop"), model_views(photo, 32, "center_crop")])


def unknown_sets(known_test: torch.Tensor, seed: int = 0, corrupted_per_kind=CORRUPTED_PER_KIND,
                 synthetic_per_kind=SYNTHETIC_PER_KIND) -> dict[str, torch.Tensor]:
    """The unknowns besides held-out classes: 'corrupted (severity 5)', 'synthetic', 'giraffe
    photo' (uint8 images each)."""
    part = known_test[:corrupted_per_kind]
    corrupted = torch.cat([corrupt(part, name, 5, seed) for name in CORRUPTIONS])
    return {"corrupted (severity 5)": corrupted,
            "synthetic": torch.cat(list(synthetic(synthetic_per_kind, seed).values())),
            "giraffe photo": giraffe_views()}


def score_all(lm, state: dict, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every score N of uint8 images N×3×32×32 under ``lm`` with the fitted ``state``."""
    features, logits = features_and_logits(lm, images)
    return all_scores(logits, features, state)


def compare(model: str, known: dict[str, torch.Tensor], unknowns: dict[str, dict]) -> list[dict]:
    """Rows: per unknown set and score, AUROC and FPR at 95% TPR against the ``known`` scores."""
    rows = []
    for name, scores in unknowns.items():
        for s in SCORES:
            rows.append({"model": model, "score": s, "unknowns": name,
                         "auroc": auroc(known[s], scores[s]),
                         "fpr_at_95_tpr": fpr_at_tpr(known[s], scores[s], TPR),
                         "known": len(known[s]), "unknown": len(scores[s])})
    return rows


def _fit(lm, split: CifarSplit, n: int, seed: int) -> dict:
    part = split.subset(n)
    features, _ = features_and_logits(lm, part.images)
    return fit_state(features, part.labels, len(split.classes), seed=seed)


def run(*, known=KNOWN, recipe: str = "short", epochs: int | None = None, seed: int = 0,
        fast_images: int = FAST_IMAGES, quick: bool = False, root=None, download: bool = False,
        progress: bool = True, log=print) -> dict:
    """The record's fields (rows, selection, open_set_accuracy, photos, seconds, ...)."""
    known = tuple(int(c) for c in known)
    if len(set(known)) != len(known) or not known or not all(0 <= c < 10 for c in known) \
            or len(known) == 10:
        raise ValueError(f"--known must be distinct classes 0..9, not all ten, got {known}")
    t0 = time.perf_counter()
    train, test = load_cifar10(root, download=download)
    rest, val = split_validation(train)
    k_train, k_val, k_test = (known_split(s, known) for s in (rest, val, test))
    u_val, u_test = unknown_images(val, known), unknown_images(test, known)
    fit_n, per_kind, syn_n, fast_images = (
        (2_000, 20, 30, min(fast_images, 1_000)) if quick
        else (FIT_IMAGES, CORRUPTED_PER_KIND, SYNTHETIC_PER_KIND, fast_images))

    # 1. a quick model on the known classes only (labels 0..5, a 6-way head)
    base = configure(recipe, quick=quick)
    cfg = configure(recipe, quick=quick, epochs=epochs, seed=seed,
                    model_kwargs={**base.model_kwargs, "num_classes": len(known)})
    log(f"training {recipe} ({cfg.epochs} epochs) on {len(k_train):,} images of "
        f"{', '.join(k_train.classes)}")
    result = fit(cfg, k_train, k_test, progress=progress)
    lm = LoadedModel(result.model.cpu().eval(), k_train.classes, tuple(cfg.mean),
                     tuple(cfg.std), name=cfg.model)
    state = _fit(lm, k_train, fit_n, seed)

    # 2. which score: chosen on validation images (known classes vs held-out classes)
    v_known, v_unknown = score_all(lm, state, k_val.images), score_all(lm, state, u_val)
    selection = {s: auroc(v_known[s], v_unknown[s]) for s in SCORES}
    best = max(selection, key=selection.get)
    log("validation AUROC (held-out classes): "
        + ", ".join(f"{s} {a:.3f}" for s, a in selection.items()) + f" → {best}")

    # 3. measured on test images
    test_known = score_all(lm, state, k_test.images)
    others = unknown_sets(k_test.images, seed, per_kind, syn_n)
    sets = {"held-out classes": u_test, **others}
    rows = compare(f"open-set {len(known)}", test_known,
                   {name: score_all(lm, state, imgs) for name, imgs in sets.items()})

    # 4. the shipped fast model, all ten classes: CIFAR-10 test images are the known ones
    fast = load_run(RUNS / "fast")
    fast_state = _fit(fast, rest, fit_n, seed)
    fast_known = score_all(fast, fast_state, test.subset(fast_images).images)
    fast_sets = unknown_sets(test.images, seed, per_kind, syn_n)
    rows += compare("fast", fast_known,
                    {name: score_all(fast, fast_state, imgs) for name, imgs in fast_sets.items()})

    # 5. the sample photos under the fast model's detector of the chosen score
    fast_val = score_all(fast, fast_state, val.images)[best]
    threshold = threshold_at_tpr(fast_val, TPR)
    photos = []
    for path in sample_images():
        s = score_all(fast, fast_state, model_views(load_image(path), 32, "squash"))[best]
        photos.append({"photo": path.name, "class": SAMPLE_LABELS.get(path.name),
                       "score": float(s[0]), "none_of_these": bool(s[0] < threshold)})
    test_tpr = float((fast_known[best] >= threshold).double().mean())
    return {"rows": rows, "selection": {"by": "AUROC on the validation split (known classes' "
                                              "validation images vs the held-out classes')",
                                        "auroc": selection, "chosen": best},
            "known_classes": list(k_train.classes),
            "open_set_accuracy": result.metrics.get("test_acc"),
            "fast_detector": {"score": best, "threshold": threshold, "tpr_validation": TPR,
                              "tpr_test": test_tpr},
            "photos": photos, "seconds": time.perf_counter() - t0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--known", type=int, nargs="+", default=list(KNOWN),
                   help="the known classes (0..9; default 0-5: "
                        f"{', '.join(CLASSES[c] for c in KNOWN)}); the others are unknown")
    p.add_argument("--recipe", default="short",
                   help="recipe of the 6-class model (default short: minutes on a CPU)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="training and noise seed")
    p.add_argument("--fast-images", type=int, default=FAST_IMAGES,
                   help=f"known test images for the shipped fast model (default {FAST_IMAGES:,})")
    add_data_args(p)
    p.add_argument("--quick", action="store_true", help="smoke test: tiny training and sets")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar while training")
    p.add_argument("--out", default=str(RECORD),
                   help="JSON record (default cifar_lib/records/open_set.json, shipped with the "
                        "package for lesson 04)")


def main(args: argparse.Namespace) -> int:
    result = run(known=args.known, recipe=args.recipe, epochs=args.epochs, seed=args.seed,
                 fast_images=args.fast_images, quick=args.quick, root=args.data_root,
                 download=args.download, progress=args.progress,
                 log=lambda s: print(s, file=sys.stderr))
    print_table(result["rows"], {"model": "model", "score": "score", "unknowns": "unknowns",
                                 "AUROC": lambda r: f"{r['auroc']:.3f}",
                                 "FPR@95%TPR": lambda r: f"{r['fpr_at_95_tpr']:.3f}",
                                 "unknown images": "unknown"})
    sel = result["selection"]
    print(f"\nchosen on validation: {sel['chosen']} (AUROC "
          + ", ".join(f"{s} {a:.3f}" for s, a in sel["auroc"].items()) + ")")
    for p in result["photos"]:
        print(f"{p['photo']}: score {p['score']:.4g}"
              + ("  none of these" if p["none_of_these"] else ""))
    write_record(Path(args.out), result.pop("rows"), benchmark="open-set",
                 command=args.command_line, settings=settings(args), **result)
    print(f"record written to {args.out}")
    return 0
