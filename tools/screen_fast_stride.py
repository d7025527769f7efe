"""Screen: ``fast`` with its whitening layer stepping 2 pixels for its first epochs (the network
at 16×16, about a third of an epoch's time), then 1 as usual; a plan gives each epoch's
(stride, crop size or None). Seed 0, all 50,000 training images; prints each epoch's seconds
and test accuracy, then the final metrics. The record is archive/screen_fast_levers.json.

    CIFAR10_ROOT=../shared/data OMP_NUM_THREADS=1 taskset -c 0 python tools/screen_fast_stride.py \
        '[[2,null],[2,null],[2,null],[2,null],[2,null],[2,null],[1,null],[1,null],[1,null],[1,null]]'

No recipe switches the stride mid-run, so this screen changes it from the hook that starts
each epoch (``_freeze_whitening_bias_after``) rather than through a TrainConfig field.
"""
import json
import sys

import cifar_lib.train as T
from cifar_lib.data import load_cifar10
from cifar_lib.models import Whitening
from cifar_lib.recipes import configure

plan = json.loads(sys.argv[1])   # one [stride, crop size or null] per epoch
start_epoch = T._freeze_whitening_bias_after


def start_epoch_on_plan(t, epoch):
    start_epoch(t, epoch)
    stride, crop = plan[epoch]
    for m in t.model.modules():
        if isinstance(m, Whitening):
            m.stride = (stride, stride)
    t.batches.crop_size = crop   # read when the epoch's batches are drawn, after this hook


T._freeze_whitening_bias_after = start_epoch_on_plan
train, test = load_cifar10()
run = T.fit(configure("fast", seed=0, val_fraction=0, epochs=len(plan)), train, test,
            progress=False)
for h in run.history:
    print(h["epoch"], round(h["seconds"], 1), round(100 * h["test_acc"], 2))
print("FINAL", json.dumps(run.metrics))
