"""The allocator benchmark runs both allocators side by side in fresh processes and records
what the kernel did for each (never its timings)."""
from __future__ import annotations

import json

import pytest

from cifar_lib.cli import main
from cifar_lib.device import has_glibc

pytestmark = pytest.mark.skipif(not has_glibc(),
                                reason="keeping freed memory is a glibc malloc setting")


def test_allocator_record_has_both_allocators_and_their_page_faults(cifar_folder, tmp_path):
    root = cifar_folder(tmp_path / "data", n_per_batch=500)  # 2,500 ≥ one quick batch of 256
    out = tmp_path / "allocator.json"
    assert main(["bench", "allocator", "--quick", "--recipes", "fast", "--rounds", "1",
                 "--steps", "2", "--warmup", "1", "--data-root", str(root),
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [(r["recipe"], r["allocator"]) for r in rows] == [("fast", "as it is"),
                                                            ("fast", "kept")]
    faults = {r["allocator"]: r["minor_page_faults"] for r in rows}
    # with malloc as it is, each step faults its large activations' pages in again
    assert faults["as it is"] > faults["kept"] + 20_000
    assert record["speedup"]["fast"] == pytest.approx(rows[1]["images_per_s"]
                                                      / rows[0]["images_per_s"])
