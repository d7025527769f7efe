"""Screen: ``fast`` training, from epoch START on, only on a KEEP fraction of its training
images each epoch: the hardest (highest loss when last seen in training: no extra pass) or a
random fraction (the control). The learning-rate schedule follows the fraction of epochs done,
so it still ends at 0. All 50,000 training images; prints, per epoch, its seconds, test accuracy
(no TTA), last learning rate and images trained on, then the final metrics. The record is
archive/screen_fast_selection.json.

    CIFAR10_ROOT=../shared/data OMP_NUM_THREADS=1 taskset -c 0 \
        python tools/screen_fast_selection.py KEEP START [SEED] [hardest|random]

"hardest" is the library's ``hardest_fraction`` / ``hardest_from_epoch``. The library has no
random rule, so "random" patches ``BatchIterator.epoch_order`` (an epoch takes the first KEEP of
its shuffled order) and ``train_step`` (to map the shorter epoch's steps onto the schedule, as
``fit`` does for the hardest images).
"""
import json
import sys

import cifar_lib.train as T
from cifar_lib.batches import BatchIterator
from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure

keep, start = float(sys.argv[1]), int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
rule = sys.argv[4] if len(sys.argv) > 4 else "hardest"


def take_a_random_fraction() -> None:
    """From epoch START on, each epoch trains on the first KEEP of its shuffled order."""
    full_order, step_fn = BatchIterator.epoch_order, T.train_step
    epoch_orders = {}

    def epoch_order(self):
        order = full_order(self)
        if self.epoch >= start:
            order = order[:int(keep * len(order))]
        epoch_orders["now"] = order
        return order

    def train_step(t, x, y, step):
        steps = t.steps_per_epoch                         # an epoch over every image
        epoch, i = divmod(step, steps)
        m = len(epoch_orders["now"]) // len(y)            # this epoch's batches
        return step_fn(t, x, y, int(epoch * steps + i * steps / m))

    BatchIterator.epoch_order, T.train_step = epoch_order, train_step


selection = {}
if rule == "random":
    take_a_random_fraction()
else:
    selection = dict(hardest_fraction=keep, hardest_from_epoch=start)

train, test = load_cifar10()
run = T.fit(configure("fast", seed=seed, val_fraction=0, **selection), train, test,
            progress=False)
for h in run.history:
    print(h["epoch"], round(h["seconds"], 1), round(100 * h["test_acc"], 2), h["lr"],
          round(h["images_per_second"] * h["seconds"]))
print("FINAL", json.dumps(run.metrics))
