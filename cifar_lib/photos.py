"""Your own photos: decode them safely, turn them into the network's 32×32 input, and
classify them (top-k classes, calibrated probabilities, a confidence flag).

A photo from a phone or the web is nothing like a CIFAR-10 image: it can be rotated by an EXIF
tag, have an alpha channel, a palette, 16 bits per channel or CMYK ink, be an animation, be
truncated, or be a "decompression bomb" (a tiny file that claims billions of pixels).
``load_image`` turns all of these into a plain RGB image or one clear ``ImageError``;
``to_model_input`` then makes the 3×32×32 uint8 tensor the network sees, and ``model_views`` the
V×3×32×32 views whose probabilities a prediction averages ("multi_crop": photo TTA).
``predict`` classifies photos with a run; ``compare_methods`` measures which method serves a
model best on labelled photos.

A CIFAR-10 network always answers with one of its ten classes, even for a giraffe. The top
probability is a weak signal of "I am not sure": below the run's threshold the prediction is
flagged ``confident=False``. The probabilities are calibrated with the run's temperature when it
has one, so that "80 %" means right about 80 % of the time on CIFAR-10-like images.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from .batches import normalize
from .checkpoint import load_run
from .inference import predict_logits

# Refuse images with more pixels than this before decoding them: 64 megapixels is more than any
# phone photo (a 200 MP sensor bins to 50 MP) and still only ~200 MB as RGB.
MAX_PIXELS = 64_000_000
# load_image shrinks anything larger (longest side, pixels): plenty to show, and 32×32 is the goal.
MAX_SIDE = 1024
# How a photo becomes the network's input. center_crop and squash make one 32×32 image
# (``to_model_input``); multi_crop makes several views (``model_views``) whose probabilities are
# averaged, so it only goes through ``model_views`` / ``photo_probabilities``.
METHODS = ("center_crop", "squash", "multi_crop")
SINGLE_VIEW_METHODS = ("center_crop", "squash")
# How a photo becomes 32×32 by default: the whole photo squashed to a square, as the original
# notebook did. A handful of sample photos is too few to choose between methods on; with a few
# dozen labelled photos of your own, ``compare_methods`` measures which serves a model best.
PHOTO_METHOD = "squash"


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message names the file and the reason."""


class Upload(bytes):
    """The bytes of an uploaded file that remember its name (for messages and plot titles)."""

    def __new__(cls, data: bytes, name: str):
        obj = super().__new__(cls, data)
        obj.name = name
        return obj


Source = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


