"""Your own photos in the browser: a small Gradio app around a run.

    python -m cifar_lib demo [--run-dir RUN]          # or, in a notebook: launch(run, inline=True)

Drop, paste or take (webcam) a photo and see what ``predict`` does with it: the preprocessing
steps (``photos.preprocessing_steps``), the top-3 calibrated probabilities, the "none of these"
verdict of the run's detector (``cifar_lib.ood``) with its score, and a Grad-CAM overlay
(``cifar_lib.attribution``). The sample photos are clickable examples. A file that is not a
usable image gets the command line's one-line error. Gradio is an optional extra (``demo``):
``pip install gradio``.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .attribution import cam_for_run
from .checkpoint import load_run
from .ood import detector_for
from .photos import (PHOTO_METHOD, ImageError, Upload, predict, preprocessing_steps,
                     sample_images)

INSTALL_HINT = "the demo needs gradio: pip install gradio"
SHOWN = 160  # pixels: small steps (32×32) are enlarged to this, pixel for pixel, to be seen


class DemoUnavailable(RuntimeError):
    """gradio is not installed; the message names the install command."""


def _gradio():
    try:
        import gradio as gr
    except ImportError:
        raise DemoUnavailable(INSTALL_HINT) from None
    return gr


def _enlarge(img: Image.Image) -> Image.Image:
    """A tiny image scaled up with nearest neighbour (each pixel a visible square)."""
    if max(img.size) >= SHOWN:
        return img
    scale = max(1, SHOWN // max(img.size))
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def _as_image(value) -> Image.Image:
    """A step's value as a picture: PIL as it is; a 3×H×W tensor rescaled to 0..255."""
    if isinstance(value, Image.Image):
        return value
    x = value.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8) * 255
    return Image.fromarray(x.round().byte().permute(1, 2, 0).numpy())


def cam_overlay(x: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """uint8 image 3×32×32 and a Grad-CAM map 32×32 in [0, 1] → an RGB overlay, enlarged."""
    from matplotlib import colormaps
    heat = colormaps["jet"](cam.numpy())[..., :3] * 255                   # 32×32×3
    blend = (1 - alpha) * x.permute(1, 2, 0).float().numpy() + alpha * heat
    return _enlarge(Image.fromarray(np.clip(blend, 0, 255).astype(np.uint8)))


def verdict(prediction, detector) -> str:
    """One line on the "none of these" check for a ``Prediction`` (None detector: says so)."""
    if detector is None:
        return (f"{prediction.label}: this run has no 'none of these' detector "
                f"(python -m cifar_lib train fits one)")
    s, t = prediction.ood_score, detector.threshold
    if prediction.none_of_these:
        return (f"none of these? {detector.score} score {s:.4g} is below {t:.4g}: the photo is "
                f"unlike the training images (the best guess would be {prediction.label})")
    sure = "" if prediction.confident else ", but not confident"
    return (f"{prediction.label}: one of the ten classes ({detector.score} score {s:.4g} ≥ "
            f"{t:.4g}){sure}")


def classify(run, source, method: str = PHOTO_METHOD) -> dict:
    """What the app shows for one photo (anything ``predict`` takes): {'top3': {class: p},
    'verdict': str, 'steps': [(image, caption)], 'cam': image}; for an unusable file
    {'error': 'error: <the ImageError message>'}, as the command line prints it."""
    lm = load_run(run)
    try:
        steps = preprocessing_steps(source, method=method, mean=lm.mean, std=lm.std)
        p = predict(lm, source, top_k=3, method=method)
    except ImageError as e:
        return {"error": f"error: {e}"}
    x = dict(steps)["to_tensor"]
    maps, _, _ = cam_for_run(lm, x[None])
    return {"top3": dict(p.top_k), "verdict": verdict(p, detector_for(lm)),
            "steps": [(_enlarge(_as_image(v)), name) for name, v in steps],
            "cam": cam_overlay(x, maps[0]), "prediction": p}


def build_app(run):
    """The Gradio Blocks app for ``run`` (a run folder or ``LoadedModel``)."""
    gr = _gradio()
    lm = load_run(run)

    def unopened(payload, _image_preprocess):
        """Any uploaded file goes to cifar_lib unopened: gr.Image would open it with PIL
        first and fail on a text file with its own message; ``load_image`` decides, and names
        the file by its own name, not the server's temporary path."""
        if payload is None or (payload.url or "").startswith("data:") or not payload.path:
            return _image_preprocess(payload)  # pasted or webcam: a file path
        path = Path(payload.path)
        return Upload(path.read_bytes(), payload.orig_name or path.name)

    def run_one(source):
        if source is None:
            return None, "", [], None
        out = classify(lm, source)
        if "error" in out:
            return None, out["error"], [], None
        return out["top3"], out["verdict"], out["steps"], out["cam"]

    with gr.Blocks(title="cifar_lib: your own photos") as app:
        gr.Markdown(f"## CIFAR-10 on your own photos\nModel: `{lm.name}` "
                    f"({lm.folder.name if lm.folder else 'in memory'}). Drop, paste or take a "
                    f"photo; it is squashed to 32×32 as the network expects.")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(type="filepath", label="photo",
                                 sources=["upload", "clipboard", "webcam"], elem_id="photo")
                # on this one instance (a subclass would make Gradio write a .pyi stub here)
                photo.preprocess = partial(unopened, _image_preprocess=photo.preprocess)
                anything = gr.File(label="… or any file (cifar_lib checks it, as the command "
                                         "line does)", elem_id="file", height=120)
                gr.Examples([[str(p)] for p in sample_images()], inputs=[photo],
                            label="sample photos")
            with gr.Column():
                top3 = gr.Label(num_top_classes=3, label="top 3 (calibrated)", elem_id="top3")
                said = gr.Textbox(label="none of these?", elem_id="verdict", interactive=False)
                cam = gr.Image(label="Grad-CAM: evidence for the top class", elem_id="cam",
                               interactive=False)
        steps = gr.Gallery(label="preprocessing steps", columns=8, height=220,
                           elem_id="steps")
        outputs = [top3, said, steps, cam]
        photo.change(run_one, inputs=photo, outputs=outputs)
        # The photo box only takes image/* files; any other file goes to load_image, whose
        # ImageError is the command line's one-line error.
        anything.upload(lambda f: run_one(Upload(Path(f).read_bytes(), Path(f).name)),
                        inputs=anything, outputs=outputs)
    return app


def launch(run_dir=None, *, inline: bool | None = None, share: bool = False,
           server_name: str = "127.0.0.1", server_port: int | None = None,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Build the app for ``run_dir`` (None: the fast model shipped with cifar_lib) and start
    it; returns the app (``app.close()`` stops it). ``inline``: show it in the notebook (None:
    Gradio decides); ``prevent_thread_lock``: return at once instead of serving until Ctrl-C."""
    gr = _gradio()  # fail before loading the model
    if run_dir is None:
        from .pretrained import shipped_run
        run_dir = shipped_run("fast")
    app = build_app(run_dir)
    app.launch(inline=inline, share=share, server_name=server_name, server_port=server_port,
               prevent_thread_lock=prevent_thread_lock, quiet=quiet,
               allowed_paths=[str(p.parent) for p in sample_images()[:1]])
    del gr
    return app
