"""The profiler breakdown benchmark: its rows add up to the step and name what they measure."""
from __future__ import annotations

import json

import pytest

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from cifar_lib.bench.breakdown import kind_of, network_ms, operator_kinds
from cifar_lib.cli import main
from cifar_lib.models import Conv3x3
from cifar_lib.muon import Muon
from cifar_lib.recipes import get_recipe


@pytest.mark.parametrize("op, kind", [
    ("aten::mkldnn_convolution", "conv forward"), ("ConvolutionBackward0", "conv backward"),
    ("aten::native_batch_norm", "batchnorm forward"),
    ("aten::native_batch_norm_backward", "batchnorm backward"),
    ("aten::gelu", "activation forward"), ("GeluBackward0", "activation backward"),
    ("aten::silu", "activation forward"), ("SiluBackward0", "activation backward"),
    ("aten::max_pool2d_with_indices", "pooling forward"), ("aten::add_", "other forward")])
def test_operators_are_sorted_by_kind_and_direction(op, kind):
    assert kind_of(op) == kind


def test_an_operator_without_a_kind_takes_the_kind_of_the_one_it_runs_inside():
    # Conv3x3's weight gradient: matrix products inside its autograd node
    assert kind_of("aten::mm", ["_TapGradConvBackward", "autograd::engine::evaluate_function: "
                                "_TapGradConvBackward"]) == "conv backward"
    assert kind_of("aten::mm", ["training step"]) == "other forward"
    assert kind_of("aten::gelu", ["aten::something_backward"]) == "activation backward"


def test_a_convolution_computed_as_matrix_products_counts_as_a_convolution_both_ways():
    conv = Conv3x3(4, 8)  # float32 on a 2×2 map: one matrix product, differentiated by autograd
    assert Conv3x3.DENSE_MAX_SIZE >= 2
    x = torch.randn(3, 4, 2, 2, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        conv(x).square().sum().backward()
    products = [kind for e, kind in operator_kinds(prof.events()) if e.name == "aten::mm"]
    assert products.count("conv forward") == 1  # the product
    assert products.count("conv backward") == 2  # its gradients for the input and the matrix
    assert len(products) == 3


def test_the_optimiser_and_the_augmentation_are_not_counted_as_the_network():
    weight = torch.nn.Parameter(torch.randn(16, 4, 3, 3))
    weight.grad = torch.randn_like(weight)
    optimizer = Muon([weight])  # its update is matrix products: 'other forward' if counted
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("augmentation"):
            torch.randn(8, 8) @ torch.randn(8, 8)
        optimizer.step()
    products = [e for e, kind in operator_kinds(prof.events()) if e.name == "aten::mm"]
    assert len(products) > 1  # both ran their products under the profiler ...
    assert sum(network_ms(prof.events()).values()) == 0  # ... and none of them is the network's


def test_a_recipe_that_trains_on_crops_is_profiled_on_them_too(synthetic_root, tmp_path,
                                                                   one_thread):
    out = tmp_path / "breakdown.json"
    assert main(["bench", "breakdown", "--quick", "--recipes", "fast", "--data-root",
                 str(synthetic_root), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["image_size"] for r in rows} == {32, get_recipe("fast").crop_size_at(0)}
    for size in {r["image_size"] for r in rows}:
        step = [r for r in rows if r["image_size"] == size and r["share"] is not None]
        assert sum(r["share"] for r in step) == pytest.approx(1.0, abs=1e-6)
    evaluation = [r for r in rows if r["share"] is None]
    assert len(evaluation) == 1 and evaluation[0]["image_size"] == 32
    assert "least confident" in evaluation[0]["part"]


def test_quick_record_parts_add_up_to_the_step(synthetic_root, tmp_path, one_thread):
    out = tmp_path / "breakdown.json"
    assert main(["bench", "breakdown", "--quick", "--recipes", "tiny", "--data-root",
                 str(synthetic_root), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "breakdown" and record["quick"] is True
    step = [r for r in record["rows"] if r["share"] is not None]
    parts = {r["part"] for r in step}
    assert {"augmentation", "optimizer", "conv forward", "conv backward"} <= parts
    assert sum(r["share"] for r in step) == pytest.approx(1.0, abs=1e-6)
    assert all(r["ms_per_step"] >= 0 for r in record["rows"])
    assert record["rows"][-1]["part"].startswith("evaluation (")
