"""What the lessons need from their environment: Colab detection, recorded results.

``REPOSITORY`` is the one place that holds the project's address: the notebooks' install
cells and Colab badges, and the README's badges, must all use it (a test checks that they do).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

# The project's GitHub address (owner/name). tests/test_notebooks.py fails until every
# notebook's badge and install cell, and the README's badges, use this same address.
REPOSITORY = "cifar10-course/cifar10-course"
RESULTS_KEY = "cifar_lib_results"


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
    from .checkpoint import json_safe, write_json
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
