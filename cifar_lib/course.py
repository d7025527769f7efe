"""Run the course headlessly: every notebook in order with papermill, and parameter sweeps.

    python -m cifar_lib run-notebooks [--out build/notebooks] [-p NAME VALUE ...] [--quick]
    python -m cifar_lib sweep --grid lr=0.5,1.5 epochs=1,2 [-p NAME VALUE ...]

Parameters given with ``-p`` go to every notebook that has them; a name that none of them has
is refused, naming theirs. An executed notebook replaces the last one only when it ran to the
end; one that failed is kept as ``NAME.failed.ipynb``. A sweep's folder keeps what it swept
(``sweep.json``): another sweep there is refused, the same one again runs its points again
(01_train loads a finished run of the same settings instead of training it); the command fails
(exit status 1) when a point failed. The notebooks are found with ``--notebooks DIR``, else in
``./notebooks`` or the ``notebooks`` folder of the repository the current folder is in (they
are not part of the installed package), and run with that folder as working directory, as
Jupyter runs them: their run folders (``runs/fast``) land inside it. Needs the ``course``
extra (papermill, nbformat, ipykernel and a few more).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import json
import os
import time
from pathlib import Path

NOTEBOOKS = ("01_train", "02_benchmark", "03_evaluate", "04_real_images")
QUICK = {"quick": True}
SWEEP_JSON = "sweep.json"  # what a sweep folder swept: the notebook, the grid, the parameters


def find_notebooks(start: str | Path | None = None) -> Path:
    """The folder holding ``01_train.ipynb``: ``start`` itself, or ``notebooks/`` in ``start``
    (default: the current folder) or in any folder above it."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *[p / "notebooks" for p in (start, *start.parents)]):
        if (folder / f"{NOTEBOOKS[0]}.ipynb").is_file():
            return folder
    raise FileNotFoundError(f"no course notebooks ({NOTEBOOKS[0]}.ipynb) in or above {start}: "
                            f"run from a checkout of the course or pass --notebooks DIR")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the failing cell."""


def parse_value(text: str):
    """'1e-3' → 0.001, 'true' → True, 'none' → None, '[1, 2]' → list, anything else → str."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_notebook(name: str, out_dir: Path, parameters: dict, progress: bool = True,
                 notebook_dir: Path | None = None, cwd: Path | None = None) -> Path:
    """Execute ``<notebook_dir>/<name>.ipynb`` into ``out_dir`` with papermill; returns the output.

    Runs with the notebooks folder as working directory (as Jupyter would) unless ``cwd`` says
    otherwise (e.g. an empty folder, as on Colab). The executed copy replaces ``<name>.ipynb``
    in ``out_dir`` only when it ran to the end; a failed one is kept as ``<name>.failed.ipynb``
    beside the last good copy.
    """
    notebook_dir = Path(notebook_dir) if notebook_dir else find_notebooks()
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    out_dir.mkdir(parents=True, exist_ok=True)
    source, target = notebook_dir / f"{name}.ipynb", out_dir / f"{name}.ipynb"
    running, failed = out_dir / f"{name}.running.ipynb", out_dir / f"{name}.failed.ipynb"
    known = set(pm.inspect_notebook(str(source)))
    # The kernel inherits our environment; a non-interactive MPLBACKEND (e.g. Agg, set for
    # scripts and tests) would stop the figures from being embedded in the notebook.
    os.environ.pop("MPLBACKEND", None)
    try:
        pm.execute_notebook(str(source), str(running), cwd=str(cwd or notebook_dir),
                            parameters={k: v for k, v in parameters.items() if k in known},
                            progress_bar=progress, log_output=progress, kernel_name="python3")
    except BaseException as e:  # a cell's error, a dead kernel, Ctrl-C: keep what ran
        if running.exists():
            os.replace(running, failed)
        if isinstance(e, PapermillExecutionError):
            raise NotebookFailed(f"{name}.ipynb failed in cell {e.exec_count} "
                                 f"({e.ename}: {e.evalue}); executed copy: {failed}") from None
        raise
    drop_widget_outputs(running)
    os.replace(running, target)
    failed.unlink(missing_ok=True)
    return target


WIDGET = "application/vnd.jupyter.widget-view+json"


