""""None of these": does an image show one of the classes at all? Out-of-distribution scores.

A classifier always answers with one of its classes, and its top softmax probability can be
high for an image of none of them (a giraffe becomes a confident deer). Each score here is a
number per image, *higher for images like the training images* ("in-distribution") and lower
for unknown ones; a threshold turns it into a verdict:

- ``msp``: the top softmax probability (Hendrycks & Gimpel, 2017), the baseline;
- ``energy``: T·logsumexp(logits / T), the negative free energy (Liu et al., 2020): it keeps
  the size of the logits, which softmax throws away;
- ``mahalanobis``: minus the smallest squared Mahalanobis distance of the (L2-normalised)
  penultimate features to a class mean, one covariance shared by all classes (Lee et al., 2018);
- ``knn``: the cosine similarity of the normalised penultimate features to those of the k-th
  nearest training image (Sun et al., 2022).

The penultimate features are the input of the model's last ``nn.Linear``, caught with a
forward hook, so any model in ``cifar_lib.models`` works unchanged. ``auroc`` and
``fpr_at_tpr`` measure a score; a ``Detector`` is one score fitted to a run, with its threshold
chosen on validation images to keep a stated share (``tpr``) of in-distribution images, saved
in the run folder as ``ood.json`` (settings) and ``ood.pt`` (tensors). ``predict`` uses it
through ``annotate``. ``python -m cifar_lib train`` fits one (``fit_run``) for every run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batches import normalize
from .checkpoint import checkpoint_digest, load_run, resolve_checkpoint, unwrap
from .files import CheckpointError, atomic_write, read_json, write_json

SCORES = ("msp", "energy", "mahalanobis", "knn")
OOD_JSON = "ood.json"
OOD_TENSORS = "ood.pt"
# The share of in-distribution (validation) images a detector keeps: 1 in 20 ordinary images
# is called "none of these", the usual operating point of the literature (FPR at 95% TPR).
TPR = 0.95
# k-NN: the nearest-neighbour bank is a random subset of the training features (a 5,000×D
# bank is small enough to ship with a run); k scales with it as in Sun et al. (k=50 for 50,000).
KNN_BANK = 5_000
KNN_K = 5


# ----------------------------------------------------------------------------- scores
def msp(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Top softmax probability N (float32, 0..1) for logits N×C."""
    return F.softmax(logits.float() / temperature, dim=1).amax(1)


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Negative free energy N = T·logsumexp(logits / T) for logits N×C: large when some logit
    is large, whatever the others do (MSP only sees the differences)."""
    return temperature * torch.logsumexp(logits.float() / temperature, dim=1)


def fit_mahalanobis(features: torch.Tensor, labels: torch.Tensor, num_classes: int
                    ) -> dict[str, torch.Tensor]:
    """Class means C×D and the shared precision matrix D×D (pseudo-inverse of the within-class
    covariance) of features N×D with labels N, L2-normalised as ``mahalanobis`` does."""
    f = F.normalize(features.double(), dim=1)
    means = torch.stack([f[labels == c].mean(0) for c in range(num_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / len(f)
    # pinv: some feature channels are (nearly) constant, e.g. dead after the GELU and max-pool
    precision = torch.linalg.pinv(cov, hermitian=True, rtol=1e-6)
    return {"means": means.float(), "precision": precision.float()}


def mahalanobis(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor
                ) -> torch.Tensor:
    """Minus the smallest squared Mahalanobis distance N of L2-normalised features N×D to the
    class means C×D under ``precision`` D×D (both from ``fit_mahalanobis``)."""
    # Normalised: unknown images have *smaller* raw features than known ones, which puts them
    # nearer the class means (AUROC below 0.5 on the shipped fast model); their direction is
    # what differs.
    f = F.normalize(features.double(), dim=1)
    m, p = means.double(), precision.double()
    fp = f @ p                                                        # N×D
    # d² = fᵀPf − 2fᵀPμ + μᵀPμ for every (image, class) pair at once: N×C, never N×C×D
    d2 = (fp * f).sum(1, keepdim=True) - 2 * fp @ m.T + ((m @ p) * m).sum(1)[None]
    return (-d2.amin(1)).float()


def fit_knn(features: torch.Tensor, bank_size: int = KNN_BANK, seed: int = 0
            ) -> dict[str, torch.Tensor]:
    """The k-NN bank: ``bank_size`` of the features N×D at random, L2-normalised (float16:
    half the size, and cosine similarities need no more)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(features), generator=g)[:bank_size]
    return {"bank": F.normalize(features[idx].float(), dim=1).half()}


