"""Regenerate each lesson's .ipynb from its .py, the source (`make sync`).

`jupytext --update` rewrites each notebooks/NN_name.ipynb from its .py and keeps the outputs of
unchanged cells, but when only a cell's tags changed it keeps the old .ipynb's tags, so a tag
such as nbval-check-output added in the .py would never reach nbval. The tags are therefore
copied from the .py afterwards, cell by cell. The metadata of the run that made the outputs
(papermill's paths, dates and durations, each cell's execution times) is dropped: outputs are
what a reader needs; where and when they were made is the record's business.
"""
import argparse
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli


def strip_run_metadata(notebook) -> bool:
    """Drop the executing run's metadata (papermill's, cells' execution times); True if any."""
    found = notebook.metadata.pop("papermill", None) is not None
    for cell in notebook.cells:
        for key in ("papermill", "execution"):
            found |= cell.metadata.pop(key, None) is not None
    return found


def sync(py: Path) -> None:
    ipynb = py.with_suffix(".ipynb")
    jupytext_cli(["--quiet", "--update", "--to", "ipynb", str(py)])
    source, notebook = jupytext.read(py), nbformat.read(ipynb, as_version=4)
    changed = strip_run_metadata(notebook)
    for mine, theirs in zip(source.cells, notebook.cells, strict=True):
        tags = mine.metadata.get("tags", [])
        if theirs.metadata.get("tags", []) != tags:
            theirs.metadata["tags"] = list(tags)
            changed = True
    if changed:
        nbformat.write(notebook, ipynb)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="notebooks",
                        help="the lessons' folder (default: notebooks)")
    folder = parser.parse_args().folder
    lessons = sorted(Path(folder).glob("[0-9]*.py"))
    if not lessons:
        parser.error(f"no lessons (NN_name.py) in {folder}")
    for py in lessons:
        sync(py)
        print(f"synced {py.with_suffix('.ipynb')}")
