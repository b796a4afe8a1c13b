"""Counts: parameters and mult-adds against hand figures, and fvcore against the layer records."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from profilers import collect_layers, count_all, count_elementwise_ops, count_mult_adds, count_params
from profilers.layers import is_normalisation


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 16*16*8*27 = 55296 mult-adds, 216 params
        nn.BatchNorm2d(8),  # 2 * 2048 element-wise in eval (not mult-adds), 16 params
        nn.ReLU(),  # 2048 element-wise
        nn.AdaptiveAvgPool2d(1),  # 2048 element-wise
        nn.Flatten(),
        nn.Linear(8, 10),  # 80 mult-adds, 90 params
    )


def test_params_and_mult_adds_by_hand() -> None:
    model = small_cnn()
    x = torch.randn(1, 3, 16, 16)
    assert count_params(model) == 216 + 16 + 90
    assert count_mult_adds(model, x) == 55296 + 80
    layers = collect_layers(model, x)
    assert count_elementwise_ops(layers) == 2 * 2048 + 2048 + 2048


def test_mult_adds_scale_with_batch_and_resolution() -> None:
    model = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    assert count_mult_adds(model, torch.randn(1, 4, 8, 8)) == 16 * 6 * 36 + 96 * 5
    assert count_mult_adds(model, torch.randn(3, 4, 8, 8)) == 3 * (16 * 6 * 36 + 96 * 5)


def test_shared_and_frozen_parameters() -> None:
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert count_params(model) == 20
    model[0].bias.requires_grad_(False)
    assert count_params(model, trainable_only=True) == 16


class ShuffleUnit(nn.Module):
    """A ShuffleNetV2 stride-1 unit: split, 1x1 - dw 3x3 - 1x1 branch, concat, channel shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        out = torch.cat([a, self.branch(b)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class InvertedResidualSE(nn.Module):
    """MobileNetV3-style block: expand, depthwise, squeeze-excite, project, residual."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(hidden, hidden, 5, padding=2, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.se_reduce = nn.Conv2d(hidden, 8, 1)
        self.se_expand = nn.Conv2d(8, hidden, 1)
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.expand(x))
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(y.mean((2, 3), keepdim=True)))))
        return x + self.project(y * s)


class TinyMixer(nn.Module):
    """Token mixing with 3-D linear layers, layer norm and an attention-like batched matmul."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.qk = nn.Linear(dim, 2 * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x.flatten(2).transpose(1, 2))
        q, k = self.qk(tokens).chunk(2, dim=-1)
        attn = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        tokens = tokens + attn @ tokens
        tokens = tokens + self.mlp(tokens)
        return self.head(tokens.mean(1))


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (small_cnn(), (2, 3, 16, 16)),
        (nn.Sequential(ShuffleUnit(16), ShuffleUnit(16)), (1, 16, 12, 12)),
        (InvertedResidualSE(8, 4), (1, 8, 10, 10)),
        (TinyMixer(), (2, 16, 4, 4)),
        (nn.Sequential(nn.Conv2d(3, 6, 3, groups=3), nn.Upsample(scale_factor=2), nn.MaxPool2d(2)), (1, 3, 9, 9)),
    ],
    ids=["cnn", "shufflenet_units", "inverted_residual_se", "mixer", "grouped_upsample"],
)
def test_fvcore_agrees_with_layer_records(model: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    counts = count_all(model, x)
    from_records = sum(r.mult_adds for r in counts.layers)
    assert counts.mult_adds > 0
    assert abs(counts.mult_adds - from_records) <= 0.01 * counts.mult_adds, (counts.mult_adds, from_records)
    assert counts.elementwise_ops == sum(r.elementwise_ops for r in counts.layers) > 0
    assert counts.memory_access_bytes == sum(r.memory_access_bytes for r in counts.layers) > 0


class CrossAttention(nn.Module):
    """``nn.MultiheadAttention`` between two sequences of different lengths (not the fused fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.attn(x, y, y, need_weights=False)[0]


def test_attention_mult_adds_by_hand() -> None:
    batch, length, source, dim = 2, 5, 7, 16
    projections = batch * (2 * length + 2 * source) * dim * dim
    attention = batch * length * source * 2 * dim
    x, y = torch.randn(batch, length, dim), torch.randn(batch, source, dim)
    counts = count_all(CrossAttention(), (x, y))
    assert counts.mult_adds == sum(r.mult_adds for r in counts.layers) == projections + attention

    encoder = nn.TransformerEncoderLayer(dim, 2, 32, batch_first=True)  # fused fast path in eval mode
    feed_forward = batch * length * (dim * 32 + 32 * dim)
    norms = 2 * batch * length * dim * 5  # element-wise work, not mult-adds
    self_attention = batch * 4 * length * dim * dim + batch * length * length * 2 * dim
    counts = count_all(encoder, x)
    assert counts.mult_adds == sum(r.mult_adds for r in counts.layers) == self_attention + feed_forward
    norm_records = [r for r in counts.layers if "layer_norm" in r.op]
    assert len(norm_records) == 2 and sum(r.elementwise_ops for r in norm_records) == norms

    sdpa = count_all(Lambda(F.scaled_dot_product_attention), (x, y, y))
    assert sdpa.mult_adds == sum(r.mult_adds for r in sdpa.layers) == batch * length * source * 2 * dim


class Lambda(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def test_pooling_and_upsampling_are_elementwise_not_mult_adds() -> None:
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Upsample(scale_factor=2, mode="bilinear"))
    x = torch.randn(1, 2, 8, 8)
    assert count_mult_adds(model, x) == 0
    assert count_all(model, x).elementwise_ops == 128 + 4 * 32


def test_normalisation_moves_from_mult_adds_to_elementwise_ops() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.GroupNorm(2, 8),
        nn.InstanceNorm2d(8, affine=True),
        nn.LayerNorm([8, 6, 6]),
    ).eval()
    x = torch.randn(2, 3, 6, 6)
    numel = 2 * 8 * 6 * 6
    # fvcore's own default count: batch norm in eval 2 per element, group/instance/layer norm 5 per element
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    by_operator = analysis.by_operator()
    norm_work = sum(by_operator[op] for op in ("batch_norm", "group_norm", "instance_norm", "layer_norm"))
    assert norm_work == (2 + 5 + 5 + 5) * numel

    counts = count_all(model, x)
    assert counts.mult_adds == by_operator["conv"] == 2 * 36 * 8 * 27
    assert counts.mult_adds == sum(r.mult_adds for r in counts.layers)
    norms = [r for r in counts.layers if is_normalisation(r.op)]
    assert len(norms) == 4 and all(r.mult_adds == 0 for r in norms)
    assert sum(r.elementwise_ops for r in norms) == norm_work  # exactly the work fvcore would have counted


def test_fvcore_warnings_are_silenced(caplog: pytest.LogCaptureFixture) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish(), nn.Flatten(), nn.Softmax(dim=1))
    with caplog.at_level(logging.WARNING):
        count_mult_adds(model, torch.randn(1, 3, 5, 5))
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]


def test_training_flags_restored_and_bad_inputs() -> None:
    model = small_cnn().train()
    count_all(model, torch.randn(1, 3, 8, 8))
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match=r"tuple of torch\.Tensor"):
        count_mult_adds(model, [torch.randn(1, 3, 8, 8)])  # type: ignore[arg-type]
