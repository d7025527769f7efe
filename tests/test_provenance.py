"""Provenance: records and shipped models say which code made them; every committed record's
command still runs."""
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cifar_lib import __version__
from cifar_lib.bench.records import environment, make_record
from cifar_lib.cli import build_parser, main
from cifar_lib.provenance import PACKAGE, code_version
from cifar_lib.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted(p for p in [*ROOT.glob("benchmarks/results/*.json"),
                             *ROOT.glob("cifar_lib/records/*.json")]
                 if not p.name.endswith(".progress.json"))  # a benchmark still running
PREFIX = ["python", "-m", "cifar_lib"]
# Records whose command cannot run today, each with the reason; kept for their numbers.
NOT_RERUNNABLE: dict[str, str] = {}
# Text after the command in parentheses describes a code change made for that run only.
NOTE = " (with "


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_code_version_names_the_version_and_this_checkout_s_commit():
    v = code_version()
    assert v["version"] == __version__
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    assert v["commit"] == _git("rev-parse", "HEAD", cwd=ROOT)
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=ROOT))
    assert v.get("dirty", False) == dirty


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dirty_and_outside_a_checkout(tmp_path):
    package = tmp_path / "repo" / "cifar_lib"
    package.mkdir(parents=True)
    shutil.copy(PACKAGE / "__init__.py", package)
    assert code_version(package)["commit"] is None  # no repository: no commit, not an error
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    _git("init", "-q", cwd=package.parent)
    _git("add", ".", cwd=package.parent)
    _git(*env, "commit", "-qm", "x", cwd=package.parent)
    clean = code_version(package)
    assert clean["commit"] == _git("rev-parse", "HEAD", cwd=package.parent)
    assert "dirty" not in clean
    (package / "__init__.py").write_text("changed = True\n")
    assert code_version(package)["dirty"] is True
    # an installed copy inside some other repository is not that repository's code
    nested = package.parent / "site-packages" / "cifar_lib"
    nested.mkdir(parents=True)
    assert code_version(nested)["commit"] is None


def test_every_new_record_carries_the_code_version():
    assert environment()["cifar_lib"] == code_version()
    record = make_record([{"x": 1}], benchmark="demo")
    assert record["machine"]["cifar_lib"]["version"] == __version__


def test_shipping_records_the_code_version(synthetic_root, tmp_path):
    from cifar_lib.data import load_cifar10
    from cifar_lib.pretrained import PROVENANCE, ship
    train, test = load_cifar10(synthetic_root)
    run = tmp_path / "run"
    assert main(["train", "--recipe", "original", "--quick", "--no-progress", "--device", "cpu",
                 "--data-root", str(synthetic_root), "--run-dir", str(run)]) == 0
    cpu = {"vendor": "GenuineIntel", "family": 6, "model": 207}
    folder = ship(run, "copy", command="python -m cifar_lib train ...", train_split=train,
                  test_split=test, machine="a test", cpu_id=cpu, dest=tmp_path)
    provenance = json.loads((folder / PROVENANCE).read_text())
    assert provenance["cifar_lib"] == code_version() and provenance["cpu_id"] == cpu


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_committed_record_s_command_still_runs(record, capsys):
    name = str(record.relative_to(ROOT))
    command = json.loads(record.read_text()).get("command")
    if name in NOT_RERUNNABLE:
        pytest.skip(NOT_RERUNNABLE[name])
    assert command, f"{name} has no command"
    argv = shlex.split(command.split(NOTE)[0])
    assert argv[:3] == PREFIX, f"{name}: {command!r} is not a `python -m cifar_lib` command"
    with pytest.raises(SystemExit) as e:  # --help: the command and its options still exist
        main([*argv[3:], "--help"])
    assert e.value.code == 0, f"{name}: {command!r} fails: {capsys.readouterr().err}"
    args = build_parser().parse_args(argv[3:])  # every option parses, none unknown
    # Recipe names parse whatever they are; each must still name a recipe.
    recipes = [getattr(args, f) for f in ("recipe", "anchor") if getattr(args, f, None)]
    for recipe in [*recipes, *(getattr(args, "recipes", None) or [])]:
        get_recipe(recipe)


def test_the_not_rerunnable_list_names_only_records_that_exist():
    assert {str(p.relative_to(ROOT)) for p in RECORDS} >= set(NOT_RERUNNABLE)
