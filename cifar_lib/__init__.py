"""cifar_lib: the small, tested library behind the CIFAR-10 course notebooks."""
# The one place the version is set: pyproject.toml reads it, and notebook.INSTALL_REF (the git
# tag the lessons install) derives from it. Set first, so that submodules may import it.
__version__ = "0.2.0"

from .checkpoint import CheckpointError, LoadedModel, load_model, load_run
from .config import ConfigError, TrainConfig
from .data import CLASSES, CifarSplit, DataError, load_cifar10
from .device import DeviceError, select_device
from .models import UnknownModelError, build_model, count_parameters
from .recipes import RECIPES, configure, get_recipe
from .train import FitResult, TrainingDiverged, fit

__all__ = ["CLASSES", "CifarSplit", "DataError", "load_cifar10", "DeviceError", "select_device",
           "UnknownModelError", "build_model", "count_parameters", "CheckpointError",
           "LoadedModel", "load_model", "load_run", "ConfigError", "TrainConfig", "FitResult",
           "TrainingDiverged", "fit", "RECIPES", "configure", "get_recipe"]
