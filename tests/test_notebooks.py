"""The lessons: pairs in sync, Colab wiring, headless quick runs, nbval output checks, sweeps."""
from __future__ import annotations

import csv
import re
import subprocess
import sys

import jupytext
import nbformat
import pytest

from cifar_lib.course import NOTEBOOK_DIR, NOTEBOOKS, WIDGET, drop_widget_outputs, run_all, sweep
from cifar_lib.notebook import REPOSITORY, read_results

ROOT = NOTEBOOK_DIR.parent
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


def test_readme_badges_use_the_repository():
    readme = (ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{name}.ipynb" in readme


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """All four notebooks, chained, with their quick parameters (the run folder is temporary)."""
    out = tmp_path_factory.mktemp("executed")
    params = {"quick": True, "run_dir": str(out / "run")}
    return run_all(out, params, progress=False), out


def test_every_notebook_runs_headlessly_and_records_results(quick_runs):
    executed, out = quick_runs
    assert [p.stem for p in executed] == list(NOTEBOOKS)
    results = {p.stem: read_results(p) for p in executed}
    assert 0.0 <= results["01_train"]["test_acc"] <= 1.0
    assert results["01_train"]["parameters"] > 0
    assert (out / "run" / "checkpoint.pt").is_file()
    for name in NOTEBOOKS[1:]:
        assert results[name], f"{name} recorded no results"
    for path in executed:  # stale progress-bar widgets are dropped from the executed copies
        outputs = [o for c in nbformat.read(path, as_version=4).cells for o in c.get("outputs", [])]
        assert not any(WIDGET in o.get("data", {}) for o in outputs), path.name


def test_drop_widget_outputs_keeps_everything_else(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fit()", outputs=[
        nbformat.v4.new_output("display_data", data={WIDGET: {"model_id": "x"}, "text/plain": "0/480"}),
        nbformat.v4.new_output("stream", name="stdout", text="test accuracy 94%\n")])])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert drop_widget_outputs(path) == 1
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream"] and "94%" in outputs[0].text


def test_nbval_checks_outputs_that_must_not_drift(quick_runs, tmp_path):
    """nbval re-executes each notebook (quick parameters injected) and compares the cells
    marked NBVAL_CHECK_OUTPUT with the committed reference outputs."""
    import papermill as pm
    _, out = quick_runs
    prepared = []
    for name in NOTEBOOKS:
        target = tmp_path / f"{name}.ipynb"
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(target), prepare_only=True,
                            parameters={"quick": True, "run_dir": str(out / "run")})
        nb = nbformat.read(target, as_version=4)
        assert any("NBVAL_CHECK_OUTPUT" in c.source and c.outputs for c in nb.cells), name
        prepared.append(str(target))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--nbval-current-env", "--rootdir", str(tmp_path),
                           *prepared], cwd=NOTEBOOK_DIR, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_sweep_collects_results_and_survives_a_failing_run(tmp_path):
    rows = sweep({"recipe": ["seed", "no_such_recipe"]}, tmp_path,
                 {"quick": True, "compare_seed": False})
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "no_such_recipe" in rows[1]["error"]
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and 0 <= float(table[0]["test_acc"]) <= 1
    assert (tmp_path / "sweep.png").stat().st_size > 0