def drop_widget_outputs(path: Path) -> int:
    """Remove widget outputs (tqdm's live bars) from an executed notebook; returns how many.

    Papermill does not save widget state, so the stored fallback would show the bar's first
    frame ("0/480") to every reader; the cell's printed summary says how the run ended.
    """
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
            dropped += len(cell.outputs) - len(kept)
            cell.outputs = kept
    if dropped or "widgets" in nb.metadata:
        nb.metadata.pop("widgets", None)  # the saved widget state, now unused
        nbformat.write(nb, str(path))
    return dropped


def check_parameters(given, names, notebook_dir: Path | None = None) -> None:
    """UsageError for a parameter name in ``given`` that none of the notebooks ``names`` has
    (papermill would drop it, and every run would use the default), naming theirs."""
    import difflib
    import papermill as pm
    from .errors import UsageError
    notebook_dir = Path(notebook_dir) if notebook_dir else find_notebooks()
    known = {}
    for name in names:
        known.update(pm.inspect_notebook(str(notebook_dir / f"{name}.ipynb")))
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            whose = (f"{names[0]} has" if len(names) == 1 else
                     f"none of {', '.join(names)} has")
            raise UsageError(f"{whose} no parameter {name!r}"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; {'its' if len(names) == 1 else 'their'} parameters: "
                             + ", ".join(known))


def run_all(out_dir: Path, parameters: dict, names=NOTEBOOKS, progress: bool = True,
            notebook_dir: Path | None = None) -> list[Path]:
    """Every notebook in order; stops at the first failure (later lessons use earlier ones' runs)."""
    outputs = []
    for name in names:
        t0 = time.perf_counter()
        print(f"=== {name} ===", flush=True)
        outputs.append(run_notebook(name, out_dir, parameters, progress, notebook_dir))
        print(f"=== {name}: done in {time.perf_counter() - t0:.0f} s ===", flush=True)
    return outputs


def sweep(grid: dict[str, list], out_dir: Path, parameters: dict, notebook: str = "01_train",
          progress: bool = False, notebook_dir: Path | None = None) -> list[dict]:
    """Run ``notebook`` once per point of ``grid`` (a cartesian product), collecting results.

    A failing run is recorded (status 'failed' with the error) and the sweep goes on.
    Writes ``sweep.json`` (what was swept), ``sweep.csv`` and ``sweep.png`` into ``out_dir``;
    returns the rows. A folder that holds another sweep is refused (its points' runs would be
    trained over and its table replaced); the same sweep again runs every point again, where
    01_train loads a finished run of the same settings instead of training it.
    """
    from .errors import UsageError
    from .files import json_safe, read_json, write_json
    from .notebook import read_results
    # as sweep.json holds it: JSON values (a Path as its string), the grid in its order
    plan = json_safe(json.loads(json.dumps(
        {"notebook": notebook, "grid": list(grid.items()), "parameters": parameters},
        default=str)))
    if (out_dir / "sweep.csv").exists() or (out_dir / SWEEP_JSON).exists():
        try:
            before = read_json(out_dir / SWEEP_JSON)
        except (OSError, ValueError):
            before = None
        if before != plan:
            raise UsageError(f"{out_dir} holds another sweep ({_describe(before)}): choose "
                             f"another --out (make: SWEEP_OUT=...), or delete {out_dir}")
    write_json(out_dir / SWEEP_JSON, plan)
    rows = []
    names = list(grid)
    for i, values in enumerate(itertools.product(*(grid[n] for n in names))):
        point = dict(zip(names, values))
        run_params = {**parameters, **point, "run_dir": str((out_dir / f"run{i:03d}").resolve())}
        label = ", ".join(f"{k}={v}" for k, v in point.items())
        print(f"--- sweep run {i}: {label}", flush=True)
        row = {"run": i, **point, "status": "ok", "error": ""}
        try:
            executed = run_notebook(notebook, out_dir / f"run{i:03d}", run_params, progress,
                                    notebook_dir)
            row.update(read_results(executed))
        except Exception as e:  # record and continue: one bad point must not lose the others
            row.update(status="failed", error=str(e).splitlines()[0])
            print(f"    failed: {row['error']}", flush=True)
        rows.append(row)
        _write_csv(out_dir / "sweep.csv", rows)
    _plot(rows, names, out_dir / "sweep.png")
    return rows


