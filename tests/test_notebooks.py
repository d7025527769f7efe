"""The lessons: pairs in sync, Colab wiring, what the committed runs show, papermill sweeps,
and every lesson run as on Colab with nbval checking its outputs."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jupytext
import nbformat
import pytest

from cifar_lib.cli import main as cli_main
from cifar_lib.course import (NOTEBOOKS, WIDGET, NotebookFailed, check_parameters,
                              drop_widget_outputs, find_notebooks, run_notebook, sweep)
from cifar_lib.errors import UsageError
from cifar_lib.notebook import DRIVE_FOLDER, INSTALL_ENV, INSTALL_TARGET, REPOSITORY, read_results

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
    assert f'os.environ.get("{INSTALL_ENV}", "{INSTALL_TARGET}")' in text
    # Colab badges and installs name this repository; other links (sources cited) may differ.
    addresses = set(re.findall(r"(?:colab\.research\.google\.com/github|git\+https://github\.com)"
                               r"/([\w.-]+/[\w.-]+?)(?:/blob|@|\"|\))", text))
    assert addresses == {REPOSITORY}, addresses
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for line in params[0].source.splitlines():
        assert "#" in line, f"{name}: parameter without a comment: {line}"
    assert "quick" in params[0].source and "run_dir" in params[0].source
    assert nb.metadata.get("accelerator") == "GPU"  # Colab opens it asking for a GPU runtime


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_output_checks_are_cell_tags(name):
    """nbval's output checks are cell tags, not comments in the code a learner reads."""
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    assert not any("NBVAL_" in c.source for c in nb.cells), f"{name}: use the cell tag"
    assert any("nbval-check-output" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_pair_holds_the_same_cells_and_tags(name):
    """The .ipynb that Colab opens and nbval checks is its .py, cell for cell: the same sources
    and the same tags (a tag lost in the .ipynb is an output check nbval silently skips)."""
    source = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    committed = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
        [(c.cell_type, c.source) for c in source.cells], f"{name}: run `make sync`"
    assert [sorted(c.metadata.get("tags", [])) for c in committed.cells] == \
        [sorted(c.metadata.get("tags", [])) for c in source.cells], f"{name}: tags differ"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_carry_outputs_of_a_real_run(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{name}: run `make run-notebooks` and commit"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_carry_no_trace_of_where_and_when_they_ran(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    traces = [key for key in ("papermill",) if key in nb.metadata] + \
        sorted({key for c in nb.cells for key in ("papermill", "execution") if key in c.metadata})
    assert not traces, f"{name}: papermill's paths and times ({traces}); run `make sync`"


# What each committed notebook records (its run's results), and what a real default run shows.
RECORDED_KEYS = {
    "01_train": {"recipe", "model", "epochs", "seed", "quick", "parameters", "device", "precision",
                 "test_acc", "test_acc_tta", "train_seconds", "images_per_second",
                 "original_recipe_test_acc"},
    "02_benchmark": {"model", "quick", "devices", "cpu_threads", "best_images_per_s",
                     "best_variant", "best_device", "best_batch_size", "training_images_per_s",
                     "pipeline_speedup_vs_dataloader"},
    "03_evaluate": {"model", "run", "quick", "tta_level", "test_images", "accuracy", "ci95",
                    "ece", "ece_calibrated", "temperature", "calibration", "mean_corrupted_accuracy",
                    "nll", "worst_class", "most_confused", "comparison"},
    "04_real_images": {"model", "run", "quick", "photos", "top1", "probability", "confident",
                       "method", "threshold", "temperature"},
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_a_default_run(name):
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


def test_a_quick_evaluation_keeps_the_run_s_own_calibration():
    """03 fits the temperature again on its validation images, only 250 of them when quick: a
    quick run must not save that over the calibration.json the run came with."""
    import ast
    tree = ast.parse((NOTEBOOK_DIR / "03_evaluate.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "calibrate_run"]
    assert calls, "03 no longer calls calibrate_run: this test has nothing to check"
    for call in calls:
        write = next((k.value for k in call.keywords if k.arg == "write"), None)
        assert write is not None and "quick" in ast.unparse(write), ast.unparse(call)
        assert eval(ast.unparse(write), {"quick": True}) is False


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


# A lesson in miniature for the sweep (the real lessons run under papermill in the Colab test
# below): a parameters cell, a short training, its results recorded as the lessons record them.
MINI_LESSON = [
    ("parameters", 'recipe = "original"\nquick = False\nrun_dir = "runs/x"'),
    ("", "import torch\n"
         "from cifar_lib import CifarSplit, configure, fit\n"
         "from cifar_lib.notebook import record\n"
         "data = CifarSplit(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8),\n"
         "                  torch.arange(64) % 10)\n"
         "cfg = configure(recipe, epochs=1, batch_size=32, device='cpu', eval_every=0)\n"
         "record({'test_acc': fit(cfg, data, data, progress=False).metrics['test_acc']})")]


def _mini_lesson(folder: Path) -> None:
    lesson = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(src, metadata={"tags": [tag]} if tag else {})
        for tag, src in MINI_LESSON])
    lesson.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    nbformat.write(lesson, folder / "mini.ipynb")


def test_sweep_collects_results_and_survives_a_failing_run(tmp_path):
    _mini_lesson(tmp_path)
    out = tmp_path / "sweep"
    grid = {"recipe": ["original", "no_such_recipe"]}
    rows = sweep(grid, out, {"quick": True}, notebook="mini", notebook_dir=tmp_path)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "no_such_recipe" in rows[1]["error"]
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and 0 <= float(table[0]["test_acc"]) <= 1
    assert (out / "sweep.png").stat().st_size > 0
    # another sweep in the same folder would train over its runs and replace its table
    with pytest.raises(UsageError, match="holds another sweep .*recipe=original,no_such_recipe"):
        sweep({"recipe": ["original"]}, out, {"quick": True}, notebook="mini",
              notebook_dir=tmp_path)
    with pytest.raises(UsageError, match="choose another --out"):
        sweep(grid, out, {}, notebook="mini", notebook_dir=tmp_path)   # other parameters
    assert len(list(csv.DictReader(open(out / "sweep.csv")))) == 2     # nothing lost


def test_a_sweep_folder_takes_the_same_sweep_again_and_only_it(tmp_path, monkeypatch):
    import cifar_lib.course as course
    ran = []
    monkeypatch.setattr(course, "run_notebook", lambda name, out, params, *a: ran.append(params))
    monkeypatch.setattr(course, "_plot", lambda *a: None)
    monkeypatch.setattr("cifar_lib.notebook.read_results", lambda path: {})
    out, data = tmp_path / "sweep", tmp_path / "data"
    grid = {"lr": [0.5, 1.5], "epochs": [1, 2]}
    sweep(grid, out, {"data_root": data}, notebook="01_train")      # a Path, as Python gives it
    sweep(grid, out, {"data_root": data}, notebook="01_train")      # the same again: runs
    assert len(ran) == 8 and ran[0]["data_root"] == data
    for other, params in (({"epochs": [1, 2], "lr": [0.5, 1.5]}, {"data_root": data}),
                          (grid, {"data_root": tmp_path})):         # the grid's order matters
        with pytest.raises(UsageError, match="holds another sweep"):
            sweep(other, out, params, notebook="01_train")
    assert len(ran) == 8
    (out / "sweep.json").unlink()                                   # a table, no sweep.json
    with pytest.raises(UsageError, match="sweep.json is missing"):
        sweep(grid, out, {"data_root": data}, notebook="01_train")


def test_a_failed_run_keeps_the_last_good_copy(tmp_path):
    _mini_lesson(tmp_path)
    out = tmp_path / "out"
    good = run_notebook("mini", out, {"quick": True}, progress=False, notebook_dir=tmp_path)
    assert good == out / "mini.ipynb"
    before = good.read_bytes()
    with pytest.raises(NotebookFailed, match=r"executed copy: .*mini\.failed\.ipynb"):
        run_notebook("mini", out, {"recipe": "no_such_recipe"}, progress=False,
                     notebook_dir=tmp_path)
    assert good.read_bytes() == before and (out / "mini.failed.ipynb").is_file()
    run_notebook("mini", out, {"quick": True}, progress=False, notebook_dir=tmp_path)
    assert sorted(p.name for p in out.glob("*.ipynb")) == ["mini.ipynb"]  # the failure is past


def test_a_parameter_the_notebooks_do_not_have_is_refused_before_anything_runs(tmp_path,
                                                                              capsys):
    _mini_lesson(tmp_path)
    with pytest.raises(UsageError, match="mini has no parameter 'recipes' "
                                         r"\(did you mean 'recipe'\?\); its parameters: "
                                         "recipe, quick, run_dir"):
        check_parameters(["quick", "recipes"], ["mini"], tmp_path)
    check_parameters(["quick", "recipe"], ["mini"], tmp_path)
    # the command line: papermill would have dropped them, and every run used the default
    for argv in (["sweep", "--grid", "lrr=0.5,1.5"], ["run-notebooks", "-p", "epoch", "3"]):
        assert cli_main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "has no parameter" in err and "did you mean" in err
    assert cli_main(["sweep", "--grid", "lr=0.1", "lr=0.2"]) == 1
    assert "names 'lr' twice" in capsys.readouterr().err


def test_a_sweep_with_a_failed_point_fails(monkeypatch, capsys):
    import cifar_lib.course as course
    monkeypatch.setattr(course, "sweep", lambda *a, **k: [{"status": "ok"}, {"status": "failed"}])
    assert cli_main(["sweep", "--grid", "lr=0.5,1.5"]) == 1
    assert "2 runs (1 failed)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Colab
# Every lesson as a Colab learner meets it, checked by nbval in the same pass.
#
# Each notebook runs in a fresh, empty folder of its own (Colab gives each notebook a new runtime)
# with a stand-in ``google.colab`` importable (tests/colab_stub), so every Colab branch runs: the
# setup cell's ``pip install`` (of a wheel built from this checkout, through $CIFAR_LIB_INSTALL,
# into a folder that comes first on the kernel's path), Google Drive and the upload button.
# 01 keeps its run on the stand-in Drive and 04 reads it from there; 02 and 03 find no run and
# must fall back on the model that ships inside the package. ``CIFAR10_ROOT`` points at the
# real data, so nothing is downloaded. nbval compares the outputs of the cells tagged
# ``nbval-check-output`` (a cell tag nbval reads itself; in the percent-format sources,
# ``# %% tags=["nbval-check-output"]``) with the committed outputs of the real run.

STUB = Path(__file__).resolve().parent / "colab_stub"
PHOTOS = ROOT / "cifar_lib" / "sample_images"
# 01 keeps its run on Drive and 04 finds it there; 02 and 03 start with nothing.
# Cells that a default run skips, exercised here (quick versions).
EXTRA_PARAMETERS = {"01_train": {"rerun_ablation": True}}
ON_DRIVE = {"01_train": True, "02_benchmark": False, "03_evaluate": False, "04_real_images": True}
PARALLEL = (("01_train", "04_real_images"), ("02_benchmark", "03_evaluate"))


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
def colab(wheel, tmp_path_factory, cifar10):  # cifar10: the notebooks read the real data
    """Run the four notebooks Colab-style under nbval; returns (pytest result, folders)."""
    import papermill as pm
    base = tmp_path_factory.mktemp("colab")
    sites, drive = [base / f"site-packages-{i}" for i in range(len(PARALLEL))], base / "drive"
    for site in sites:
        site.mkdir()  # exists before the kernels start, like Colab's site-packages
    prepared = {}
    for name in NOTEBOOKS:
        folder = base / name  # fresh and empty but for the notebook itself
        folder.mkdir()
        target = folder / f"{name}.ipynb"
        pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(target),
                            prepare_only=True, kernel_name="python3",
                            parameters={"quick": True, "keep_on_drive": ON_DRIVE[name],
                                        **EXTRA_PARAMETERS.get(name, {})})
        prepared[name] = str(target)
    env = {**os.environ, INSTALL_ENV: str(wheel),
           # what `pip install` in the setup cell does with it: no dependencies
           "PIP_NO_DEPS": "1", "PIP_UPGRADE": "1",
           "COLAB_DRIVE_MOUNTPOINT": str(drive), "COLAB_STUB_UPLOADS": str(PHOTOS)}
    env.pop("MPLBACKEND", None)
    # Two nbval runs side by side, each on its share of the cores: 04 reads the run 01 keeps on
    # Drive, so they run in order; 02 and 03 need nothing from the others, and the two lanes
    # take about as long.
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 2) // 2)
    runs = []
    for i, group in enumerate(PARALLEL):
        log = base / f"nbval-{i}.log"          # the slowest cells are listed at its end
        # each lane installs into its own site-packages: two pip installs into one folder at
        # once can collide (and on Colab every notebook has a runtime of its own anyway)
        lane_site = sites[i]
        lane_env = {**env, "PIP_TARGET": str(lane_site),
                    "PYTHONPATH": os.pathsep.join([str(lane_site), str(STUB)])}
        with open(log, "w") as out:
            runs.append((log, subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                 "--nbval-current-env", "--rootdir", str(base), "--durations=15",
                 *[prepared[name] for name in group]],
                cwd=base, env={**lane_env, "OMP_NUM_THREADS": str(threads)}, stdout=out,
                stderr=subprocess.STDOUT, text=True)))
    codes = [p.wait() for _, p in runs]
    proc = subprocess.CompletedProcess("nbval", max(codes),
                                       "\n".join(log.read_text() for log, _ in runs))
    return proc, base, sites, drive


def test_every_lesson_runs_on_colab_and_nbval_agrees(colab):
    proc, *_ = colab
    assert proc.returncode == 0, proc.stdout[-6000:]


def test_setup_cell_installed_the_package_from_the_install_target(colab):
    _, _, sites, _ = colab
    for site in sites:
        assert (site / "cifar_lib" / "pretrained_runs" / "fast" / "checkpoint.pt").is_file()


def test_drive_is_mounted_only_where_asked_and_keeps_the_run(colab):
    _, base, _, drive = colab
    mounts = (drive / "mounted.log").read_text().splitlines()
    assert len(mounts) == sum(ON_DRIVE.values())   # 01 and 04, not 02 and 03
    run = drive / "MyDrive" / DRIVE_FOLDER / "runs" / "fast"
    # ood.json: 04 fits the "none of these" detector that a run trained in 01 does not have
    for f in ("checkpoint.pt", "metrics.json", "history.json", "train_results.json",
              "real_images_results.json", "predictions.png", "ood.json"):
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
    # the folder's SOURCES.md is uploaded too, and left out with a message instead of failing
    assert results["photos"] == sorted(p.name for p in PHOTOS.glob("*.jpg"))
