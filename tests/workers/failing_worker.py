"""A torchrun worker: the command line, with rank 1 failing at its first batch ($TEST_FAILURE:
"crash" raises, "hang" blocks) to check that one failing rank stops the whole job."""
import os, sys, time
from cifar_lib import batches, cli
mode = os.environ.pop("TEST_FAILURE")
def fail(self):
    if mode == "crash":
        raise RuntimeError("simulated crash on rank 1")
    time.sleep(600)
    yield
if os.environ["RANK"] == "1":
    batches.BatchIterator.__iter__ = fail
sys.exit(cli.main())