def source_name(source: Source) -> str:
    """A short name for ``source``: the file name, an upload's name, or a description."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    name = getattr(source, "name", None)  # Upload, open files
    if isinstance(name, str):
        return Path(name).name
    if isinstance(source, Image.Image):
        return "<PIL image>"
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else "<file>"


def _open(source: Source, name: str) -> Image.Image:
    """Open lazily (header only) with PIL's own bomb check turned into ImageError."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise ImageError(f"{name} is empty (0 bytes): it is not an image")
        fp = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{source} is a folder, not an image file: pass the photos in it, "
                             f"e.g. {Path(source) / '*.jpg'}")
        if not path.is_file():
            raise ImageError(f"{name} does not exist: check the path")
        if path.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes): it is not an image")
        fp = path
    else:
        fp = source
    try:
        with warnings.catch_warnings():
            # PIL only *warns* between MAX_IMAGE_PIXELS and twice that; make it an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name} claims too many pixels to decode safely ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file PIL can read "
                         f"(JPEG, PNG, GIF, WebP, BMP, TIFF, ...)") from None
    except Exception as e:  # OSError, SyntaxError, struct errors from a mangled header
        raise ImageError(f"{name} could not be opened as an image "
                         f"({type(e).__name__}: {e})") from None


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The smallest size, same aspect ratio, whose longest side is ``max_side``."""
    scale = max_side / max(size)
    return max(1, int(size[0] * scale + 0.999)), max(1, int(size[1] * scale + 0.999))


def _high_bit_to_8bit(img: Image.Image) -> Image.Image:
    """Greyscale with more than 8 bits (I;16*, I, F) → 'L', rescaling rather than clipping.

    PIL's own convert('L') clips at 255, which turns a 16-bit photo almost white.
    """
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        a = a / 257.0                              # 0..65535 → 0..255
    elif img.mode == "F" and a.size and a.min() >= 0 and a.max() <= 1.0:
        a = a * 255.0                              # float image in [0, 1]
    elif a.size and (a.min() < 0 or a.max() > 255):
        if img.mode == "I" and a.min() >= 0 and a.max() <= 65535:
            a = a / 257.0                          # 16-bit PNGs open as 'I' in some versions
        else:                                      # unknown range: stretch to 0..255
            lo, hi = a.min(), a.max()
            a = (a - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(img: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """RGBA → RGB composited onto ``background`` (white): transparent pixels hold arbitrary
    colours (often black), which the network would otherwise see."""
    rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → 'RGB' (alpha composited onto white, >8-bit greyscale rescaled)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
            img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        return _flatten_alpha(img)
    if img.mode.startswith("I") or img.mode == "F":
        return _high_bit_to_8bit(img).convert("RGB")
    # P, L, 1, CMYK, YCbCr: PIL converts these directly (CMYK naively, without an ICC profile).
    return img.convert("RGB")


def load_image(source: Source, *, max_side: int | None = MAX_SIDE,
               max_pixels: int | None = None) -> Image.Image:
    """A path, bytes, open file or PIL image → an upright RGB PIL image.

    Applies the EXIF orientation, converts every colour mode to RGB (transparency onto white),
    takes the first frame of an animation, and shrinks the image so its longest side is at most
    ``max_side`` (None: keep the full size); JPEGs are shrunk while decoding (``Image.draft``,
    DCT scaling), which is several times faster than decoding the full photo.
    Raises ``ImageError`` (a ValueError) naming the file for anything that is not a usable image:
    not an image, empty, truncated, or more than ``max_pixels`` pixels (default ``MAX_PIXELS``,
    checked before decoding; PIL itself refuses more than 2 × Image.MAX_IMAGE_PIXELS ≈ 179 MP).
    """
    return _load(source, max_side, max_pixels)


def _load(source: Source, max_side: int | None, max_pixels: int | None,
          record: Callable[[str, Image.Image], None] | None = None) -> Image.Image:
    """load_image; ``record(step, image)``, if given, sees the image after each step."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    # Messages name a path exactly as given (the user can find it); other sources by name.
    name = str(source) if isinstance(source, (str, os.PathLike)) else source_name(source)
    opened = None if isinstance(source, Image.Image) else _open(source, name)
    try:
        return _decode(source if opened is None else opened, name, max_side, max_pixels, record)
    finally:
        if opened is not None:
            opened.close()  # the result is always a new image; release the file handle now


def _decode(img: Image.Image, name: str, max_side: int | None, max_pixels: int,
            record: Callable[[str, Image.Image], None] | None = None) -> Image.Image:
    """load_image after opening: size check, draft, decode, orientation, mode, shrink.

    ``record`` (preprocessing_steps) gets a copy of the image after decoding, orientation, mode
    conversion and shrinking; copies, because the opened file's image is closed afterwards.
    """
    source = img
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{name} is {w}×{h} = {w * h / 1e6:.0f} megapixels, more than the "
                         f"{max_pixels / 1e6:.0f} MP limit (cifar_lib.photos.MAX_PIXELS): "
                         f"refusing to decode it")
    try:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animations: the first frame only
        if max_side is not None and max(w, h) > max_side:
            # JPEG (and MPO) only, a no-op elsewhere; before load(): decode at 1/2, 1/4 or 1/8.
            img.draft(None, _draft_size((w, h), max_side))
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            warnings.warn("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated files are "
                          "padded with grey instead of being refused", stacklevel=3)
        img.load()
        if record:
            record("decoded", img.copy())
        img = ImageOps.exif_transpose(img)
        if record:
            record("exif_transpose", img.copy())
        img = to_rgb(img)
        if record:
            record("rgb", img.copy())
    except ImageError:
        raise
    except Exception as e:  # truncated data, corrupt chunks, decoder errors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{name} could not be decoded: {reason} "
                         f"(is the file complete and really an image?)") from None
    if max_side is not None and max(img.size) > max_side:
        img = img.copy() if img is source else img
        # reducing_gap: a cheap integer box-reduce first, then the exact filter on a small image.
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if record:
        record("shrink", img.copy())
    return img


