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

from cifar_lib import notebook
from cifar_lib import photos
from cifar_lib.data import CLASSES
from cifar_lib.photos import ImageError, Upload, load_image, to_model_input
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
    assert photos.MAX_PIXELS == 64_000_000


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
    crop = to_model_input(img, method="center_crop")
    squash = to_model_input(img)  # the default, as predict's (PHOTO_METHOD)
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
        assert img.mode == "RGB" and max(img.size) <= photos.MAX_SIDE


def test_upload_or_paths_without_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(notebook, "on_colab", lambda: False)
    assert upload_or_paths(["a.jpg", "b.png"]) == [Path("a.jpg"), Path("b.png")]
    assert upload_or_paths("c.jpg") == [Path("c.jpg")]


def test_upload_or_paths_on_colab(monkeypatch, capsys):
    colab = types.ModuleType("google.colab")
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    colab.files = types.SimpleNamespace(upload=lambda: {"cat.png": png.getvalue(),
                                                         "notes.txt": b"not a photo"})
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert notebook.on_colab()
    got = upload_or_paths(["default.jpg"])   # the text file is left out, the photo kept
    assert len(got) == 1 and got[0] == png.getvalue() and got[0].name == "cat.png"
    assert "notes.txt is not an image" in capsys.readouterr().out
    colab.files = types.SimpleNamespace(upload=lambda: {})  # nothing uploaded: the defaults
    assert upload_or_paths(["default.jpg"]) == [Path("default.jpg")]


# ----------------------------------------------------------------------------- photo TTA

