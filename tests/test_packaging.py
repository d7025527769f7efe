"""Packaging: one version, extras by purpose, pinned CI installs, licence and photo sources, and
lessons that install the library version they were written against."""
import re
import sys
from pathlib import Path

import pytest

from cifar_lib import __version__
from cifar_lib.course import NOTEBOOKS
from cifar_lib.notebook import INSTALL_ENV, INSTALL_REF, INSTALL_TARGET, REPOSITORY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SAMPLES = ROOT / "cifar_lib" / "sample_images"


def test_the_version_is_set_in_one_place():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "cifar_lib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_extras_by_purpose_and_no_requirements_file():
    extras = {name: {re.split(r"[<>=!~ \[]", d)[0].lower() for d in deps}
              for name, deps in PYPROJECT["project"]["optional-dependencies"].items()}
    assert {"papermill", "nbformat", "jupytext", "ipykernel", "ipywidgets", "pandas"} <= \
        extras["course"]
    assert {"pytest", "nbval", "playwright"} <= extras["test"]
    assert extras["demo"] == {"gradio"}
    assert extras["export"] == {"onnx", "onnxscript", "onnxruntime"}
    for deps in PYPROJECT["project"]["optional-dependencies"].values():  # ranges, not pins
        assert not [d for d in deps if "==" in d], deps
    assert not (ROOT / "requirements.txt").exists()


def test_constraints_pin_every_package_and_make_and_ci_use_them():
    lines = [l for l in (ROOT / "constraints.txt").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    pins = dict(l.split("==", 1) for l in lines)
    assert len(pins) == len(lines), "every line NAME==VERSION"
    names = {n.lower().replace("_", "-") for n in pins}
    assert "cifar-lib" not in names  # the package itself comes from the checkout
    wanted = ["torch", "torchvision", "numpy", "papermill", "pytest", "nbval", "gradio",
              "onnxruntime"]
    assert set(wanted) <= names, set(wanted) - names
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install .*-c \$\(CONSTRAINTS\) -e "\.\[\$\(EXTRAS\)\]"', makefile)
    assert re.search(r"^EXTRAS \?= course,test,demo", makefile, re.M)
    assert "python -m cifar_lib.course" not in makefile
    assert "-m cifar_lib run-notebooks" in makefile and "-m cifar_lib sweep" in makefile
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()
          if l.strip() and not l.lstrip().startswith("#")]
    assert ci[-1] == "make test"
    assert any("apt-get install -y chromium" in l for l in ci)


def test_licence_and_the_sample_photos_sources():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "cifar10-course contributors" in licence
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    sources = (SAMPLES / "SOURCES.md").read_text()
    photos = sorted(p.name for p in SAMPLES.glob("*.jpg"))
    assert photos
    for name in photos:
        row = next((l for l in sources.splitlines() if l.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is not listed in SOURCES.md"
        assert "public domain" in row
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["cifar_lib"]
    assert "sample_images/SOURCES.md" in package_data


def test_install_ref_is_this_version_s_tag():
    assert INSTALL_REF == f"v{__version__}"
    assert INSTALL_TARGET == f"git+https://github.com/{REPOSITORY}@{INSTALL_REF}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_lesson_installs_the_version_it_was_written_against(name):
    source = (ROOT / "notebooks" / f"{name}.py").read_text()
    installs = re.findall(r"os\.environ\.get\((.*)\)", source)
    # $CIFAR_LIB_INSTALL still overrides; otherwise the repository at this version's tag
    assert installs == [f'"{INSTALL_ENV}", "{INSTALL_TARGET}"'], installs
    assert '"pip", "install"' in source


def test_the_docs_install_this_version():
    # the README's install line names this version's tag, as the lessons' setup cells do
    for doc in ("README.md", "CONTRIBUTING.md"):
        for target in re.findall(r"git\+https://github\.com/[^\s\"'`]+", (ROOT / doc).read_text()):
            assert target == INSTALL_TARGET, (doc, target)
    assert INSTALL_TARGET in (ROOT / "README.md").read_text()
