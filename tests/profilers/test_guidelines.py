"""Guideline audit (ShuffleNetV2 G1-G4, VoVNet) on small hand-made modules whose figures are known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from profilers import ConvInfo, Finding, GuidelineReport, LayerRecord, audit, collect_layers, find_blocks
from profilers.guidelines import G1_RATIO_THRESHOLD, g4_findings, vovnet_findings

torch.set_num_threads(1)


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _one(report: GuidelineReport, guideline: str, name: str) -> Finding:
    found = [f for f in report.by_guideline(guideline) if f.name == name]  # type: ignore[arg-type]
    assert len(found) == 1, [f.name for f in report.by_guideline(guideline)]  # type: ignore[arg-type]
    return found[0]


# --- G1 ------------------------------------------------------------------------------------------


def _g1_ratio(hw: int, c1: int, c2: int) -> float:
    """The paper's MAC / (2 sqrt(hw B) + B/hw) with B = hw c1 c2."""
    b = hw * c1 * c2
    return (hw * (c1 + c2) + c1 * c2) / (2 * math.sqrt(hw * b) + b / hw)


def test_g1_equal_widths_meet_the_bound() -> None:
    report = audit(nn.Conv2d(16, 16, 1, bias=False), _x(1, 16, 8, 8), measure=False)
    finding = _one(report, "G1", "convolution")
    assert finding.severity == "info"
    assert finding.figures["ratio_to_bound"] == pytest.approx(1.0)
    assert finding.figures["channel_ratio"] == 1.0
    assert finding.figures["memory_access_elements"] == 64 * 32 + 256


def test_g1_four_to_one_exceeds_the_bound() -> None:
    model = nn.Sequential(nn.Conv2d(64, 16, 1, bias=False), nn.Conv2d(16, 16, 3, padding=1))
    report = audit(model, _x(1, 64, 8, 8), measure=False)
    finding = _one(report, "G1", "0")
    # hw = 64: MAC = 64 * 80 + 1024 = 6144, bound = 2 * 64 * 32 + 1024 = 5120
    assert finding.figures["memory_access_elements"] == 6144
    assert finding.figures["lower_bound_elements"] == pytest.approx(5120)
    assert finding.figures["ratio_to_bound"] == pytest.approx(1.2)
    assert finding.figures["ratio_to_bound"] == pytest.approx(_g1_ratio(64, 64, 16))
    assert finding.figures["channel_ratio"] == 4.0
    assert finding.severity == "warning"
    assert len(report.by_guideline("G1")) == 1  # the 3x3 conv is not a G1 case


def test_g1_two_to_one_stays_under_the_threshold() -> None:
    report = audit(nn.Conv2d(32, 64, 1), _x(1, 32, 16, 16), measure=False)
    finding = _one(report, "G1", "convolution")
    assert finding.figures["ratio_to_bound"] == pytest.approx(_g1_ratio(256, 32, 64))
    assert 1.0 < finding.figures["ratio_to_bound"] < G1_RATIO_THRESHOLD
    assert finding.severity == "info"


def test_g1_batch_amortises_weights() -> None:
    report = audit(nn.Conv2d(8, 8, 1, bias=False), _x(4, 8, 2, 2), measure=False)
    figures = _one(report, "G1", "convolution").figures
    assert figures["memory_access_elements"] == 4 * 4 * 16 + 64
    assert figures["ratio_to_bound"] == pytest.approx(1.0)


# --- G2 ------------------------------------------------------------------------------------------


def test_g2_grouped_conv_reports_extra_memory_access() -> None:
    report = audit(nn.Conv2d(64, 64, 1, groups=8, bias=False), _x(1, 64, 16, 16), measure=False)
    figures = _one(report, "G2", "convolution").figures
    hw = 16 * 16
    # MAC_g = hw (c1 + c2) + c1 c2 / g; the dense conv with the same input and mult-adds has c2/g outputs
    assert figures["memory_access_elements"] == hw * 128 + 64 * 64 // 8 == 33280
    assert figures["dense_memory_access_elements"] == hw * 64 + hw * 8 + 512 == 18944
    assert figures["extra_memory_access_elements"] == hw * 64 * 7 // 8 == 14336
    assert figures["extra_memory_access_bytes"] == 14336 * 4
    assert figures["ratio_to_dense"] == pytest.approx(33280 / 18944)
    assert _one(report, "G2", "convolution").severity == "warning"
    assert not report.by_guideline("G1")  # grouped 1x1 convs are G2's, not G1's


def test_g2_depthwise_is_info() -> None:
    report = audit(nn.Conv2d(32, 32, 3, padding=1, groups=32), _x(1, 32, 8, 8), measure=False)
    finding = _one(report, "G2", "convolution")
    assert finding.severity == "info"
    assert finding.figures["depthwise"] == 1.0
    assert finding.figures["extra_memory_access_elements"] == 64 * 32 * 31 // 32


