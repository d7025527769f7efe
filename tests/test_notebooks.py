"""The lessons: pairs in sync, Colab wiring, what the committed runs show, papermill sweeps.

Running every notebook as Colab would (and checking outputs with nbval) is in test_colab.py.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from cifar_lib.course import NOTEBOOKS, WIDGET, drop_widget_outputs, find_notebooks, sweep
from cifar_lib.notebook import INSTALL_ENV, REPOSITORY, read_results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
pytestmark = pytest.mark.notebooks


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_py_and_ipynb_pairs_are_in_sync(name):
    py = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    ipynb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert _cells(py) == _cells(ipynb), f"{name}: run `make sync` (edit the .py, not the .ipynb)"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_badge_setup_and_commented_parameters(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert f"colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{name}.ipynb" in text
    assert f"git+https://github.com/{REPOSITORY}" in text
    assert f'os.environ.get("{INSTALL_ENV}", "git+https://github.com/{REPOSITORY}")' in text
    addresses = set(re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+?)(?:/blob|\"|\))", text))
    assert addresses == {REPOSITORY}, addresses
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for line in params[0].source.splitlines():
        assert "#" in line, f"{name}: parameter without a comment: {line}"
    assert "quick" in params[0].source and "run_dir" in params[0].source
    assert nb.metadata.get("accelerator") == "GPU"  # Colab opens it asking for a GPU runtime


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_carry_outputs_of_a_real_run(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{name}: run `make run-notebooks` and commit"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)


# What each committed notebook records (its run's results), and what a real default run shows.
RECORDED_KEYS = {
    "01_train": {"recipe", "model", "epochs", "seed", "quick", "parameters", "device", "precision",
                 "test_acc", "test_acc_tta", "train_seconds", "images_per_second",
                 "original_recipe_test_acc"},
    "02_benchmark": {"model", "quick", "devices", "cpu_threads", "best_images_per_s",
                     "best_variant", "best_device", "best_batch_size", "training_images_per_s",
                     "pipeline_speedup_vs_dataloader"},
    "03_evaluate": {"model", "run", "quick", "tta_level", "test_images", "accuracy", "ci95",
                    "ece", "nll", "worst_class", "most_confused", "comparison"},
    "04_real_images": {"model", "run", "quick", "photos", "top1", "probability", "confident"},
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_a_default_run(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    injected = nb.metadata.get("papermill", {}).get("parameters", {})
    assert not injected.get("quick"), f"{name}: the committed run is a quick run"
    results = read_results(NOTEBOOK_DIR / f"{name}.ipynb")
    assert set(results) == RECORDED_KEYS[name]
    assert results["quick"] is False
    if name == "01_train":  # the fast recipe at full length, and the original beside it
        assert results["recipe"] == "fast" and results["epochs"] == 10
        assert results["test_acc_tta"] >= 0.93 and 0.60 <= results["original_recipe_test_acc"] <= 0.70
    if name == "03_evaluate":
        assert results["test_images"] == 10_000 and results["accuracy"] >= 0.93
    if name == "04_real_images":
        assert len(results["photos"]) == len(results["top1"]) >= 4


def test_notebooks_are_found_from_the_repository_or_an_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "cifar_lib")          # anywhere inside the checkout
    assert find_notebooks() == NOTEBOOK_DIR
    assert find_notebooks(NOTEBOOK_DIR) == NOTEBOOK_DIR
    monkeypatch.chdir(tmp_path)                     # outside it: a clear error
    with pytest.raises(FileNotFoundError, match="--notebooks"):
        find_notebooks()


def test_readme_badges_use_the_repository():
    readme = (ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{name}.ipynb" in readme


def test_drop_widget_outputs_keeps_everything_else(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()", outputs=[
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "x"}, "text/plain": "0/480"}),
        nbformat.v4.new_output("stream", name="stdout", text="test accuracy 94%\n")])])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert drop_widget_outputs(path) == 1
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream"] and "94%" in outputs[0].text


def test_sweep_collects_results_and_survives_a_failing_run(tmp_path):
    rows = sweep({"recipe": ["original", "no_such_recipe"]}, tmp_path,
                 {"quick": True, "compare_original": False}, notebook_dir=NOTEBOOK_DIR)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "no_such_recipe" in rows[1]["error"]
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and 0 <= float(table[0]["test_acc"]) <= 1
    assert (tmp_path / "sweep.png").stat().st_size > 0
