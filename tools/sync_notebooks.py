"""Regenerate each lesson's .ipynb from its .py, the source (`make sync`).

`jupytext --update` rewrites each notebooks/NN_name.ipynb from its .py and keeps the outputs of
unchanged cells, but when only a cell's tags changed it keeps the old .ipynb's tags, so a tag
such as nbval-check-output added in the .py would never reach nbval. The tags are therefore
copied from the .py afterwards, cell by cell.
"""
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli


def sync(py: Path) -> None:
    ipynb = py.with_suffix(".ipynb")
    jupytext_cli(["--quiet", "--update", "--to", "ipynb", str(py)])
    source, notebook = jupytext.read(py), nbformat.read(ipynb, as_version=4)
    changed = False
    for mine, theirs in zip(source.cells, notebook.cells, strict=True):
        tags = mine.metadata.get("tags", [])
        if theirs.metadata.get("tags", []) != tags:
            theirs.metadata["tags"] = list(tags)
            changed = True
    if changed:
        nbformat.write(notebook, ipynb)


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks")
    for py in sorted(folder.glob("[0-9]*.py")):
        sync(py)
        print(f"synced {py.with_suffix('.ipynb')}")
