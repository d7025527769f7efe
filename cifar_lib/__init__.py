"""cifar_lib: the small, tested library behind the CIFAR-10 course notebooks."""
from .data import CLASSES, CifarSplit, DataError, load_cifar10
from .device import DeviceError, select_device
from .models import UnknownModelError, build_model, count_parameters
from .checkpoint import CheckpointError, load_model
from .train import FitResult, TrainConfig, TrainingDiverged, fit
from .recipes import RECIPES, get_recipe

__all__ = ["CLASSES", "CifarSplit", "DataError", "load_cifar10", "DeviceError", "select_device",
           "UnknownModelError", "build_model", "count_parameters", "CheckpointError", "load_model",
           "FitResult", "TrainConfig", "TrainingDiverged", "fit", "RECIPES", "get_recipe"]
__version__ = "0.1.0"
