"""Your own photos → RGB PIL images → 32×32 model input.

A photo from a phone or the web is nothing like a CIFAR-10 image: it can be rotated by an EXIF
tag, have an alpha channel, a palette, 16 bits per channel or CMYK ink, be an animation, be
truncated, or be a "decompression bomb" (a tiny file that claims billions of pixels).
``load_image`` turns all of these into a plain RGB image or one clear ``ImageError``;
``to_model_input`` then makes the 3×32×32 uint8 tensor the network sees, and ``model_views`` the
V×3×32×32 views whose probabilities a prediction averages ("multi_crop": photo TTA).
``compare_methods`` measures which method serves a model best on labelled photos.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from .batches import normalize


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
                         f"{max_pixels / 1e6:.0f} MP limit (cifar_lib.images.MAX_PIXELS): "
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


def to_model_input(img: Source, size: int = 32, method: str = "center_crop") -> torch.Tensor:
    """An image (anything ``load_image`` takes) → uint8 tensor 3×size×size, RGB.

    method "center_crop": the largest centred square, resized (the object keeps its shape, as
    in CIFAR-10, where objects are roughly centred in square photos); "squash": the whole photo
    resized to a square without cropping, as the seed notebook did, which stretches it.
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


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")


def _check_single_view(method: str) -> None:
    """center_crop or squash; multi_crop gets a message saying where it is handled."""
    _check_method(method)
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


def model_views(img: Source, size: int = 32, method: str = "center_crop") -> torch.Tensor:
    """An image (anything ``load_image`` takes) → uint8 tensor V×3×size×size: the views of it
    that the network classifies, whose probabilities a prediction averages.

    "center_crop" and "squash": V = 1, ``to_model_input(img, size, method)[None]``.
    "multi_crop": V = 6, the boxes of ``multi_crop_boxes`` in that order, each Lanczos-resized
    like the others. (The run's own TTA then adds flips and 1-pixel shifts of each view.)
    """
    _check_method(method)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a whole number of pixels ≥ 1 (32 for CIFAR-10 models), "
                         f"got {size!r}")
    img = _as_rgb(img)
    boxes = ([box for _, box in multi_crop_boxes(img.size)] if method == "multi_crop"
             else [_box(img, method)])
    return torch.stack([_to_tensor(_resize_box(img, size, box)) for box in boxes])


STEPS = ("decoded", "exif_transpose", "rgb", "shrink", "crop", "resize", "to_tensor",
         "normalize")


def preprocessing_steps(source: Source, size: int = 32, method: str = "center_crop", *,
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


# The shipped close-ups, cut from the shipped photos by ``make_sample_crops`` (JPEG quality 90):
# {file: (source photo, box (left, top, right, bottom) in its upright pixels, why)}. They show
# the lesson "an object filling the frame, as in CIFAR-10, versus a small object in a scene".
# (Documented here rather than in a README: every file in sample_images/ is treated as a photo.)
SAMPLE_CROPS = {
    "dog_close.jpg": ("dog.jpg", (100, 210, 340, 450),
                      "the dog's head and body filling a square frame, as CIFAR-10's dogs do; in "
                      "dog.jpg it is a small part of a porch scene with a bicycle and a truck"),
    "horse_close.jpg": ("horses.jpg", (415, 175, 620, 380),
                        "one grey horse side-on, filling a square frame; horses.jpg is a herd "
                        "of five small horses in a wide landscape"),
}


def make_sample_crops(source_folder: str | os.PathLike = SAMPLES,
                      out_folder: str | os.PathLike = SAMPLES, quality: int = 90) -> list[Path]:
    """Write the ``SAMPLE_CROPS`` close-ups (JPEG ``quality``) from the photos in
    ``source_folder`` into ``out_folder``; returns their paths. How the shipped ones were made."""
    out = []
    for name, (source, box, _) in SAMPLE_CROPS.items():
        img = load_image(Path(source_folder) / source, max_side=None)
        path = Path(out_folder) / name
        img.crop(box).save(path, "JPEG", quality=quality)
        out.append(path)
    return out