def knn(features: torch.Tensor, bank: torch.Tensor, k: int = KNN_K, chunk: int = 2000
        ) -> torch.Tensor:
    """Cosine similarity N of each of features N×D to its k-th nearest neighbour in ``bank``
    B×D (normalised)."""
    b = bank.float()
    f = F.normalize(features.float(), dim=1)
    out = [(part @ b.T).topk(min(k, len(b)), dim=1).values[:, -1] for part in f.split(chunk)]
    return torch.cat(out) if out else torch.empty(0)


# ----------------------------------------------------------------------------- metrics
def _scores(x) -> torch.Tensor:
    x = torch.as_tensor(x).double().flatten()
    if len(x) == 0:
        raise ValueError("need at least one score on each side")
    if torch.isnan(x).any():
        raise ValueError("scores contain NaN")
    return x


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of telling in-distribution (scores N) from unknown images
    (scores M) by "higher means known": the probability that a random known image scores
    above a random unknown one, ties counted half. 1 = perfect, 0.5 = chance."""
    s_in, s_out = torch.sort(_scores(in_scores)).values, _scores(out_scores)
    below_or_equal = torch.searchsorted(s_in, s_out, right=True)     # known images ≤ each unknown
    below = torch.searchsorted(s_in, s_out, right=False)             # known images < each unknown
    above = len(s_in) - below_or_equal
    ties = below_or_equal - below
    return float((above + 0.5 * ties).sum() / (len(s_in) * len(s_out)))


def threshold_at_tpr(in_scores, tpr: float = TPR) -> float:
    """The largest threshold that keeps at least ``tpr`` of the in-distribution scores N (a
    score ≥ threshold counts as known)."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    s = torch.sort(_scores(in_scores)).values
    # the k lowest may fall below: k = ⌊(1 − tpr)·N⌋ (a hair added against 4.9999… for 5)
    k = min(int(math.floor((1 - tpr) * len(s) + 1e-9)), len(s) - 1)
    return float(s[k])


def fpr_at_tpr(in_scores, out_scores, tpr: float = TPR) -> float:
    """The false-alarm rate at ``tpr`` true-positive rate: the share of unknown images (scores
    M) still taken for known at the threshold that keeps ``tpr`` of the known ones (scores N).
    0 = perfect; the lower the better."""
    t = threshold_at_tpr(in_scores, tpr)
    return float((_scores(out_scores) >= t).double().mean())


# ----------------------------------------------------------------------------- features
def final_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (its classifier head): its input is the penultimate
    features."""
    linears = [m for m in unwrap(model).modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(unwrap(model)).__name__} has no nn.Linear head: feature "
                         f"scores need one")
    return linears[-1]


@torch.inference_mode()
def features_and_logits(run, images: torch.Tensor, batch_size: int = 1000
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features float32 N×D, logits float32 N×C), on the CPU, for uint8 images N×3×32×32:
    one pass in eval mode, without test-time augmentation, normalised with the run's mean/std.
    ``run``: anything ``load_run`` takes."""
    lm = load_run(run, calibrated=False)  # no score uses the temperature
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 N×3×H×W, got {images.dtype} "
                         f"{tuple(images.shape)}")
    model = lm.model
    device = next(model.parameters()).device
    caught: list[torch.Tensor] = []
    hook = final_linear(model).register_forward_pre_hook(
        lambda module, inputs: caught.append(inputs[0].flatten(1).float().cpu()))
    was_training = model.training
    model.eval()
    logits = []
    try:
        for start in range(0, len(images), batch_size):
            x = normalize(images[start:start + batch_size].to(device), lm.mean, lm.std)
            logits.append(model(x).float().cpu())
    finally:
        hook.remove()
        model.train(was_training)
    if not logits:
        d = final_linear(model).in_features
        return torch.empty(0, d), torch.empty(0, len(lm.classes))
    return torch.cat(caught), torch.cat(logits)