# --- G3 ------------------------------------------------------------------------------------------


def _cbr(c_in: int, c_out: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit: split, one branch of three convs, concat, shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(_cbr(half, half), _cbr(half, half, 3, groups=half), _cbr(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        out = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class DownBlock(nn.Module):
    """ShuffleNetV2 down-sampling unit: two branches (2 and 3 convs) side by side."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.left = nn.Sequential(_cbr(c, c, 3, groups=c), _cbr(c, c))
        self.right = nn.Sequential(_cbr(c, c), _cbr(c, c, 3, groups=c), _cbr(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], dim=1)


class InceptionBlock(nn.Module):
    """Four parallel paths, one of them pooled: a fragmented block."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(3)])
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([p(x) for p in self.paths] + [self.pool(x)], dim=1)


def test_find_blocks_looks_through_containers_and_wrappers() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sequential(ShuffleBlock(8), ShuffleBlock(8)), nn.ReLU())
    assert find_blocks(net) == ["1.0", "1.1"]

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stages = nn.ModuleList([DownBlock(8), ShuffleBlock(16)])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Backbone()
            self.head = nn.Linear(4, 2)

    assert find_blocks(Net()) == ["backbone.stages.0", "backbone.stages.1"]
    assert find_blocks(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())) == []


def test_g3_shufflenet_blocks_are_regular() -> None:
    net = nn.Sequential(DownBlock(8), ShuffleBlock(16))
    report = audit(net, _x(1, 8, 8, 8), measure=False)
    down = _one(report, "G3", "0").figures
    assert (down["fragments"], down["serial_fragments"], down["parallel_fragments"]) == (5, 3, 2)
    unit = _one(report, "G3", "1").figures
    assert (unit["fragments"], unit["serial_fragments"], unit["parallel_fragments"]) == (3, 3, 1)
    assert _one(report, "G3", "0").severity == _one(report, "G3", "1").severity == "info"
    network = _one(report, "G3", "network").figures
    assert network["fragments"] == 8
    assert network["blocks"] == 2
    assert network["serial_fragments"] == 6  # 3 levels in the down block, then 3 in the unit
    assert network["mean_fragments_per_block"] == pytest.approx(4.0)


def test_g3_parallel_paths_are_flagged() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 1), InceptionBlock(8), nn.Conv2d(32, 8, 1))
    report = audit(net, _x(1, 3, 8, 8), measure=False)
    block = _one(report, "G3", "1")
    assert (block.figures["fragments"], block.figures["serial_fragments"]) == (4, 1)
    assert block.figures["parallel_fragments"] == 4
    assert block.severity == "warning"
    network = _one(report, "G3", "network").figures
    assert (network["fragments"], network["serial_fragments"], network["parallel_fragments"]) == (6, 3, 4)


# --- G4 ------------------------------------------------------------------------------------------


def test_g4_memory_share_without_measurement() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.ReLU())
    report = audit(net, _x(1, 8, 8, 8), measure=False)
    figures = _one(report, "G4", "network").figures
    conv_bytes = (64 * 8 + 64 * 8 + 64) * 4  # ShuffleNetV2 MAC of the 1x1 conv, fp32
    relu_bytes = (64 * 8 + 64 * 8) * 4  # read and write one map
    assert figures["elementwise_memory_access_bytes"] == relu_bytes
    assert figures["elementwise_memory_share"] == pytest.approx(relu_bytes / (conv_bytes + relu_bytes))
    assert "elementwise_latency_share" not in figures
    assert _one(report, "G4", "network").severity == "warning"  # 48% >= 35%
    assert report.summary["measured"] is False
    assert "VoVNet" not in report.summary["counts"]


def test_g4_latency_share_from_operator_times() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    records = collect_layers(net, _x(1, 8, 8, 8))
    assert [r.kind for r in records] == ["conv", "activation", "conv"]
    findings = g4_findings(records, [0.006, 0.003, 0.001], 0.010)
    network = next(f for f in findings if f.scope == "network")
    assert network.figures["elementwise_latency_share"] == pytest.approx(0.3)
    assert network.figures["elementwise_latency_ms"] == pytest.approx(3.0)
    assert network.severity == "warning"
    layer = next(f for f in findings if f.scope == "layer")
    assert (layer.name, layer.figures["latency_share"]) == ("1", pytest.approx(0.3))
    quiet = next(f for f in g4_findings(records, [0.0095, 0.0004, 0.0001], 0.010) if f.scope == "network")
    assert quiet.severity == "info"


