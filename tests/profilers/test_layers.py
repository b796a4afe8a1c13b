"""Layer records: exact memory access, mult-adds, element-wise ops and attribution, against hand figures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profilers import LAYER_KINDS, LayerRecord, collect_layers

F32 = 4


class Lambda(nn.Module):
    """A module running a plain function: the functional ops it runs are attributed to it."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def only(records: list[LayerRecord]) -> LayerRecord:
    assert len(records) == 1, [(r.name, r.op) for r in records]
    return records[0]


@pytest.mark.parametrize(("c1", "c2", "h", "w"), [(8, 16, 7, 7), (24, 24, 14, 14), (3, 64, 5, 9), (116, 58, 1, 1)])
def test_pointwise_conv_memory_access_is_shufflenet_formula(c1: int, c2: int, h: int, w: int) -> None:
    record = only(collect_layers(nn.Conv2d(c1, c2, 1, bias=False), torch.randn(1, c1, h, w)))
    assert record.kind == "conv"
    assert record.memory_access_bytes == (h * w * (c1 + c2) + c1 * c2) * F32
    assert record.mult_adds == h * w * c1 * c2
    assert record.params == c1 * c2
    assert record.elementwise_ops == 0
    assert record.conv is not None
    assert (record.conv.in_channels, record.conv.out_channels, record.conv.h, record.conv.w) == (c1, c2, h, w)
    assert record.conv.kernel_size == (1, 1) and record.conv.groups == 1 and not record.conv.depthwise


@pytest.mark.parametrize(("c1", "c2", "g", "hw"), [(16, 32, 2, 8), (24, 48, 4, 6), (64, 64, 8, 3)])
def test_grouped_pointwise_conv_memory_access(c1: int, c2: int, g: int, hw: int) -> None:
    record = only(collect_layers(nn.Conv2d(c1, c2, 1, groups=g, bias=False), torch.randn(1, c1, hw, hw)))
    assert record.memory_access_bytes == (hw * hw * (c1 + c2) + c1 * c2 // g) * F32
    assert record.mult_adds == hw * hw * c1 * c2 // g
    assert record.params == c1 * c2 // g
    assert record.conv is not None and record.conv.groups == g


def test_depthwise_conv() -> None:
    c, h = 32, 10
    record = only(collect_layers(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), torch.randn(1, c, h, h)))
    assert record.memory_access_bytes == (2 * c * h * h + 9 * c) * F32
    assert record.mult_adds == c * h * h * 9
    assert record.conv is not None and record.conv.depthwise and record.conv.kernel_size == (3, 3)


def test_strided_conv_with_bias_and_batch() -> None:
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
    record = only(collect_layers(conv, torch.randn(2, 4, 9, 9)))
    assert record.output_shape == (2, 6, 5, 5)
    # feature maps scale with the batch, weights are read once
    assert record.memory_access_bytes == (2 * 4 * 81 + 2 * 6 * 25 + 6 * 4 * 9 + 6) * F32
    assert record.mult_adds == 2 * 6 * 25 * 4 * 9
    assert record.params == 6 * 4 * 9 + 6
    assert record.input_shapes == ((2, 4, 9, 9),)
    assert record.conv is not None and record.conv.stride == (2, 2) and (record.conv.h, record.conv.w) == (5, 5)


def test_element_size_follows_dtype() -> None:
    conv = nn.Conv2d(4, 8, 1, bias=False).double()
    record = only(collect_layers(conv, torch.randn(1, 4, 3, 3, dtype=torch.float64)))
    assert record.memory_access_bytes == (9 * (4 + 8) + 32) * 8


def test_linear() -> None:
    record = only(collect_layers(nn.Linear(20, 7), torch.randn(3, 20)))
    assert record.kind == "linear"
    assert record.memory_access_bytes == (3 * 20 + 20 * 7 + 7 + 3 * 7) * F32
    assert record.mult_adds == 3 * 20 * 7
    assert record.params == 20 * 7 + 7


def test_matmul_of_two_activations_is_matmul_without_params() -> None:
    record = only(collect_layers(Lambda(torch.matmul), (torch.randn(5, 6), torch.randn(6, 4))))
    assert record.kind == "matmul" and record.params == 0
    assert record.mult_adds == 5 * 6 * 4
    assert record.memory_access_bytes == (30 + 24 + 20) * F32


def test_batch_norm_eval_reads_input_four_vectors_and_writes_output() -> None:
    bn = nn.BatchNorm2d(6)
    bn.train()
    record = only(collect_layers(bn, torch.randn(2, 6, 5, 5)))
    numel = 2 * 6 * 25
    assert record.kind == "batch_norm"
    assert record.memory_access_bytes == (2 * numel + 4 * 6) * F32
    assert record.params == 2 * 6  # weight and bias; the running statistics are buffers
    assert record.mult_adds == 0  # normalisation is not a mult-add
    assert record.elementwise_ops == 2 * numel  # fvcore's eval-mode figure with affine parameters
    assert bn.training, "the training flag must be restored"