def all_scores(logits: torch.Tensor, features: torch.Tensor, state: dict[str, torch.Tensor],
               k: int = KNN_K) -> dict[str, torch.Tensor]:
    """Every score of ``SCORES`` for logits N×C and features N×D; ``state`` holds the fitted
    'means', 'precision' (Mahalanobis) and 'bank' (k-NN)."""
    return {"msp": msp(logits), "energy": energy(logits),
            "mahalanobis": mahalanobis(features, state["means"], state["precision"]),
            "knn": knn(features, state["bank"], k)}


def fit_state(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
              bank_size: int = KNN_BANK, seed: int = 0) -> dict[str, torch.Tensor]:
    """What the feature scores need, fitted on training features N×D with labels N."""
    return {**fit_mahalanobis(features, labels, num_classes),
            **fit_knn(features, bank_size, seed)}


# ----------------------------------------------------------------------------- detector
@dataclass
class Detector:
    """One score fitted to a run: images scoring below ``threshold`` are "none of these".

    score: one of ``SCORES``; tpr: the share of validation images kept at ``threshold``;
    state: the fitted tensors the score needs ('means' C×D and 'precision' D×D, or 'bank' B×D);
    info: how it was fitted (images, split, the checkpoint's sha256, measured rates).
    """
    score: str
    threshold: float
    tpr: float = TPR
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    k: int = KNN_K
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}: use one of {', '.join(SCORES)}")

    def score_outputs(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """This detector's score N for logits N×C and features N×D (higher: more known)."""
        if self.score == "msp":
            return msp(logits)
        if self.score == "energy":
            return energy(logits)
        if self.score == "mahalanobis":
            return mahalanobis(features, self.state["means"], self.state["precision"])
        return knn(features, self.state["bank"], self.k)

    def score_images(self, run, images: torch.Tensor) -> torch.Tensor:
        """The score N of uint8 images N×3×32×32 under ``run`` (one pass, no TTA)."""
        features, logits = features_and_logits(run, images)
        return self.score_outputs(logits, features)

    def unknown(self, scores: torch.Tensor) -> torch.Tensor:
        """bool N: True where a score is below the threshold ("none of these")."""
        return torch.as_tensor(scores) < self.threshold

    def save(self, folder: str | Path) -> None:
        """Write ``ood.json`` (score, threshold, tpr, k, info) and, for the feature scores,
        ``ood.pt`` (the tensors; msp and energy have none, so a JSON file is all they need)."""
        folder = Path(folder)
        state = {k: v.contiguous() for k, v in self.state.items()}
        if state:
            atomic_write(folder / OOD_TENSORS, lambda f: torch.save(state, f))
        else:
            (folder / OOD_TENSORS).unlink(missing_ok=True)  # a stale one from another score
        write_json(folder / OOD_JSON, {"score": self.score, "threshold": self.threshold,
                                       "tpr": self.tpr, "k": self.k, "info": self.info})

    @classmethod
    def load(cls, folder: str | Path) -> "Detector":
        """Read a detector that ``save`` wrote (tensors with ``weights_only=True``)."""
        folder = Path(folder)
        try:
            meta = read_json(folder / OOD_JSON)
            state = (torch.load(folder / OOD_TENSORS, map_location="cpu", weights_only=True)
                     if meta["score"] in ("mahalanobis", "knn") else {})
            return cls(meta["score"], float(meta["threshold"]), float(meta["tpr"]), dict(state),
                       int(meta.get("k", KNN_K)), dict(meta.get("info", {})))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"{folder / OOD_JSON} (with {OOD_TENSORS}) is not a readable "
                                  f"detector ({type(e).__name__}: {str(e).splitlines()[0]}): fit "
                                  f"it again with python -m cifar_lib calibrate --run-dir "
                                  f"{folder} (in Python: ood.fit_run), or delete both "
                                  f"files") from None