def square_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square inside an image of ``size``."""
    w, h = size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def to_model_input(img: Source, size: int = 32, method: str = PHOTO_METHOD) -> torch.Tensor:
    """An image (anything ``load_image`` takes) → uint8 tensor 3×size×size, RGB.

    method "center_crop": the largest centred square, resized (the object keeps its shape, as
    in CIFAR-10, where objects are roughly centred in square photos); "squash": the whole photo
    resized to a square without cropping, as the original notebook did, which stretches it.
    Both use Lanczos resampling, antialiased (a 1000→32 resize would otherwise alias badly);
    ``reducing_gap`` box-reduces first for speed. "multi_crop" makes several images: it is
    refused here with a ValueError pointing to ``model_views``.
    """
    _check_single_view(method)
    return _to_tensor(_resize(_as_rgb(img), size, method))


def _as_rgb(img: Source) -> Image.Image:
    """An RGB PIL image is used as it is (already loaded); anything else goes through load_image."""
    if not isinstance(img, Image.Image) or img.mode != "RGB":
        img = load_image(img)
    return img


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")


def _check_single_view(method: str) -> None:
    """center_crop or squash; multi_crop gets a message saying where it is handled."""
    check_method(method)
    if method not in SINGLE_VIEW_METHODS:
        raise ValueError(f"method {method!r} makes several views, not one image: use "
                         f"model_views(img, size, {method!r}) (V×3×size×size) and average the "
                         f"probabilities over the views (photo_probabilities), or pick one of "
                         f"{', '.join(SINGLE_VIEW_METHODS)}")


def _box(img: Image.Image, method: str) -> tuple[int, int, int, int]:
    """The part of ``img`` that ``method`` keeps: the centred square, or all of it (squash)."""
    _check_single_view(method)
    return square_box(img.size) if method == "center_crop" else (0, 0) + img.size


def _resize(img: Image.Image, size: int, method: str) -> Image.Image:
    """RGB ``img`` → size×size RGB: the ``method`` box, Lanczos-resized in one call."""
    return _resize_box(img, size, _box(img, method))


def _resize_box(img: Image.Image, size: int, box: tuple[int, int, int, int]) -> Image.Image:
    """The ``box`` (left, top, right, bottom) of RGB ``img`` → size×size, Lanczos, in one call."""
    return img.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _to_tensor(small: Image.Image) -> torch.Tensor:
    """RGB PIL image H×W → uint8 tensor 3×H×W (channels first, as PyTorch wants them)."""
    return torch.from_numpy(np.array(small, dtype=np.uint8)).permute(2, 0, 1).contiguous()


# ----------------------------------------------------------------------------- photo TTA
# The zooms of multi_crop: centred squares this fraction of the short side. A CIFAR-10 object
# fills most of its 32×32 frame; in a photo it is often smaller, and zooming in helps then.
ZOOMS = (0.8, 0.64)


def _centred_square(size: tuple[int, int], fraction: float) -> tuple[int, int, int, int]:
    """The centred square whose side is ``fraction`` of the short side (at least 1 pixel)."""
    w, h = size
    side = max(1, round(min(w, h) * fraction))
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def multi_crop_boxes(size: tuple[int, int]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The 6 views of "multi_crop" for an image of ``size`` (w, h), as [(name, box)] with
    box = (left, top, right, bottom) in pixels, always in this order:

    'squash' (the whole photo), 'centre' (the largest centred square = center_crop),
    'zoom 80%' and 'zoom 64%' (centred squares of that fraction of the short side: the object
    larger in the frame, as in CIFAR-10), and the largest squares at both ends of the long side:
    'left'/'right' for a landscape (or square) photo, 'top'/'bottom' for a portrait one (a
    subject off-centre). For a square photo the end squares equal 'centre': it then counts
    three times; the number of views stays 6 so that photos batch together.
    """
    w, h = size
    side = min(w, h)
    ends = ([("left", (0, 0, side, side)), ("right", (w - side, 0, w, side))] if w >= h else
            [("top", (0, 0, side, side)), ("bottom", (0, h - side, side, h))])
    return ([("squash", (0, 0, w, h)), ("centre", square_box(size))]
            + [(f"zoom {f:.0%}", _centred_square(size, f)) for f in ZOOMS] + ends)