@pytest.mark.parametrize(
    "act", [nn.ReLU(), nn.ReLU(inplace=True), nn.ReLU6(), nn.Hardswish(), nn.Sigmoid(), nn.SiLU(), nn.GELU(), nn.Tanh()]
)
def test_activations(act: nn.Module) -> None:
    record = only(collect_layers(act, torch.randn(2, 3, 4, 4)))
    assert record.kind == "activation"
    assert record.elementwise_ops == 96
    assert record.memory_access_bytes == 2 * 96 * F32
    assert record.mult_adds == 0 and record.params == 0


def test_add_and_mul() -> None:
    a, b = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    add = only(collect_layers(Lambda(torch.add), (a, b)))
    mul = only(collect_layers(Lambda(torch.mul), (a, b)))
    for record, kind in ((add, "add"), (mul, "mul")):
        assert record.kind == kind
        assert record.elementwise_ops == 128
        assert record.memory_access_bytes == 3 * 128 * F32


def test_broadcast_mul_reads_the_small_operand_once() -> None:
    x, scale = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 1, 1)
    record = only(collect_layers(Lambda(torch.mul), (x, scale)))
    assert record.memory_access_bytes == (2 * 256 + 16) * F32
    assert record.input_shapes == ((2, 8, 4, 4), (2, 8, 1, 1))


def test_concat_moves_every_byte_twice_and_computes_nothing() -> None:
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 5, 4, 4)
    record = only(collect_layers(Lambda(lambda x, y: torch.cat([x, y], 1)), (a, b)))
    assert record.kind == "concat" and record.elementwise_ops == 0
    assert record.memory_access_bytes == 2 * (48 + 80) * F32
    assert record.output_shape == (1, 8, 4, 4)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def test_channel_shuffle_is_exactly_one_copy() -> None:
    record = only(collect_layers(Lambda(channel_shuffle), torch.randn(1, 8, 5, 5)))
    assert record.kind == "copy"
    assert record.memory_access_bytes == 2 * 200 * F32
    assert record.elementwise_ops == 0 and record.mult_adds == 0


def test_views_cost_nothing() -> None:
    def views(x: torch.Tensor) -> torch.Tensor:
        y = x.view(2, -1).reshape(2, 4, 12).permute(0, 2, 1)
        return torch.flatten(y.transpose(1, 2), 1)[:, :10].chunk(2, 1)[0]

    assert collect_layers(Lambda(views), torch.randn(2, 4, 3, 4)) == []


def test_max_and_average_pooling() -> None:
    x = torch.randn(1, 4, 8, 8)
    max_pool = only(collect_layers(nn.MaxPool2d(2), x))
    assert max_pool.kind == "pool"
    assert max_pool.memory_access_bytes == (256 + 64) * F32  # indices are not feature maps
    assert max_pool.elementwise_ops == 64 * 4
    avg_pool = only(collect_layers(nn.AvgPool2d(3, stride=1, padding=1), x))
    assert avg_pool.elementwise_ops == 256 * 9
    assert avg_pool.memory_access_bytes == 2 * 256 * F32


def test_global_pooling() -> None:
    x = torch.randn(2, 4, 6, 6)
    for model in (nn.AdaptiveAvgPool2d(1), Lambda(lambda t: t.mean((2, 3)))):
        record = only(collect_layers(model, x))
        assert record.kind == "pool"
        assert record.elementwise_ops == 288
        assert record.memory_access_bytes == (288 + 8) * F32


def test_softmax() -> None:
    record = only(collect_layers(nn.Softmax(dim=1), torch.randn(3, 10)))
    assert record.kind == "softmax" and record.elementwise_ops == 3 * 30
    assert record.memory_access_bytes == 2 * 30 * F32


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)) + x)


def test_records_are_attributed_to_the_innermost_module() -> None:
    model = nn.Sequential(nn.Sequential(Block(), Block()), nn.AdaptiveAvgPool2d(1))
    model.train()
    records = collect_layers(model, torch.randn(1, 4, 6, 6))
    names = [(r.name, r.kind, r.module_type) for r in records]
    assert names[:4] == [
        ("0.0.conv", "conv", "Conv2d"),
        ("0.0.bn", "batch_norm", "BatchNorm2d"),
        ("0.0/add", "add", "Block"),
        ("0.0/relu", "activation", "Block"),
    ]
    assert names[-1] == ("1", "pool", "AdaptiveAvgPool2d")
    assert len(records) == 9
    assert all(r.kind in LAYER_KINDS for r in records)
    assert all(m.training for m in model.modules()), "training flags must be restored"


def test_record_round_trips_through_json_data() -> None:
    import json

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    records = collect_layers(model, torch.randn(1, 3, 6, 6))
    restored = [LayerRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in records]
    assert restored == records


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"torch\.nn\.Module"):
        collect_layers(lambda x: x, torch.randn(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tuple of torch\.Tensor"):
        collect_layers(nn.ReLU(), [torch.randn(1)])  # type: ignore[arg-type]