def _describe(plan: dict | None) -> str:
    if not plan:
        return "its sweep.json is missing or unreadable"
    grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in plan.get("grid", []))
    return f"{plan.get('notebook')} over {grid}, with {plan.get('parameters') or 'no parameters'}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _plot(rows: list[dict], names: list[str], path: Path, metric: str = "test_acc") -> None:
    # A bare Figure, not pyplot: no global backend switch in a notebook that calls sweep().
    from matplotlib.figure import Figure
    ok = [r for r in rows if r["status"] == "ok" and r.get(metric) is not None]
    fig = Figure(figsize=(max(5, 0.9 * len(rows)), 3.5))
    ax = fig.add_subplot()
    labels = [", ".join(f"{n}={r[n]}" for n in names) for r in ok]
    ax.bar(range(len(ok)), [100 * r[metric] for r in ok], color="tab:blue")
    ax.set_xticks(range(len(ok)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    failed = len(rows) - len(ok)
    ax.set_title(f"sweep of {', '.join(names)}" + (f" ({failed} failed)" if failed else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _params(pairs) -> dict:
    return {name: parse_value(value) for name, value in (pairs or [])}


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    """The options of ``run-notebooks`` (``command="run"``) or ``sweep`` on parser ``p``."""
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="pass a parameter to the notebooks that have it, e.g. -p epochs 2 "
                        "(repeatable; VALUE as JSON, or none/true/false, else a string); a "
                        "name that none of them has is refused")
    p.add_argument("--quick", action="store_true",
                   help="the CI smoke test: tiny data, one epoch (-p quick true)")
    p.add_argument("--out", type=Path,
                   default=Path("build/notebooks" if command == "run" else "build/sweep"),
                   help="folder for the executed notebooks and results (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no cell-by-cell progress")
    p.add_argument("--notebooks", type=Path, help="folder of the course notebooks "
                   "(default: ./notebooks or the repository's, found from here)")
    if command == "run":
        p.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="run only these notebooks")
    else:
        p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                       help="the values of each swept parameter; every combination runs once")
        p.add_argument("--notebook", default="01_train", choices=NOTEBOOKS,
                       help="the notebook to sweep (default %(default)s)")


def parse_grid(items: list[str]) -> dict[str, list]:
    """['lr=0.5,1.5', 'epochs=1,2'] → {'lr': [0.5, 1.5], 'epochs': [1, 2]}."""
    from .errors import UsageError
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if not name or not values:
            raise UsageError(f"--grid takes NAME=V1,V2,..., got {item!r}")
        if name in grid:
            raise UsageError(f"--grid names {name!r} twice: give all its values at once, "
                             f"{name}=V1,V2,...")
        grid[name] = [parse_value(v) for v in values.split(",")]
    return grid


def main(args: argparse.Namespace) -> int:
    """``run-notebooks`` or ``sweep`` (``args.command``) from parsed command-line ``args``."""
    from .errors import UsageError
    if importlib.util.find_spec("papermill") is None:
        raise UsageError(f"{args.command} needs papermill: pip install papermill ipykernel "
                         f"(the course extra)")
    params = {**(QUICK if args.quick else {}), **_params(args.parameter)}
    out = Path(args.out)
    if args.command == "run-notebooks":
        names = args.only or NOTEBOOKS
        check_parameters(params, names, args.notebooks)
        run_all(out, params, names, not args.no_progress, args.notebooks)
        print(f"all notebooks ran; executed copies in {out}/")
        return 0
    grid = parse_grid(args.grid)
    check_parameters([*params, *grid], [args.notebook], args.notebooks)
    rows = sweep(grid, out, params, args.notebook, not args.no_progress, args.notebooks)
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows)} runs ({failed} failed): {out}/sweep.csv, {out}/sweep.png")
    return 1 if failed else 0


if __name__ == "__main__":  # the commands live in the one command line now
    raise SystemExit("use `python -m cifar_lib run-notebooks` or `python -m cifar_lib sweep` "
                     "(--help explains them)")
