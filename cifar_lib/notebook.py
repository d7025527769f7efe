"""What the lessons need from their environment: Colab (detection, uploads, Google Drive),
which run folder to use, and recorded results.

``REPOSITORY`` is the one place that holds the project's address: the notebooks' install
cells and Colab badges, and the README's badges, must all use it (a test checks that they do).
On Colab the install cell runs ``pip install $CIFAR_LIB_INSTALL`` when that variable is set
(a local checkout, a wheel, a fork), else ``pip install INSTALL_TARGET``: the repository at the
tag ``INSTALL_REF`` of this version, so a lesson gets the library it was written against, not
whatever the default branch holds by then.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from . import __version__

# The project's GitHub address (owner/name). tests/test_notebooks.py fails until every
# notebook's badge and install cell, and the README's badges, use this same address.
REPOSITORY = "cifar10-course/cifar10-course"
RESULTS_KEY = "cifar_lib_results"
INSTALL_ENV = "CIFAR_LIB_INSTALL"   # what the Colab install cell installs instead of REPOSITORY
# The git tag of this version (a release pushes it: bump __version__, tag vX.Y.Z, push the tag);
# every lesson's install cell names it, and a test checks that they do.
INSTALL_REF = "v" + __version__
INSTALL_TARGET = f"git+https://github.com/{REPOSITORY}@{INSTALL_REF}"
# Where Colab mounts Google Drive; the variable exists for tests with a stand-in google.colab.
DRIVE_MOUNTPOINT = os.environ.get("COLAB_DRIVE_MOUNTPOINT", "/content/drive")
DRIVE_FOLDER = "cifar10-course"     # run folders go to MyDrive/cifar10-course/<run_dir>
IF_MISSING = ("shipped", "train", "error")


def on_colab() -> bool:
    """True inside Google Colab (checked without importing or requiring google.colab)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # 'google' missing, or a namespace without a spec
        return False


def colab_url(notebook: str) -> str:
    """The 'Open in Colab' address of ``notebooks/<notebook>.ipynb`` on the main branch."""
    return (f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/"
            f"{notebook}.ipynb")


def record(results: dict, run_dir: str | Path | None = None, name: str = "results") -> None:
    """Show a notebook's key results and make them machine-readable.

    Displays them as a JSON output tagged ``RESULTS_KEY`` (``read_results`` finds it in the
    executed ``.ipynb``) and, with ``run_dir``, also writes ``<run_dir>/<name>.json``.
    """
    from .files import json_safe, write_json
    results = json_safe(results)  # plain JSON types only: numpy/torch scalars, NaN → null
    if run_dir is not None:
        write_json(Path(run_dir) / f"{name}.json", results)
    try:
        from IPython.display import display
        display({"application/json": {RESULTS_KEY: results},
                 "text/plain": json.dumps(results, indent=1)}, raw=True)
    except ImportError:  # plain Python: printing is enough
        print(json.dumps(results, indent=1))


def read_results(ipynb: str | Path) -> dict:
    """The results a notebook recorded with ``record`` (merged, last wins), from an executed .ipynb."""
    found: dict = {}
    for cell in json.loads(Path(ipynb).read_text())["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {}).get("application/json")
            if isinstance(data, dict) and RESULTS_KEY in data:
                found.update(data[RESULTS_KEY])
    return found


def upload_or_paths(default_paths) -> list:
    """Photos for a notebook: on Colab, ask to upload files; elsewhere use ``default_paths``.

    Returns a list of sources for ``load_image``/``predict``: ``Upload`` bytes (which keep their
    file names) on Colab, the given paths elsewhere. An upload that is not an image is left out
    with a message saying why, so one wrong file does not stop the others; if no image is
    uploaded, the defaults are used, so "Run all" never stalls on an empty list.
    """
    from .photos import ImageError, Upload, load_image
    paths = [Path(p) for p in ([default_paths] if isinstance(default_paths, (str, os.PathLike))
                               else default_paths)]
    if not on_colab():
        return paths
    from google.colab import files  # only exists on Colab
    uploaded = files.upload()  # {file name: bytes}
    photos = []
    for name, data in uploaded.items():
        try:
            load_image(Upload(data, name))
        except ImageError as e:
            print(f"left out: {e}")
            continue
        photos.append(Upload(data, name))
    return photos or paths


def keep_runs_on_drive(run_dir: str | Path, keep: bool = True) -> str:
    """``run_dir`` on Google Drive when ``keep`` and on Colab, else ``run_dir`` unchanged.

    Colab gives every notebook a fresh runtime whose files vanish with it; on Drive, the run
    that 01_train writes is still there when 02–04 open. Drive is mounted only when asked
    (Colab then shows its permission prompt). A relative ``run_dir`` goes under
    ``MyDrive/cifar10-course/``; an absolute one is used as it is.
    """
    if not keep:
        return str(run_dir)
    if not on_colab():
        print(f"keep_on_drive is for Google Colab; here the runs stay in {run_dir}")
        return str(run_dir)
    from google.colab import drive  # only exists on Colab
    drive.mount(DRIVE_MOUNTPOINT)
    path = Path(DRIVE_MOUNTPOINT) / "MyDrive" / DRIVE_FOLDER / run_dir
    path.mkdir(parents=True, exist_ok=True)
    print(f"run folders are kept on Google Drive: {path}")
    return str(path)


def find_run(run_dir: str | Path, if_missing: str = "shipped", *, recipe: str = "fast",
             data_root=None, download: bool = False, quick: bool = False,
             device: str = "auto") -> Path:
    """The run folder a lesson works with.

    ``run_dir`` when it holds a checkpoint (e.g. written by 01_train). Otherwise, by
    ``if_missing``: "shipped" uses the model of ``recipe`` that ships with cifar_lib (and says
    so), "train" trains ``recipe`` into ``run_dir`` now (``quick``: the smoke-test version),
    "error" raises ``CheckpointError``.
    """
    from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
    if if_missing not in IF_MISSING:
        raise ValueError(f"if_missing must be one of {', '.join(IF_MISSING)}, got {if_missing!r}")
    run_dir = Path(run_dir)
    try:
        found = resolve_checkpoint(run_dir).parent
    except CheckpointError:  # names the folder and the command that fills it
        if if_missing == "error":
            raise
    else:
        config = {} if quick else load_checkpoint(found).get("config", {})
        if config.get("test_subset"):  # a quick run left where a full one goes
            n_train = config.get("train_subset")
            print(f"note: {run_dir} holds a quick run (tested on {config['test_subset']:,} "
                  f"images" + (f", trained on {n_train:,}" if n_train else "") + "): its "
                  f"results are that run's. Train in full with 01_train, or delete the folder.")
        return found
    if if_missing == "train":
        from .data import load_cifar10
        from .recipes import configure
        from .train import fit
        print(f"no checkpoint in {run_dir}: training the {recipe} recipe there now"
              + (" (quick version)" if quick else ""))
        fit(configure(recipe, quick=quick, device=device),
            *load_cifar10(data_root, download=download), run_dir=run_dir)
        return run_dir
    from . import pretrained
    print(f"no checkpoint in {run_dir}: using the model that ships with cifar_lib instead.\n"
          f"{pretrained.describe(recipe)}\n"
          f"(Train your own with 01_train, keep it with keep_on_drive=True, or set "
          f"if_missing='train'.)")
    return pretrained.shipped_run(recipe)