def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    """A w×h RGB photo of random pixels: every distinct box gives a distinct 32×32 view."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("w, h", [(60, 40), (40, 60), (50, 50)])  # landscape, portrait, square
def test_model_views_shapes_and_single_views(w, h):
    img = _noise(w, h)
    for method in ("center_crop", "squash"):
        v = photos.model_views(img, 32, method)
        assert v.shape == (1, 3, 32, 32) and v.dtype == torch.uint8
        assert torch.equal(v[0], to_model_input(img, 32, method))
    multi = photos.model_views(img, 16, "multi_crop")
    assert multi.shape == (6, 3, 16, 16) and multi.dtype == torch.uint8
    assert torch.equal(multi, photos.model_views(img, 16, "multi_crop"))  # deterministic
    # the 'squash' and 'centre' views are exactly the single-view methods
    assert torch.equal(multi[0], to_model_input(img, 16, "squash"))
    assert torch.equal(multi[1], to_model_input(img, 16, "center_crop"))


def test_multi_crop_boxes_landscape_portrait_square():
    assert photos.multi_crop_boxes((60, 40)) == [
        ("squash", (0, 0, 60, 40)), ("centre", (10, 0, 50, 40)), ("zoom 80%", (14, 4, 46, 36)),
        ("zoom 64%", (17, 7, 43, 33)), ("left", (0, 0, 40, 40)), ("right", (20, 0, 60, 40))]
    portrait = dict(photos.multi_crop_boxes((40, 60)))
    assert portrait["top"] == (0, 0, 40, 40) and portrait["bottom"] == (0, 20, 40, 60)
    assert portrait["centre"] == (0, 10, 40, 50) and "left" not in portrait
    square = dict(photos.multi_crop_boxes((50, 50)))
    assert square["left"] == square["right"] == square["centre"] == square["squash"]


@pytest.mark.parametrize("w, h", [(60, 40), (40, 60)])
def test_multi_crop_views_all_differ(w, h):
    v = photos.model_views(_noise(w, h, seed=1), 32, "multi_crop").float()
    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            assert (v[i] - v[j]).abs().mean() > 5, (i, j)


def test_tiny_images_work_and_bad_sizes_are_refused():
    for w, h in [(20, 10), (10, 20), (1, 1), (3, 1)]:
        for method in photos.METHODS:
            v = photos.model_views(Image.new("RGB", (w, h), (10, 200, 30)), 32, method)
            assert v.shape[1:] == (3, 32, 32)
            assert v[:, 1].min() > 190   # a flat colour stays that colour when upsampled
    with pytest.raises(ValueError, match="size must be"):
        photos.model_views(_noise(20, 10), 0)
    with pytest.raises(ValueError, match="center_crop"):
        photos.model_views(_noise(20, 10), 32, "stretch")


def test_multi_crop_needs_model_views():
    img = _noise(40, 30)
    with pytest.raises(ValueError, match=r"model_views\(img, size, 'multi_crop'\)"):
        to_model_input(img, 32, "multi_crop")
    with pytest.raises(ValueError, match="model_views"):
        photos.preprocessing_steps(img, method="multi_crop")


def _colour_model():
    """A LoadedModel that looks at the mean colour: red → airplane (0), blue → dog (5)."""
    from cifar_lib.checkpoint import LoadedModel
    from cifar_lib.data import CLASSES
    linear = torch.nn.Linear(3, 10)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0, 0] = linear.weight[5, 2] = 2.0
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), linear)
    return LoadedModel(model, CLASSES, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), tta_level=1)


def test_photo_probabilities_average_the_views():
    from cifar_lib.inference import predict_logits
    lm = _colour_model()
    views = [photos.model_views(_noise(40, 30, s), 32, "multi_crop") for s in range(2)]
    views.append(photos.model_views(_noise(30, 40), 32, "center_crop"))
    probs = photos.photo_probabilities(lm, views)
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3))
    for v, p in zip(views, probs):
        by_view = lm.probabilities(predict_logits(lm.model, v, lm.mean, lm.std, tta_level=1))
        assert torch.allclose(p, by_view.mean(0), atol=1e-6)
    assert photos.photo_probabilities(lm, []).shape == (0, 10)
    with pytest.raises(ValueError, match=r"views\[0\] must be a uint8 tensor V×3×H×W"):
        photos.photo_probabilities(lm, [views[0][0]])  # one view without its V dimension


def test_compare_methods_rows_and_scores():
    lm = _colour_model()
    red = Image.new("RGB", (48, 32), (250, 20, 20))
    blue = Upload(_jpeg_bytes(Image.new("RGB", (32, 48), (20, 20, 250))), "blue.jpg")
    rows = photos.compare_methods(lm, [(red, "airplane"), (blue, "airplane")])
    assert [(r["method"], r["photo"]) for r in rows] == [
        (m, p) for m in photos.METHODS for p in ("<PIL image>", "blue.jpg")]
    assert set(rows[0]) == {"photo", "true_class", "method", "predicted", "p_true", "correct"}
    assert [r["predicted"] for r in rows] == ["airplane", "dog"] * 3
    assert [r["correct"] for r in rows] == [True, False] * 3
    assert all(0 < r["p_true"] < 1 for r in rows)
    assert rows[0]["p_true"] > 0.5 > rows[1]["p_true"]
    multi = photos.photo_probabilities(lm, [photos.model_views(red, 32, "multi_crop")])
    assert rows[4]["p_true"] == pytest.approx(float(multi[0, 0]))  # averaged over 6 views
    scores = photos.method_scores(rows)
    assert {s["method"] for s in scores} == set(photos.METHODS)
    assert all(s["photos"] == 2 and s["top1"] == 0.5 for s in scores)
    logs = [s["mean_log_p_true"] for s in scores]
    assert logs == sorted(logs, reverse=True)
    assert scores[0]["mean_log_p_true"] == pytest.approx(
        np.mean([np.log(r["p_true"]) for r in rows if r["method"] == scores[0]["method"]]))
    with pytest.raises(ValueError, match="unknown class 'giraffe'"):
        photos.compare_methods(lm, [(red, "giraffe")])
    with pytest.raises(ValueError, match="unknown method"):
        photos.compare_methods(lm, [(red, "dog")], methods=["zoom"])


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_shipped_close_ups_are_the_documented_crops(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "make_sample_crops", Path(__file__).resolve().parents[1] / "tools/make_sample_crops.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    made = tool.make_sample_crops(SAMPLES, tmp_path)
    assert [p.name for p in made] == list(tool.SAMPLE_CROPS)
    shipped = {p.name for p in photos.sample_images()}
    for path in made:
        source, box, why = tool.SAMPLE_CROPS[path.name]
        assert path.name in shipped and source in shipped and why
        ours = (SAMPLES / path.name)
        assert ours.stat().st_size <= 60_000
        a = np.asarray(load_image(ours), dtype=np.float64)
        b = np.asarray(load_image(path), dtype=np.float64)
        assert a.shape == b.shape == (box[3] - box[1], box[2] - box[0], 3)
        assert np.abs(a - b).mean() < 2  # the same crop (JPEG encoders may differ slightly)


def test_every_sample_photo_has_a_label_entry():
    names = {p.name for p in photos.sample_images()}
    assert names == set(photos.SAMPLE_LABELS)            # a new photo needs its label here
    labelled = photos.labelled_samples()
    assert {p.name for p, _ in labelled} == {n for n, c in photos.SAMPLE_LABELS.items() if c}
    assert all(c in CLASSES for _, c in labelled)
