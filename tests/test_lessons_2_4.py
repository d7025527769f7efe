"""What lessons 02–04 show step by step, checked: ``photos.preprocessing_steps``.

04_real_images prints every intermediate of a photo's way to the network; these tests pin that
the steps come in order, have the shapes the lesson states, follow the EXIF orientation, and end
in exactly the tensor that ``to_model_input`` (and so ``predict``) uses.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_lib.batches import normalize
from cifar_lib.photos import (MAX_SIDE, STEPS, ImageError, Upload, load_image,
                              preprocessing_steps, sample_images, to_model_input)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _rotated_jpeg(tmp_path, orientation: int = 6):
    """A 40×20 JPEG, left half red and right half blue, whose EXIF says 'rotate to display'."""
    raw = Image.new("RGB", (40, 20), (255, 0, 0))
    raw.paste((0, 0, 255), (20, 0, 40, 20))
    exif = raw.getexif()
    exif[0x0112] = orientation
    f = tmp_path / "rotated.jpg"
    raw.save(f, exif=exif.tobytes(), quality=95)
    return f


def test_steps_come_in_order_and_end_in_the_model_input():
    photo = sample_images()[0]
    steps = preprocessing_steps(photo, mean=MEAN, std=STD)
    assert [name for name, _ in steps] == list(STEPS)
    values = dict(steps)
    assert torch.equal(values["to_tensor"], to_model_input(photo))
    assert torch.equal(values["normalize"], normalize(to_model_input(photo)[None], MEAN, STD)[0])
    # without mean/std the list stops at the uint8 tensor
    assert [name for name, _ in preprocessing_steps(photo)] == list(STEPS[:-1])


def test_shapes_dtypes_and_ranges_after_each_step():
    photo = sample_images()[0]
    steps = dict(preprocessing_steps(photo, method="center_crop", mean=MEAN, std=STD))
    w, h = load_image(photo).size
    for name in ("decoded", "exif_transpose", "rgb", "shrink", "crop", "resize"):
        assert isinstance(steps[name], Image.Image), name
    assert steps["rgb"].mode == steps["shrink"].mode == "RGB"
    assert steps["shrink"].size == (w, h)
    side = min(w, h)
    assert steps["crop"].size == (side, side)
    assert steps["resize"].size == (32, 32)
    x, z = steps["to_tensor"], steps["normalize"]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert np.array_equal(x.permute(1, 2, 0).numpy(), np.asarray(steps["resize"]))  # HWC → CHW
    assert z.shape == (3, 32, 32) and z.dtype == torch.float32
    lo = [(0 - m) / s for m, s in zip(MEAN, STD)]
    hi = [(1 - m) / s for m, s in zip(MEAN, STD)]
    for c in range(3):  # each channel stays within what 0 and 255 map to
        assert lo[c] - 1e-5 <= z[c].min() and z[c].max() <= hi[c] + 1e-5
    assert z.min() < 0 < z.max()  # centred: not the 0..1 or 0..255 of the earlier steps


def test_size_and_squash():
    photo = sample_images()[0]
    steps = dict(preprocessing_steps(photo, size=16, method="squash"))
    assert steps["crop"].size == steps["shrink"].size   # squash keeps the whole photo
    assert steps["resize"].size == (16, 16)
    assert torch.equal(steps["to_tensor"], to_model_input(photo, 16, "squash"))
    with pytest.raises(ValueError, match="center_crop"):
        preprocessing_steps(photo, method="stretch")
    with pytest.raises(ValueError, match="mean and std"):
        preprocessing_steps(photo, mean=MEAN)


def test_exif_rotated_photo_is_transposed(tmp_path):
    f = _rotated_jpeg(tmp_path)
    steps = dict(preprocessing_steps(f))
    assert steps["decoded"].size == (40, 20)            # as stored: landscape
    assert steps["exif_transpose"].size == (20, 40)     # as meant: portrait
    r, _, b = steps["exif_transpose"].getpixel((10, 5))
    assert r > 200 and b < 60                            # the red (left) half is now on top
    assert steps["crop"].size == (20, 40)               # squash (the default) keeps it all
    assert dict(preprocessing_steps(f, method="center_crop"))["crop"].size == (20, 20)
    assert torch.equal(steps["to_tensor"], to_model_input(f))


def test_colour_modes_and_uploads(tmp_path):
    buf = io.BytesIO()
    Image.new("RGBA", (30, 10), (0, 0, 255, 0)).save(buf, "PNG")   # fully transparent blue
    steps = dict(preprocessing_steps(Upload(buf.getvalue(), "clear.png")))
    assert steps["decoded"].mode == "RGBA" and steps["rgb"].mode == "RGB"
    assert steps["rgb"].getpixel((0, 0)) == (255, 255, 255)          # composited onto white
    assert steps["to_tensor"].min() == 255
    grey = tmp_path / "grey.png"
    Image.new("L", (12, 12), 80).save(grey)
    steps = dict(preprocessing_steps(grey))
    assert steps["decoded"].mode == "L" and steps["rgb"].mode == "RGB"
    assert steps["to_tensor"].unique().tolist() == [80]


def test_large_photo_is_shrunk_as_load_image_does(tmp_path):
    x = np.linspace(0, 255, 2100, dtype=np.uint8)
    f = tmp_path / "large.png"
    Image.fromarray(np.stack([np.tile(x, (1400, 1))] * 3, -1)).save(f)
    steps = dict(preprocessing_steps(f))
    assert steps["rgb"].size == (2100, 1400)
    assert steps["shrink"].size == load_image(f).size and max(steps["shrink"].size) == MAX_SIDE
    assert torch.equal(steps["to_tensor"], to_model_input(f))


def test_bad_files_raise_image_error():
    with pytest.raises(ImageError, match="empty"):
        preprocessing_steps(b"")
    with pytest.raises(ImageError, match="not an image"):
        preprocessing_steps(Upload(b"not a photo", "notes.jpg"))
