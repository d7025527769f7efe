"""``drive.mount(mountpoint)``: makes ``mountpoint/MyDrive`` (a plain folder) and notes the
call in ``mountpoint/mounted.log``, so a test can tell that Drive was mounted, and only once."""
from pathlib import Path


def mount(mountpoint: str, force_remount: bool = False) -> None:
    root = Path(mountpoint)
    (root / "MyDrive").mkdir(parents=True, exist_ok=True)
    with open(root / "mounted.log", "a") as log:
        log.write(f"mount {mountpoint}\n")