def model_views(img: Source, size: int = 32, method: str = PHOTO_METHOD) -> torch.Tensor:
    """An image (anything ``load_image`` takes) → uint8 tensor V×3×size×size: the views of it
    that the network classifies, whose probabilities a prediction averages.

    "center_crop" and "squash": V = 1, ``to_model_input(img, size, method)[None]``.
    "multi_crop": V = 6, the boxes of ``multi_crop_boxes`` in that order, each Lanczos-resized
    like the others. (The run's own TTA then adds flips and 1-pixel shifts of each view.)
    """
    check_method(method)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a whole number of pixels ≥ 1 (32 for CIFAR-10 models), "
                         f"got {size!r}")
    img = _as_rgb(img)
    boxes = ([box for _, box in multi_crop_boxes(img.size)] if method == "multi_crop"
             else [_box(img, method)])
    return torch.stack([_to_tensor(_resize_box(img, size, box)) for box in boxes])


STEPS = ("decoded", "exif_transpose", "rgb", "shrink", "crop", "resize", "to_tensor",
         "normalize")


def preprocessing_steps(source: Source, size: int = 32, method: str = PHOTO_METHOD, *,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None
                        ) -> list[tuple[str, Image.Image | torch.Tensor]]:
    """Every intermediate of ``load_image`` + ``to_model_input`` (+ normalisation), in order.

    Returns [(step, value)] with the steps of ``STEPS``: 'decoded' (the pixels as stored in the
    file, in its own mode and orientation; JPEGs larger than ``MAX_SIDE`` already reduced while
    decoding), 'exif_transpose' (upright), 'rgb', 'shrink' (longest side ≤ ``MAX_SIDE``), 'crop'
    (the part that ``method`` keeps: the centred square, or the whole photo for 'squash'),
    'resize' (size×size) — all PIL images — then 'to_tensor' (uint8 3×size×size, equal to
    ``to_model_input(source, size, method)`` for a file, bytes or upload) and, only when
    ``mean`` and ``std`` are given (a run's, e.g. ``load_run(run).mean``), 'normalize' (float32
    3×size×size, exactly what ``predict`` feeds the network). The 'resize' step resizes the
    crop box of the 'shrink' image in one call, as ``to_model_input`` does; 'crop' shows that box.
    Raises ``ImageError`` as ``load_image`` does; "multi_crop" (several views, see
    ``multi_crop_boxes``) is refused with a ValueError.
    """
    _check_single_view(method)
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std (e.g. load_run(run).mean and .std), or neither")
    steps: list[tuple[str, Image.Image | torch.Tensor]] = []
    img = _load(source, MAX_SIDE, None, lambda step, im: steps.append((step, im)))
    steps.append(("crop", img.crop(_box(img, method))))
    small = _resize(img, size, method)
    steps.append(("resize", small))
    x = _to_tensor(small)
    steps.append(("to_tensor", x))
    if mean is not None:
        steps.append(("normalize", normalize(x[None], mean, std)[0]))
    return steps


SAMPLES = Path(__file__).resolve().parent / "sample_images"


def sample_images() -> list[Path]:
    """The sample photos shipped inside the package (so they exist on Colab too)."""
    return sorted(SAMPLES.glob("*.jpg"))


# What each sample photo shows: its CIFAR-10 class, or None (a giraffe is none of the ten).
SAMPLE_LABELS = {"dog.jpg": "dog", "dog_close.jpg": "dog", "eagle.jpg": "bird",
                 "giraffe.jpg": None, "horse_close.jpg": "horse", "horses.jpg": "horse"}


def labelled_samples() -> list[tuple[Path, str]]:
    """[(sample photo, its class)] for the samples of a CIFAR-10 class: what ``compare_methods``
    measures preprocessing on."""
    return [(p, SAMPLE_LABELS[p.name]) for p in sample_images() if SAMPLE_LABELS.get(p.name)]

