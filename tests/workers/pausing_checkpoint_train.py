"""The command line, announcing every checkpoint write on stdout and pausing in the middle of it
(half of the file written), so that a test can SIGKILL training at a chosen moment.

Prints ``WRITING n`` once half of the n-th checkpoint is on disk, ``SAVED n`` after the rename.
"""
import io
import os
import sys
import time

from cifar_lib import checkpoint, cli

_atomic_write = checkpoint.atomic_write
writes = 0


def announced_write(path, write):
    global writes
    if path.name != checkpoint.CHECKPOINT:
        return _atomic_write(path, write)
    writes += 1

    def half_then_pause(f):
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print(f"WRITING {writes}", flush=True)
        time.sleep(float(os.environ.get("PAUSE_SECONDS", "0.3")))
        f.write(data[len(data) // 2:])

    _atomic_write(path, half_then_pause)
    print(f"SAVED {writes}", flush=True)


checkpoint.atomic_write = announced_write
sys.exit(cli.main())
