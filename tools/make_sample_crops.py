"""Cut the shipped close-up sample photos from the shipped photos (maintainers only).

    python tools/make_sample_crops.py [SOURCE_FOLDER] [OUT_FOLDER]

How ``cifar_lib/sample_images/dog_close.jpg`` and ``horse_close.jpg`` were made; their sources
and licences are listed in ``cifar_lib/sample_images/SOURCES.md``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from cifar_lib.photos import SAMPLES, load_image

# The shipped close-ups, cut from the shipped photos by ``make_sample_crops`` (JPEG quality 90):
# {file: (source photo, box (left, top, right, bottom) in its upright pixels, why)}. They show
# the lesson "an object filling the frame, as in CIFAR-10, versus a small object in a scene".
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


if __name__ == "__main__":
    for path in make_sample_crops(*sys.argv[1:3]):
        print(path)