def fit_detector(run, fit_images: torch.Tensor, fit_labels: torch.Tensor,
                 validation_images: torch.Tensor, *, score: str = "energy",
                 tpr: float = TPR, bank_size: int = KNN_BANK, seed: int = 0) -> Detector:
    """Fit ``score`` for ``run`` on training images (uint8 N×3×32×32, labels N) and choose its
    threshold on validation images (uint8 M×3×32×32, held out of those training images) so
    that ``tpr`` of them count as known."""
    lm = load_run(run, calibrated=False)  # no score uses the temperature
    state = {}
    if score == "mahalanobis":
        state = fit_mahalanobis(features_and_logits(lm, fit_images)[0], fit_labels,
                                len(lm.classes))
    elif score == "knn":
        state = fit_knn(features_and_logits(lm, fit_images)[0], bank_size, seed)
    detector = Detector(score, 0.0, tpr, state)   # msp and energy need no training images
    val = detector.score_images(lm, validation_images)
    detector.threshold = threshold_at_tpr(val, tpr)
    detector.info = {"fit_images": len(fit_images) if state else 0,
                     "validation_images": len(validation_images),
                     "validation_tpr": float((val >= detector.threshold).double().mean())}
    if lm.folder is not None:
        detector.info["checkpoint_sha256"] = checkpoint_digest(lm.folder)
    return detector


def detector_for(run) -> Detector | None:
    """The detector saved in a run's folder (None when it has none, or the run has no folder).
    A detector fitted for other weights (the run was trained again) raises CheckpointError."""
    lm = load_run(run, calibrated=False)  # no score uses the temperature
    if lm.folder is None or not (lm.folder / OOD_JSON).is_file():
        return None
    detector = Detector.load(lm.folder)
    sha = detector.info.get("checkpoint_sha256")
    if sha is not None and sha != checkpoint_digest(lm.folder):
        raise CheckpointError(f"{lm.folder / OOD_JSON} was fitted for another "
                              f"{resolve_checkpoint(lm.folder).name}; fit it again with "
                              f"python -m cifar_lib calibrate --run-dir {lm.folder} (in Python: "
                              f"ood.fit_run(run, train)), or delete it")
    return detector


def annotate(run, predictions: Sequence) -> None:
    """Set ``none_of_these`` (bool) and ``ood_score`` on each prediction (``predict``'s
    ``Prediction``, with its ``input``: uint8 3×32×32 or V×3×32×32 views, whose scores are
    averaged) from the run's detector; leaves them None when the run has none."""
    detector = detector_for(run) if predictions else None
    if detector is None:
        return
    views = [p.input if p.input.ndim == 4 else p.input[None] for p in predictions]
    scores = detector.score_images(run, torch.cat(views))
    for p, s in zip(predictions, scores.split([len(v) for v in views])):
        p.ood_score = float(s.mean())
        p.none_of_these = p.ood_score < detector.threshold


def fit_run(run, train, *, score: str = "energy", tpr: float = TPR,
            fit_images: int | None = 5_000, seed: int = 0) -> Detector:
    """Fit ``score`` for a run on CIFAR-10's training images ``train`` without the run's
    validation split (the first ``fit_images`` of them, None: all) and choose the threshold on
    the validation split; saves it in the run folder and returns it. ``python -m cifar_lib
    train`` and ``ship`` call it."""
    from .data import split_validation, validation_size
    lm = load_run(run, calibrated=False)  # no score uses the temperature
    if lm.folder is None:
        raise ValueError("fit_run needs a run folder to save the detector in")
    fraction = lm.config.get("val_fraction", 0)
    if not fraction:
        raise ValueError(f"{lm.folder} trained on every training image: no validation split "
                         f"is left to choose the threshold on")
    rest, validation = split_validation(train, validation_size(len(train), fraction))
    rest = rest.subset(fit_images)
    detector = fit_detector(lm, rest.images, rest.labels, validation.images, score=score,
                            tpr=tpr, seed=seed)
    fitted = (f"fitted on the first {len(rest):,} CIFAR-10 training images outside the "
              f"validation split; " if detector.state else "")
    detector.info["fitted_on"] = (f"{fitted}threshold on the validation split "
                                  f"({len(validation):,} images)")
    detector.save(lm.folder)
    return detector


def read_record() -> dict:
    """The shipped open-set record (``python -m cifar_lib bench open-set`` writes it)."""
    from . import records
    return records.read_record(records.shipped("open_set"), "open-set")
