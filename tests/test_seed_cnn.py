"""``seed-cnn``: stable state-dict names, other widths, and the faster inference copy."""

from __future__ import annotations

import pytest
import torch

from pneumoscan.models.seed_cnn import SeedCNN


def test_state_dict_names_are_stable() -> None:
    """Model files written by earlier versions must keep loading."""
    keys = list(SeedCNN(image_size=96).state_dict())
    blocks = [(0, 2), (1, 3), (2, 2), (3, 3), (4, 3)]  # (block, index of its BatchNorm)
    expected = []
    for block, norm in blocks:
        expected += [f"features.{block}.0.weight", f"features.{block}.0.bias"]
        expected += [
            f"features.{block}.{norm}.{k}" for k in ("weight", "bias", "running_mean", "running_var")
        ]
        expected.append(f"features.{block}.{norm}.num_batches_tracked")
    expected += [f"head.{i}.{k}" for i in (1, 4, 7) for k in ("weight", "bias")]
    assert keys == expected


@pytest.mark.parametrize("negative_block", [None, 1, 4])
def test_inference_copy_computes_the_same_function(negative_block: int | None) -> None:
    torch.manual_seed(0)
    net = SeedCNN(image_size=128, widths=(4, 8, 8, 8, 16), dense=(8, 4)).eval()
    for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = norm.num_features
        norm.weight.data = torch.rand(n) + 0.5
        norm.bias.data = torch.randn(n) * 0.3
        norm.running_mean = torch.randn(n) * 0.5
        norm.running_var = torch.rand(n) + 0.05
    if negative_block is not None:  # a negative scale does not commute with max pooling: kept as is
        net.features[negative_block][-2].weight.data[0] = -0.7  # type: ignore[index]
    fast = net.inference_copy()
    x = torch.rand(6, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), atol=1e-5, rtol=1e-5)
    folded = [len(block) == 3 for block in fast.features]  # type: ignore[arg-type]
    assert folded == [i != negative_block for i in range(5)]


def test_inference_copy_keeps_the_gate_input() -> None:
    """With a gate, the last block's output is the gate's input: it stays unfolded and equal."""
    torch.manual_seed(1)
    net = SeedCNN(image_size=128, widths=(4, 8, 8, 8, 16), dense=(8, 4))
    net.attach_gate()
    net.eval()
    for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_var = torch.rand(norm.num_features) + 0.05
    fast = net.inference_copy()
    x = torch.rand(4, 3, 128, 128)
    with torch.no_grad():
        for got, want in zip(fast.forward_with_gate(x), net.forward_with_gate(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert [len(block) == 3 for block in fast.features] == [True] * 4 + [False]  # type: ignore[arg-type]
