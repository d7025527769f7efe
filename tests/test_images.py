"""load_image / to_model_input on every kind of awkward file, each made on the fly."""
from __future__ import annotations

import io
import struct
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_lib import images, notebook
from cifar_lib.images import ImageError, Upload, load_image, to_model_input
from cifar_lib.notebook import upload_or_paths

SAMPLES = Path(__file__).resolve().parent.parent / "cifar_lib" / "sample_images"


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 1×1 PNG whose IHDR is patched to claim width×height (nothing is allocated)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # Signature (8) | length (4) | b"IHDR" (4) | width, height (4+4) | 5 more bytes | CRC (4)
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_text_file_named_jpg_is_refused(tmp_path):
    f = tmp_path / "notes.jpg"
    f.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match=r"notes\.jpg is not an image") as e:
        load_image(f)
    assert str(e.value).startswith(str(f))  # the path as given, so the user can find it


def test_empty_file_is_refused(tmp_path):
    f = tmp_path / "empty.jpg"
    f.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg is empty"):
        load_image(f)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_truncated_jpeg_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    f = tmp_path / "cut.jpg"
    f.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with Image.open(f) as im:
        assert im.size == (64, 64)  # the header alone is fine: only decoding fails
    with pytest.raises(ImageError, match=r"cut\.jpg could not be decoded"):
        load_image(f)


def test_huge_png_is_refused_before_decoding(tmp_path):
    # 10^10 pixels: PIL's own DecompressionBombError, which must come out as ImageError.
    with pytest.raises(ImageError, match=r"bomb\.png claims too many pixels"):
        load_image(_png_claiming(tmp_path / "bomb.png", 100_000, 100_000))
    # 81 MP: under PIL's limit, over ours. Decoding would fail (there is 1 pixel of data), so the
    # message proves the size was checked first.
    f = _png_claiming(tmp_path / "big.png", 9000, 9000)
    with pytest.raises(ImageError, match=r"big\.png is 9000×9000 = 81 megapixels"):
        load_image(f)
    # Between PIL's warning and error thresholds: the warning is an error too.
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(_png_claiming(tmp_path / "warn.png", 10_000, 10_000), max_pixels=10 ** 12)


def test_max_pixels_is_configurable(tmp_path):
    f = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(f)
    assert load_image(f).size == (100, 100)
    with pytest.raises(ImageError, match="limit"):
        load_image(f, max_pixels=5_000)
    assert images.MAX_PIXELS == 64_000_000


def test_cmyk_becomes_rgb(tmp_path):
    f = tmp_path / "cmyk.tif"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(f)  # no cyan, full magenta+yellow = red
    img = load_image(f)
    assert img.mode == "RGB"
    assert img.getpixel((4, 4)) == (255, 0, 0)


def test_16bit_greyscale_is_rescaled_not_clipped(tmp_path):
    a = np.zeros((4, 4), np.uint16)
    a[:2] = 65535
    a[2:] = 32768
    f = tmp_path / "grey16.png"
    Image.fromarray(a).save(f)
    with Image.open(f) as im:
        assert im.mode.startswith("I")
    img = load_image(f)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((0, 3)) == (128, 128, 128)  # PIL's convert would clip this to 255


def test_float_greyscale_in_unit_range():
    img = load_image(Image.fromarray(np.full((3, 3), 0.5, np.float32), mode="F"))
    assert img.getpixel((1, 1)) == (128, 128, 128)


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))  # transparent black
    rgba.putpixel((0, 0), (255, 0, 0, 255))           # one opaque red pixel
    f = tmp_path / "alpha.png"
    rgba.save(f)
    img = load_image(f)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 0, 0)
    assert img.getpixel((3, 1)) == (255, 255, 255)  # not black


def test_greyscale_with_alpha(tmp_path):
    f = tmp_path / "la.png"
    Image.new("LA", (2, 2), (0, 0)).save(f)
    assert load_image(f).getpixel((1, 1)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    p.putpixel((1, 1), 1)
    f = tmp_path / "palette.png"
    p.save(f, transparency=0)
    img = load_image(f)
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == (0, 0, 255)
    assert img.getpixel((0, 0)) == (255, 255, 255)  # the transparent index


def test_palette_without_transparency(tmp_path):
    f = tmp_path / "plain.gif"
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 128, 0] * 256)
    p.save(f)
    with Image.open(f) as im:
        assert im.mode == "P"
    assert load_image(f).getpixel((2, 2)) == (0, 128, 0)


