"""Which code made a result: the package version and, in a git checkout, the commit.

Benchmark records (``bench.records.environment``) and shipped models (``provenance.json``)
carry ``code_version()``, so a number can be traced to the exact source that produced it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):  # no git, not a repository, a hung git
        return None
    return done.stdout.strip()


def git_commit(package: Path = PACKAGE) -> tuple[str | None, bool]:
    """(commit, dirty) of the checkout ``package`` lives in: the HEAD commit's full hash and
    whether tracked files differ from it; (None, False) when ``package`` is not the package
    folder at the top of a git checkout (an installed wheel, even inside someone's repository)."""
    top = _git("rev-parse", "--show-toplevel", cwd=package)
    if top is None or Path(top).resolve() != package.parent:
        return None, False
    commit = _git("rev-parse", "HEAD", cwd=package)
    # Tracked files only: results written next to the code (runs, new records) are untracked
    # and do not change what the code computes.
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=package)
    return commit or None, bool(status)


def code_version(package: Path = PACKAGE) -> dict:
    """{"version": cifar_lib's version, "commit": the git commit or None, and "dirty": True
    when tracked files had uncommitted changes}."""
    from . import __version__
    commit, dirty = git_commit(package)
    return {"version": __version__, "commit": commit, **({"dirty": True} if dirty else {})}
