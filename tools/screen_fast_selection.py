"""Screen: ``fast`` training, from epoch START on, only on a KEEP fraction of its training
images each epoch: the hardest (highest loss when last seen in training: no extra pass) or a
random fraction (the control). The learning-rate schedule follows the fraction of epochs done,
so it still ends at 0. All 50,000 training images; prints, per epoch, its seconds, test accuracy
(no TTA), last learning rate and images trained on, then the final metrics. The record is
archive/screen_fast_selection.json.

    CIFAR10_ROOT=../shared/data OMP_NUM_THREADS=1 taskset -c 0 \
        python tools/screen_fast_selection.py KEEP START [SEED] [hardest|random]

No recipe selects images, so this screen patches ``BatchIterator.epoch_order`` (which images an
epoch takes) and ``train_step`` (to note each image's loss and to map steps onto the schedule).
"""
import json
import sys

import torch
import torch.nn.functional as F

import cifar_lib.train as T
from cifar_lib.batches import BatchIterator
from cifar_lib.data import load_cifar10
from cifar_lib.recipes import configure

keep, start = float(sys.argv[1]), int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
rule = sys.argv[4] if len(sys.argv) > 4 else "hardest"
state = {"loss": None, "order": None}   # each image's last training loss; this epoch's order
full_order = BatchIterator.epoch_order


def epoch_order(self):
    order = full_order(self)
    if state["loss"] is None:
        state["loss"] = torch.full((len(self.labels),), float("inf"))  # unseen: hardest
    if self.epoch >= start:
        k = int(keep * len(order))
        if rule == "random":      # order is already shuffled: its first k are a random k
            order = order[:k]
        else:
            threshold = state["loss"][order].kthvalue(len(order) - k + 1).values
            order = order[state["loss"][order] >= threshold][:k]
    state["order"] = order
    return order


BatchIterator.epoch_order = epoch_order
step_fn = T.train_step


def train_step(t, x, y, step):
    S = t.steps_per_epoch                       # whole-epoch batches: len() is unchanged
    epoch, i = divmod(step, S)
    m = len(state["order"]) // len(y)           # this epoch's batches
    loss, logits = step_fn(t, x, y, int(epoch * S + i * S / m))
    idx = state["order"][i * len(y):(i + 1) * len(y)]
    state["loss"][idx] = F.cross_entropy(logits.float(), y, reduction="none").cpu()
    return loss, logits


T.train_step = train_step
train, test = load_cifar10()
run = T.fit(configure("fast", seed=seed, val_fraction=0), train, test, progress=False)
for h in run.history:
    print(h["epoch"], round(h["seconds"], 1), round(100 * h["test_acc"], 2), h["lr"],
          round(h["images_per_second"] * h["seconds"]))
print("FINAL", json.dumps(run.metrics))