def test_animation_gives_first_frame(tmp_path):
    f = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(f, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(f) as im:
        assert im.n_frames == 2
    assert load_image(f).getpixel((1, 1)) == (255, 0, 0)


def test_exif_rotation_is_applied(tmp_path):
    raw = Image.new("RGB", (40, 20), (255, 0, 0))
    raw.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue
    exif = raw.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    f = tmp_path / "rotated.jpg"
    raw.save(f, exif=exif.tobytes(), quality=95)
    img = load_image(f)
    assert img.size == (20, 40)
    r_top, _, b_top = img.getpixel((10, 5))
    r_bottom, _, b_bottom = img.getpixel((10, 35))
    assert r_top > 200 and b_top < 60        # the left (red) half is now on top
    assert b_bottom > 200 and r_bottom < 60


def test_large_jpeg_is_shrunk(tmp_path):
    x = np.linspace(0, 255, 3000, dtype=np.uint8)
    f = tmp_path / "large.jpg"
    Image.fromarray(np.stack([np.tile(x, (2000, 1))] * 3, -1)).save(f)
    img = load_image(f, max_side=500)
    assert img.size == (500, 333)
    assert load_image(f, max_side=None).size == (3000, 2000)


def test_bytes_and_uploads_are_named():
    buf = io.BytesIO()
    Image.new("RGB", (10, 6), "green").save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (10, 6)
    assert load_image(Upload(buf.getvalue(), "mine.png")).size == (10, 6)
    with pytest.raises(ImageError, match=r"^holiday\.jpg "):
        load_image(Upload(b"garbage", "holiday.jpg"))


def test_center_crop_versus_squash():
    img = Image.new("RGB", (64, 32), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, 16, 32))    # left quarter red
    img.paste((0, 0, 255), (48, 0, 64, 32))   # right quarter blue
    crop = to_model_input(img)
    squash = to_model_input(img, method="squash")
    assert crop.shape == squash.shape == (3, 32, 32) and crop.dtype == torch.uint8
    assert crop[:, :, 2].tolist() == [[0] * 32, [255] * 32, [0] * 32]  # the crop is all green
    assert squash[0, :, 0].min() > 200 and squash[2, :, -1].min() > 200  # red left, blue right
    assert to_model_input(img, size=16).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="center_crop"):
        to_model_input(img, method="stretch")


def test_resize_is_antialiased():
    # A one-pixel checkerboard averages to grey when shrunk properly; naive subsampling keeps
    # only black or only white pixels.
    board = ((np.indices((320, 320)).sum(0) % 2) * 255).astype(np.uint8)
    x = to_model_input(Image.fromarray(board).convert("RGB"))
    assert 100 < x.float().mean() < 155
    assert x.float().std() < 20


def test_sample_photos_load():
    for name in ("dog.jpg", "eagle.jpg", "giraffe.jpg"):
        img = load_image(SAMPLES / name)
        assert img.mode == "RGB" and max(img.size) <= images.MAX_SIDE


def test_upload_or_paths_without_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(notebook, "on_colab", lambda: False)
    assert upload_or_paths(["a.jpg", "b.png"]) == [Path("a.jpg"), Path("b.png")]
    assert upload_or_paths("c.jpg") == [Path("c.jpg")]


def test_upload_or_paths_on_colab(monkeypatch):
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(upload=lambda: {"cat.png": b"\x89PNG..."})
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert notebook.on_colab()
    got = upload_or_paths(["default.jpg"])
    assert len(got) == 1 and got[0] == b"\x89PNG..." and got[0].name == "cat.png"
    colab.files = types.SimpleNamespace(upload=lambda: {})  # nothing uploaded: the defaults
    assert upload_or_paths(["default.jpg"]) == [Path("default.jpg")]