@dataclass
class Prediction:
    """One photo's result. top_k: [(class name, probability)], most probable first;
    probs: float32 tensor C (sums to 1); image: the loaded RGB photo; input: uint8 3×32×32
    (what the network saw; V×3×32×32, the views, for 'multi_crop'); temperature: the T the
    logits were divided by (1.0 = uncalibrated).
    For a file that failed to load (``errors="report"``), ``error`` holds the message and
    everything else is empty."""
    name: str
    top_k: list[tuple[str, float]] = field(default_factory=list)
    confident: bool = False
    probs: torch.Tensor | None = None
    image: Image.Image | None = None
    input: torch.Tensor | None = None
    error: str | None = None
    temperature: float = 1.0
    # "None of these" from the run's detector (cifar_lib.ood; None: the run has none):
    # True when the photo's score is below the detector's threshold.
    none_of_these: bool | None = None
    ood_score: float | None = None

    @property
    def label(self) -> str | None:
        """The top class name (None for a failed file)."""
        return self.top_k[0][0] if self.top_k else None

    @property
    def probability(self) -> float | None:
        return self.top_k[0][1] if self.top_k else None

    def summary(self) -> str:
        """e.g. ``dog 81.2%, cat 9.0%, deer 3.1%`` (+ ``(not confident)``), or the error."""
        if self.error:
            return f"error: {self.error}"
        ranked = ", ".join(f"{c} {p:.1%}" for c, p in self.top_k)
        return (ranked + ("" if self.confident else "  (not confident)")
                + ("  (none of these?)" if self.none_of_these else ""))

    def __str__(self) -> str:
        return f"{self.name}: {self.summary()}"


def _is_batch(images) -> bool:
    return isinstance(images, (list, tuple)) or (
        not isinstance(images, (str, os.PathLike, bytes, bytearray, Image.Image))
        and hasattr(images, "__iter__") and not hasattr(images, "read"))


def predict(model_or_run, images: Source | Sequence[Source], *, top_k: int = 3,
            threshold: float | None = None, method: str = PHOTO_METHOD, tta_level: int | None = None,
            device: str | torch.device = "auto", errors: str = "raise",
            calibrated: bool = True):
    """Classify one photo (returns a ``Prediction``) or a list of photos (returns a list).

    images: paths, bytes (e.g. ``Upload``), open files or PIL images. Each is loaded with
    ``load_image`` and reduced to 32×32 views by ``method`` ('squash', the default, see
    ``PHOTO_METHOD``; 'center_crop'; or 'multi_crop', six crops whose probabilities are
    averaged), normalised with the checkpoint's mean/std and run through the model (with the
    run's TTA unless ``tta_level`` says otherwise). The probabilities are softmax(logits / T)
    with the run's temperature when ``calibrated`` and it has one for that TTA level
    (``Prediction.temperature`` says which T). ``confident`` is True when the top probability
    ≥ ``threshold`` (None: the run's calibrated threshold, chosen on its validation split, see
    ``LoadedModel.confidence_threshold``; 0.5 for an uncalibrated run). errors: 'raise' (an
    unusable image raises ImageError) or 'report' (its Prediction carries ``error`` and the
    other photos are still classified).

    >>> from cifar_lib import CLASSES, load_pretrained, predict
    >>> from cifar_lib.photos import sample_images
    >>> p = predict(load_pretrained("fast"), sample_images()[0], top_k=3)
    >>> len(p.top_k), p.label in CLASSES, 0 < p.probability <= 1
    (3, True, True)
    """
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
    check_method(method)
    single = not _is_batch(images)
    sources = [images] if single else list(images)
    lm = load_run(model_or_run, device, calibrated=calibrated)
    k = max(1, min(top_k, len(lm.classes)))
    results: list[Prediction] = []
    for src in sources:
        name = source_name(src)
        try:
            img = load_image(src)
            results.append(Prediction(name=name, image=img, input=model_views(img, 32, method)))
        except ImageError as e:
            if errors == "raise":
                raise
            results.append(Prediction(name=name, error=str(e)))
    ok = [r for r in results if r.error is None]
    if ok:
        tta = lm.tta_level if tta_level is None else tta_level
        probs = photo_probabilities(lm, [r.input for r in ok], tta_level=tta,
                                    calibrated=calibrated)                # B×C
        temperature = lm.temperature_for(tta, calibrated)
        if threshold is None:
            threshold = lm.confidence_threshold(calibrated, tta)
        top_p, top_i = probs.topk(k, dim=1)
        for r, p, tp, ti in zip(ok, probs, top_p.tolist(), top_i.tolist()):
            r.probs = p
            r.top_k = [(lm.classes[i], float(q)) for i, q in zip(ti, tp)]
            r.confident = tp[0] >= threshold
            r.temperature = temperature
            if len(r.input) == 1:  # one view: keep the 3×32×32 the network saw
                r.input = r.input[0]
        from .ood import annotate  # "none of these", when the run has a detector
        annotate(lm, ok)
    return results[0] if single else results


