"""A stand-in for Colab's ``google.colab`` package, for running the notebooks as Colab would.

Only what the course touches: ``files.upload()`` and ``drive.mount()``. Put this folder
(``tests/colab_stub``) on PYTHONPATH and ``import google.colab`` succeeds, so every Colab
branch of the notebooks runs. Nothing here reaches the network.
"""
from . import drive, files  # noqa: F401