def test_g4_measured_figures_are_consistent() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Sigmoid())
    report = audit(net, _x(1, 8, 16, 16), repeats=3)
    figures = _one(report, "G4", "network").figures
    assert 0.0 < figures["elementwise_latency_share"] < 1.0
    assert 0.0 < figures["elementwise_latency_ms"] < figures["total_latency_ms"]
    assert figures["total_latency_ms"] == pytest.approx(report.summary["operator_latency_ms"])


# --- VoVNet --------------------------------------------------------------------------------------


def _record(name: str, mult_adds: int, groups: int = 1) -> LayerRecord:
    conv = ConvInfo(32, 32, (3, 3), (1, 1), (1, 1), (1, 1), groups, 16, 16)
    return LayerRecord(name, "conv", "aten.convolution.default", "Conv2d", ((1, 32, 16, 16),), (1, 32, 16, 16), 0,
                       mult_adds, 0, 0, conv)  # fmt: skip


def test_vovnet_flags_low_efficiency_layers() -> None:
    records = [_record("dense", 1_000_000), _record("dw", 10_000, groups=32), _record("tiny", 100)]
    seconds = [0.001, 0.0005, 0.00001]  # 1e9, 2e7 and 1e7 mult-adds per second
    findings = vovnet_findings(records, seconds, total_seconds=0.00151)
    layers = {f.name: f for f in findings if f.scope == "layer"}
    assert set(layers) == {"dw", "tiny"}
    reference = 1_010_100 / 0.00151
    assert layers["dw"].figures["mult_adds_per_s"] == pytest.approx(2e7)
    assert layers["dw"].figures["relative_efficiency"] == pytest.approx(2e7 / reference)
    assert layers["dw"].figures["depthwise"] == 1.0
    assert layers["dw"].severity == "warning"  # a third of the time
    assert layers["tiny"].severity == "info"  # under 1% of the time
    network = next(f for f in findings if f.scope == "network")
    assert network.figures["compute_mult_adds_per_s"] == pytest.approx(reference)
    assert network.figures["low_efficiency_latency_share"] == pytest.approx(0.00051 / 0.00151)
    assert network.severity == "warning"


def test_vovnet_measures_depthwise_as_inefficient() -> None:
    net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1, groups=64))
    report = audit(net, _x(1, 64, 32, 32), repeats=5)
    flagged = {f.name for f in report.by_guideline("VoVNet") if f.scope == "layer"}
    # a dense 3x3 conv does 64x the depthwise one's mult-adds in far less than 64x its time
    assert "1" in flagged
    assert "0" not in flagged
    dw = _one(report, "VoVNet", "1").figures
    assert dw["mult_adds_per_s"] == pytest.approx(dw["mult_adds"] / (dw["latency_ms"] / 1000.0))


# --- the report and the audit's contract ---------------------------------------------------------


def test_report_serialises_and_counts() -> None:
    net = nn.Sequential(nn.Conv2d(3, 16, 1), DownBlock(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    net.train()
    report = audit(net, _x(2, 3, 8, 8), repeats=2)
    assert all(m.training for m in net.modules())  # modes restored
    data = json.loads(json.dumps(report.to_dict()))
    assert len(data["findings"]) == len(report.findings) == len(report.to_list())
    assert set(data["findings"][0]) == {"guideline", "scope", "name", "severity", "message", "figures"}
    total = sum(c["info"] + c["warning"] for c in report.summary["counts"].values())
    assert total == len(report.findings)
    assert report.summary["warnings"] == sum(f.severity == "warning" for f in report.findings)
    assert set(report.summary["network"]) == {"G3", "G4", "VoVNet"}


def test_precomputed_layers_give_the_same_findings() -> None:
    net = nn.Sequential(nn.Conv2d(8, 32, 1), ShuffleBlock(32))
    x = _x(1, 8, 8, 8)
    given = audit(net, x, layers=collect_layers(net, x), measure=False)
    own = audit(net, x, measure=False)
    assert given.to_list() == own.to_list()


def test_layers_of_another_model_are_rejected() -> None:
    x = _x(1, 8, 8, 8)
    other = collect_layers(nn.Sequential(nn.Conv2d(8, 8, 1), nn.Softmax(dim=1)), x)
    with pytest.raises(ValueError, match="layers do not match"):
        audit(nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU()), x, layers=other, measure=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "tpu"}, "device must be 'cpu', 'cuda' or 'cuda:N'"),
        ({"repeats": 0}, "repeats must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        audit(nn.Conv2d(3, 3, 1), _x(1, 3, 4, 4), **kwargs)  # type: ignore[arg-type]


def test_bad_inputs_and_model() -> None:
    with pytest.raises(ValueError, match="inputs must be"):
        audit(nn.Conv2d(3, 3, 1), [_x(1, 3, 4, 4)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model must be"):
        audit(lambda x: x, _x(1, 3, 4, 4))  # type: ignore[arg-type]
