"""The common path from the top level, and the examples in its docstrings (run as doctests)."""
from __future__ import annotations

import doctest

import pytest

import cifar_lib
from cifar_lib import calibration, evaluation, photos, pretrained, recipes, train

EXAMPLES = [(pretrained, "load_pretrained"), (recipes, "configure"), (train, "fit"),
            (photos, "predict"), (evaluation, "evaluate_run"), (calibration, "calibrate_run")]


@pytest.mark.parametrize("module, name", EXAMPLES, ids=[n for _, n in EXAMPLES])
def test_docstring_example_runs(module, name, one_thread):
    func = getattr(module, name)
    assert getattr(cifar_lib, name) is func          # importable from the top level
    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(func, name, globs=vars(module).copy()) if t.examples]
    assert tests, f"{name} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0


def test_one_loader_one_type(tmp_path):
    assert "load_model" not in cifar_lib.__all__     # load_run is the loader
    assert isinstance(cifar_lib.load_pretrained("original"), cifar_lib.LoadedModel)
