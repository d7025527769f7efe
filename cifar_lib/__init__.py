"""cifar_lib: the small, tested library behind the CIFAR-10 course notebooks.

The common path, importable from here: load the data (``load_cifar10``), build a recipe's
settings (``configure``, ``RECIPES``), train (``fit``), load a run (``load_run``) or the model
that ships with the package (``load_pretrained``), classify photos (``predict``), evaluate
(``evaluate_run``) and calibrate (``calibrate_run``). Each has a docstring example.
"""
# The one place the version is set: pyproject.toml reads it, and notebook.INSTALL_REF (the git
# tag the lessons install) derives from it. Set first, so that submodules may import it.
__version__ = "0.2.0"

from .calibration import Calibration, calibrate_run
from .checkpoint import CheckpointError, LoadedModel, load_run
from .config import ConfigError, TrainConfig
from .data import CLASSES, CifarSplit, DataError, load_cifar10
from .device import DeviceError, select_device
from .evaluation import EvaluationReport, evaluate_run
from .models import UnknownModelError, build_model, count_parameters
from .photos import ImageError, Prediction, predict
from .pretrained import load_pretrained
from .recipes import RECIPES, configure, get_recipe
from .train import FitResult, TrainingDiverged, fit

__all__ = ["CLASSES", "CifarSplit", "DataError", "load_cifar10", "DeviceError", "select_device",
           "UnknownModelError", "build_model", "count_parameters", "CheckpointError",
           "LoadedModel", "load_run", "load_pretrained", "ConfigError", "TrainConfig",
           "FitResult", "TrainingDiverged", "fit", "RECIPES", "configure", "get_recipe",
           "Calibration", "calibrate_run", "EvaluationReport", "evaluate_run", "ImageError",
           "Prediction", "predict"]
