"""``files.upload()``: the files of $COLAB_STUB_UPLOADS (a folder), as Colab returns them:
{file name: bytes}. Empty when the variable is unset, as when the learner uploads nothing."""
import os
from pathlib import Path


def upload() -> dict:
    folder = os.environ.get("COLAB_STUB_UPLOADS")
    if not folder:
        return {}
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
