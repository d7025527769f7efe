"""Every lesson as a Colab learner meets it, checked by nbval in the same pass.

Each notebook runs in a fresh, empty folder of its own (Colab gives each notebook a new runtime)
with a stand-in ``google.colab`` importable (tests/colab_stub), so every Colab branch runs: the
setup cell's ``pip install`` (of a wheel built from this checkout, through $CIFAR_LIB_INSTALL,
into a folder that comes first on the kernel's path), Google Drive and the upload button.
01 keeps its run on the stand-in Drive and 04 reads it from there; 02 and 03 find no run and
must fall back on the model that ships inside the package. ``CIFAR10_ROOT`` points at the
real data, so nothing is downloaded. nbval compares the cells marked NBVAL_CHECK_OUTPUT with
the committed outputs of the real run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from cifar_lib.course import NOTEBOOKS
from cifar_lib.notebook import DRIVE_FOLDER, INSTALL_ENV, read_results

from conftest import real_data_or_skip
from test_notebooks import RECORDED_KEYS

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(__file__).resolve().parent / "colab_stub"
PHOTOS = ROOT / "cifar_lib" / "sample_images"
pytestmark = pytest.mark.notebooks
# 01 keeps its run on Drive and 04 finds it there; 02 and 03 start with nothing.
ON_DRIVE = {"01_train": True, "02_benchmark": False, "03_evaluate": False, "04_real_images": True}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The package as `pip install git+<repository>` would build it, from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(ROOT)], check=True)
    return next(out.glob("cifar_lib-*.whl"))


def test_the_wheel_brings_the_shipped_models_and_sample_photos(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for run in ("fast", "original"):
        for f in ("checkpoint.pt", "metrics.json", "history.json", "provenance.json"):
            assert f"cifar_lib/pretrained_runs/{run}/{f}" in names
    assert any(n.startswith("cifar_lib/sample_images/") for n in names)
    assert "cifar_lib/bench/throughput.py" in names


@pytest.fixture(scope="module")
def colab(wheel, tmp_path_factory):
    """Run the four notebooks Colab-style under nbval; returns (pytest result, folders)."""
    import papermill as pm
    real_data_or_skip()  # the notebooks read CIFAR-10 from $CIFAR10_ROOT
    base = tmp_path_factory.mktemp("colab")
    site, drive = base / "site-packages", base / "drive"
    site.mkdir()  # exists before the kernels start, like Colab's site-packages
    prepared = []
    for name in NOTEBOOKS:
        folder = base / name  # fresh and empty but for the notebook itself
        folder.mkdir()
        target = folder / f"{name}.ipynb"
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(target),
                            prepare_only=True, kernel_name="python3",
                            parameters={"quick": True, "keep_on_drive": ON_DRIVE[name]})
        prepared.append(str(target))
    env = {**os.environ, INSTALL_ENV: str(wheel),
           # what `pip install` in the setup cell does with it: into `site`, no dependencies
           "PIP_TARGET": str(site), "PIP_NO_DEPS": "1", "PIP_UPGRADE": "1",
           "PYTHONPATH": os.pathsep.join([str(site), str(STUB)]),
           "COLAB_DRIVE_MOUNTPOINT": str(drive), "COLAB_STUB_UPLOADS": str(PHOTOS)}
    env.pop("MPLBACKEND", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--nbval-current-env", "--rootdir", str(base),
                           *prepared], cwd=base, env=env, capture_output=True, text=True)
    return proc, base, site, drive


def test_every_lesson_runs_on_colab_and_nbval_agrees(colab):
    proc, *_ = colab
    assert proc.returncode == 0, proc.stdout[-6000:]


def test_setup_cell_installed_the_package_from_the_install_target(colab):
    _, _, site, _ = colab
    assert (site / "cifar_lib" / "pretrained_runs" / "fast" / "checkpoint.pt").is_file()


def test_drive_is_mounted_only_where_asked_and_keeps_the_run(colab):
    _, base, _, drive = colab
    mounts = (drive / "mounted.log").read_text().splitlines()
    assert len(mounts) == sum(ON_DRIVE.values())   # 01 and 04, not 02 and 03
    run = drive / "MyDrive" / DRIVE_FOLDER / "runs" / "fast"
    for f in ("checkpoint.pt", "metrics.json", "history.json", "train_results.json",
              "real_images_results.json", "predictions.png"):
        assert (run / f).is_file(), f
    assert (drive / "MyDrive" / DRIVE_FOLDER / "runs" / "fast-original" / "checkpoint.pt").is_file()


def test_lessons_without_a_run_use_the_shipped_model_and_write_their_results(colab):
    _, base, _, _ = colab
    for name, results_file in (("02_benchmark", "benchmark_results.json"),
                               ("03_evaluate", "evaluate_results.json")):
        run_dir = base / name / "runs" / "fast"
        assert not (run_dir / "checkpoint.pt").exists()  # nothing trained there ...
        results = json.loads((run_dir / results_file).read_text())
        assert set(results) == RECORDED_KEYS[name] and results["quick"] is True
    evaluated = json.loads((base / "03_evaluate" / "runs" / "fast" / "evaluate_results.json")
                           .read_text())
    assert "pretrained_runs/fast" in evaluated["run"]     # ... the shipped model was used
    assert {r["run"] for r in evaluated["comparison"]} == {"fast", "original"}


def test_uploaded_photos_are_classified(colab):
    _, _, _, drive = colab
    results = json.loads((drive / "MyDrive" / DRIVE_FOLDER / "runs" / "fast" /
                          "real_images_results.json").read_text())
    assert results["photos"] == sorted(p.name for p in PHOTOS.iterdir() if p.is_file())
