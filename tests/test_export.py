"""Export: the shipped fast model as a torch.export program (and ONNX) that runs without
cifar_lib and predicts exactly what the library does; torch.hub entry points."""
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cifar_lib.batches import normalize
from cifar_lib.checkpoint import load_run
from cifar_lib.cli import main
from cifar_lib.errors import UsageError
from cifar_lib.export import ExportError, RawImageClassifier, export_run, format_of, read_metadata
from cifar_lib.pretrained import shipped_run

ROOT = Path(__file__).resolve().parents[1]
FAST = shipped_run("fast")
N_IMAGES = 300


@pytest.fixture(scope="module")
def images(cifar10):
    """The first N_IMAGES real test images, uint8 N×3×32×32."""
    return cifar10[1].images[:N_IMAGES]


@pytest.fixture(scope="module")
def library_logits(images):
    """What the library computes: load_run + its normalisation + the model, fp32 on the CPU."""
    lm = load_run(FAST, "cpu")
    with torch.no_grad():
        return lm.model(normalize(images, lm.mean, lm.std))


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "fast.pt2"
    assert main(["export", "--run-dir", str(FAST), "--out", str(out)]) == 0
    return out


# Loads the exported file in a fresh interpreter that cannot import cifar_lib: -I ignores
# PYTHONPATH and the current folder, and None in sys.modules makes the import fail even where
# cifar_lib is installed in the environment.
LOADER = textwrap.dedent("""
    import sys
    sys.modules["cifar_lib"] = None
    try:
        import cifar_lib
    except ImportError:
        pass
    else:
        raise SystemExit("cifar_lib could be imported")
    import torch
    images, program, out = sys.argv[1:]
    extra = {"cifar_lib.json": ""}
    model = torch.export.load(program, extra_files=extra).module()
    with torch.no_grad():
        logits = model(torch.load(images))
    torch.save({"logits": logits, "metadata": extra["cifar_lib.json"]}, out)
    assert not any(name.startswith("cifar_lib") for name in sys.modules if sys.modules[name])
""")


def test_the_exported_program_runs_without_cifar_lib_and_predicts_as_the_library(
        pt2, images, library_logits, tmp_path):
    raw = tmp_path / "images.pt"
    torch.save(images.float() / 255, raw)  # raw RGB in [0, 1]: the exported model's input
    out = tmp_path / "out.pt"
    proc = subprocess.run([sys.executable, "-I", "-c", LOADER, str(raw), str(pt2), str(out)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out)
    logits = got["logits"]
    assert logits.shape == (N_IMAGES, 10)
    assert torch.equal(logits.argmax(1), library_logits.argmax(1))
    torch.testing.assert_close(logits, library_logits, atol=1e-4, rtol=1e-4)
    assert '"classes": ["airplane", "automobile"' in got["metadata"]


def test_the_exported_program_takes_any_batch_size_and_keeps_the_metadata(pt2, images,
                                                                         library_logits):
    model = torch.export.load(pt2).module()
    for n in (1, 7):
        with torch.no_grad():
            logits = model(images[:n].float() / 255)
        torch.testing.assert_close(logits, library_logits[:n], atol=1e-4, rtol=1e-4)
    meta = read_metadata(pt2)
    lm = load_run(FAST)
    assert meta["classes"] == list(lm.classes) and meta["mean"] == list(lm.mean)
    # the shipped temperature was fitted on TTA logits: it does not fit the plain model's
    assert lm.calibration.tta_level != 0 and meta["temperature"] == 1.0


def test_onnx_export_matches_the_library_in_onnxruntime(images, library_logits, tmp_path):
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason="the export extra is not installed")
    import onnxruntime
    out = export_run(FAST, tmp_path / "fast.onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": (images.float() / 255).numpy()})
    logits = torch.from_numpy(logits)
    assert torch.equal(logits.argmax(1), library_logits.argmax(1))
    torch.testing.assert_close(logits, library_logits, atol=1e-3, rtol=1e-3)
    assert read_metadata(out)["classes"][-1] == "truck"


def test_onnx_without_its_packages_is_one_line_naming_the_extra(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match="pip install onnx onnxscript onnxruntime"):
        export_run(FAST, tmp_path / "m.onnx")
    assert main(["export", "--run-dir", str(FAST), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install onnx onnxscript onnxruntime" in err
    assert not (tmp_path / "m.onnx").exists()


def test_the_format_comes_from_the_suffix_unless_given():
    assert format_of("m.pt2") == "pt2" and format_of("m.ONNX") == "onnx"
    assert format_of("model.bin", "onnx") == "onnx"
    with pytest.raises(UsageError, match="name the file .pt2 or .onnx"):
        format_of("model.bin")


def test_torch_hub_loads_the_shipped_models_for_raw_images(images, library_logits):
    model = torch.hub.load(str(ROOT), "fast", source="local")
    assert isinstance(model, RawImageClassifier) and not model.training
    assert model.classes[0] == "airplane" and len(model.classes) == 10
    with torch.no_grad():
        logits = model(images[:50].float() / 255)
    torch.testing.assert_close(logits, library_logits[:50], atol=1e-4, rtol=1e-4)
    original = torch.hub.load(str(ROOT), "original", source="local")
    lm = load_run(shipped_run("original"))
    with torch.no_grad():
        torch.testing.assert_close(original(images[:20].float() / 255),
                                   lm.model(normalize(images[:20], lm.mean, lm.std)))
    untrained = torch.hub.load(str(ROOT), "fast", source="local", pretrained=False)
    trained, fresh = model.state_dict(), untrained.state_dict()
    assert list(trained) == list(fresh)  # the same architecture ...
    assert not torch.equal(trained["model.0.weight"], fresh["model.0.weight"])  # ... untrained