def photo_probabilities(run, views: Sequence[torch.Tensor], *, tta_level: int | None = None,
                        calibrated: bool = True, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities N×C for N photos, each given as its views (uint8 V_i×3×32×32, from
    ``model_views``): the mean over a photo's views of ``lm.probabilities`` (softmax of the
    logits / the run's temperature, with the run's TTA unless ``tta_level`` says otherwise).

    All views of all photos go through the network in one ``predict_logits`` call. A photo with
    one view gets exactly what a single-image prediction gives. ``run``: anything ``load_run``
    takes (a run folder, a ``LoadedModel``).
    """
    lm = load_run(run)
    for i, v in enumerate(views):
        if not (isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.ndim == 4
                and len(v) >= 1 and v.shape[1] == 3):
            what = f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"views[{i}] must be a uint8 tensor V×3×H×W with V ≥ 1 (what "
                             f"model_views returns), got {what}")
    if len(views) == 0:
        return torch.empty(0, len(lm.classes))
    tta = lm.tta_level if tta_level is None else tta_level
    logits = predict_logits(lm.model, torch.cat(list(views)), lm.mean, lm.std, tta_level=tta,
                            batch_size=batch_size)
    probs = lm.probabilities(logits, calibrated, tta)                   # (ΣV)×C
    return torch.stack([p.mean(0) for p in probs.split([len(v) for v in views])])


def compare_methods(run, labelled_photos: Iterable[tuple[Source, str]],
                    methods: Sequence[str] = METHODS, *, size: int = 32,
                    tta_level: int | None = None, calibrated: bool = True) -> list[dict]:
    """How well each preprocessing ``method`` serves a model on photos whose class is known.

    labelled_photos: [(photo, class name)], the class one of the run's classes (leave photos of
    no class, a giraffe, out). Returns one row per photo and method, photos in the given order
    within each method: {'photo': its name, 'true_class', 'method', 'predicted' (top class),
    'p_true' (probability of the true class, averaged over the views for multi_crop),
    'correct' (predicted == true_class)}. ``method_scores`` summarises the rows per method.
    """
    lm = load_run(run)
    pairs = list(labelled_photos)
    for _, cls in pairs:
        if cls not in lm.classes:
            raise ValueError(f"unknown class {cls!r}: label each photo with one of "
                             f"{', '.join(lm.classes)} (and leave out photos of no class)")
    for m in methods:
        check_method(m)
    loaded = [(source_name(src), load_image(src), cls) for src, cls in pairs]
    rows = []
    for method in methods:
        views = [model_views(img, size, method) for _, img, _ in loaded]
        probs = photo_probabilities(lm, views, tta_level=tta_level, calibrated=calibrated)
        for (name, _, cls), p in zip(loaded, probs):
            predicted = lm.classes[int(p.argmax())]
            rows.append({"photo": name, "true_class": cls, "method": method,
                         "predicted": predicted, "p_true": float(p[lm.classes.index(cls)]),
                         "correct": predicted == cls})
    return rows


def method_scores(rows: Sequence[dict]) -> list[dict]:
    """``compare_methods`` rows → one row per method, best first: {'method', 'photos',
    'top1' (fraction correct), 'mean_p_true', 'mean_log_p_true' (the ranking: it punishes a
    confidently wrong answer most, where top-1 ignores how wrong)}."""
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    scores = [{"method": m, "photos": len(rs),
               "top1": sum(r["correct"] for r in rs) / len(rs),
               "mean_p_true": sum(r["p_true"] for r in rs) / len(rs),
               # clamp: a probability that underflowed to 0 would make the mean -inf
               "mean_log_p_true": sum(math.log(max(r["p_true"], 1e-12)) for r in rs) / len(rs)}
              for m, rs in by_method.items()]
    return sorted(scores, key=lambda s: -s["mean_log_p_true"])
