"""Audit of any ``nn.Module`` against the ShuffleNetV2 guidelines (G1-G4) and VoVNet's efficiency criterion.

Every finding carries the figures it rests on. Sources:

- Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", ECCV 2018, Sec. 2.
  Memory access cost (MAC) counts elements, assuming a cache large enough for a layer's feature maps and
  weights: a 1x1 convolution with c1 in / c2 out channels on an h x w map has ``B = hw c1 c2`` mult-adds and
  ``MAC = hw(c1 + c2) + c1 c2 >= 2 sqrt(hw B) + B / hw``, with equality when c1 = c2 (G1);
  with g groups ``MAC = hw(c1 + c2) + c1 c2 / g``, which at fixed input and fixed B grows with g (G2);
  multi-path blocks of many small operators lower parallelism (G3; NASNet-A has 13 "fragmented operators",
  i.e. convolutions or poolings, per block, ResNet 2 or 3); element-wise operators (ReLU, AddTensor,
  AddBias..., and depthwise convolutions, which have a high MAC/FLOPs ratio) take considerable time (G4).
- Lee et al., "An Energy and GPU-Computation Efficient Backbone Network for Real-Time Object Detection"
  (VoVNet), CVPRW 2019: judge layers by computation efficiency, mult-adds per second on the device;
  depthwise convolutions have low efficiency.

How the audit works: ``collect_layers`` gives one record per executed aten operator (counts, shapes, module
path). A second run under a dispatch mode of this module records which operator reads the output of which
(by tensor storage), giving the data-flow graph G3 needs, and, when ``measure`` is true, the time of every
operator on the device (the median over ``repeats`` runs after one warm-up; on CUDA each operator is
bracketed by synchronisations). Times are kernel times as eager PyTorch runs them, without the Python
overhead of the audit itself.

**Blocks (G3).** A block is an outermost module below the root that is neither a leaf nor a pure container
(``nn.Sequential`` and its subclasses, ``nn.ModuleList``, ``nn.ModuleDict``): containers are looked through,
so the blocks of ``features = nn.Sequential(Block(), Block(), ...)`` are the ``Block`` instances. When this
finds a single module that itself holds two or more such modules (a "backbone" wrapper), its inner modules
are the blocks instead. An operator belongs to the block whose module path prefixes its record name. A
fragment is a convolution, pooling, linear or matrix-product operator; within a block, a fragment's level is
the number of fragments on the longest data-flow path before it: the block's *serial* count is the number of
levels, its *parallel* count the largest number of fragments on one level (operators that could run side by
side). The same figures are given for the whole network.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from profilers._layers import LayerRecord, collect_layers

if TYPE_CHECKING:
    from profilers._layers import ConvInfo

__all__ = [
    "G1_RATIO_THRESHOLD",
    "G2_RATIO_THRESHOLD",
    "G3_FRAGMENT_THRESHOLD",
    "G3_PARALLEL_THRESHOLD",
    "G4_LATENCY_SHARE_THRESHOLD",
    "G4_MEMORY_SHARE_THRESHOLD",
    "VOVNET_EFFICIENCY_FRACTION",
    "Finding",
    "GuidelineReport",
    "audit",
    "find_blocks",
]

Guideline = Literal["G1", "G2", "G3", "G4", "VoVNet"]
Scope = Literal["layer", "block", "network"]
Severity = Literal["info", "warning"]

# G1: warn when a 1x1 convolution's MAC exceeds the bound by more than 10%. At stride 1 with negligible
# weights the ratio is (1 + r) / (2 sqrt(r)) for channel ratio r, so 1.10 is reached near r = 2.4 (1:2
# gives 1.06, 1:3 gives 1.15, 1:4 gives 1.25): the paper's Table 1 measured 1:2 already slower on GPU.
G1_RATIO_THRESHOLD = 1.10
# G2: warn when a grouped (not depthwise) convolution moves more than 10% more memory than the dense
# convolution of equal mult-adds on the same input. Depthwise convolutions are reported as "info": the
# paper handles them under G4, and VoVNet's efficiency figure measures what they cost.
G2_RATIO_THRESHOLD = 1.10
# G3: warn for blocks with three or more fragments side by side, or eight or more fragments in all
# (between ResNet's 2-3 and NASNet-A's 13).
G3_PARALLEL_THRESHOLD = 3
G3_FRAGMENT_THRESHOLD = 8
# G4: warn when element-wise operators take 20% or more of the measured operator time (the paper saw
# about 20% speed-up from removing ReLU and shortcut in a ResNet bottleneck), or, unmeasured, 35% or more
# of the memory access (a ReLU after a conv + batch norm of equal widths is about a third of their traffic).
G4_LATENCY_SHARE_THRESHOLD = 0.20
G4_MEMORY_SHARE_THRESHOLD = 0.35
G4_LAYER_SHARE = 0.05  # element-wise operators reported one by one from this share of time (or memory)
# VoVNet: a layer is flagged when its mult-adds per second are below a quarter of the network's compute
# layers taken together; flagged layers under 1% of the time stay "info".
VOVNET_EFFICIENCY_FRACTION = 0.25
VOVNET_MIN_TIME_SHARE = 0.01

_ELEMENTWISE_KINDS = frozenset({"activation", "add", "mul", "concat", "copy"})
_FRAGMENT_KINDS = frozenset({"conv", "pool", "linear", "matmul"})
_COMPUTE_KINDS = frozenset({"conv", "linear", "matmul"})
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Finding:
    """One observation about a layer, a block or the network, with the figures behind it."""

    guideline: Guideline
    scope: Scope
    name: str
    severity: Severity
    message: str
    figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "guideline": self.guideline,
            "scope": self.scope,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True)
class GuidelineReport:
    """All findings of an audit and a summary (counts per guideline and severity, network figures)."""

    findings: list[Finding]
    summary: dict[str, Any]

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {"findings": self.to_list(), "summary": self.summary}

    def by_guideline(self, guideline: Guideline) -> list[Finding]:
        return [f for f in self.findings if f.guideline == guideline]


# --- tracing: data flow between records and per-operator time -------------------------------------


@dataclass
class _Event:
    op: str
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    seconds: float


def _storage_keys(tree: Any) -> tuple[int, ...]:
    keys = []
    for item in tree_flatten(tree)[0]:
        if isinstance(item, torch.Tensor):
            try:
                key = int(item.untyped_storage().data_ptr())
            except (RuntimeError, NotImplementedError):
                continue
            if key:
                keys.append(key)
    return tuple(keys)


class _OpTracer(TorchDispatchMode):
    """Records every dispatched aten operator: what storage it reads and writes, and its time."""

    def __init__(self, synchronize: Callable[[], None] | None) -> None:
        super().__init__()
        self.synchronize = synchronize
        self.events: list[_Event] = []

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self.synchronize is not None:
            self.synchronize()
        start = time.perf_counter()
        out = func(*args, **kwargs)
        if self.synchronize is not None:
            self.synchronize()
        seconds = time.perf_counter() - start
        self.events.append(_Event(str(func), _storage_keys((args, kwargs)), _storage_keys(out), seconds))
        return out


def _trace(model: nn.Module, args: tuple[torch.Tensor, ...], synchronize: Callable[[], None] | None) -> list[_Event]:
    tracer = _OpTracer(synchronize)
    with torch.no_grad(), tracer:
        model(*args)
    return tracer.events


def _align(records: Sequence[LayerRecord], events: Sequence[_Event]) -> list[int]:
    """Index of the event of each record: records are the recorded subsequence of the executed operators."""
    matches: list[int] = []
    j = 0
    for i, record in enumerate(records):
        while j < len(events) and events[j].op != record.op:
            j += 1
        if j == len(events):
            raise ValueError(
                f"layers do not match a run of the model on these inputs: record {i} ({record.name!r}, "
                f"{record.op}) has no matching operator; pass layers collected from the same model and inputs"
            )
        matches.append(j)
        j += 1
    return matches


def _parents(events: Sequence[_Event], matches: Sequence[int]) -> list[frozenset[int]]:
    """For each record, the records whose outputs it reads (through views and unrecorded operators)."""
    record_of = {event_index: i for i, event_index in enumerate(matches)}
    producers: dict[int, frozenset[int]] = {}
    parents: list[frozenset[int]] = [frozenset()] * len(matches)
    for j, event in enumerate(events):
        deps: frozenset[int] = frozenset().union(*(producers.get(k, frozenset()) for k in event.reads))
        i = record_of.get(j)
        if i is not None:
            parents[i] = deps
            for key in event.writes:
                producers[key] = frozenset({i})
        else:
            for key in event.writes:
                if key not in event.reads:  # a fresh tensor from an unrecorded operator passes its inputs on
                    producers[key] = deps
    return parents


# --- the guidelines, as functions of the records (and times) --------------------------------------


def _spatial(shape: Sequence[int]) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def _conv_traffic(record: LayerRecord, conv: ConvInfo) -> tuple[int, int]:
    """(batch x input positions, batch x output positions) of a convolution record."""
    batch = record.output_shape[0] if record.output_shape else 1
    in_positions = _spatial(record.input_shapes[0]) * batch if record.input_shapes else conv.h * conv.w * batch
    return in_positions, _spatial(record.output_shape) * batch


def _g1(records: Sequence[LayerRecord], threshold: float = G1_RATIO_THRESHOLD) -> list[Finding]:
    """G1 for every dense 1x1 convolution: MAC against its lower bound at the same mult-adds.

    With a = batch x input positions and b = batch x output positions (a = b = hw at stride 1, batch 1):
    MAC = a c1 + b c2 + c1 c2 >= 2 sqrt(a b c1 c2) + c1 c2, the paper's 2 sqrt(hwB) + B/hw.
    """
    findings = []
    for r in records:
        conv = r.conv
        if conv is None or conv.transposed or conv.groups != 1 or any(k != 1 for k in conv.kernel_size):
            continue
        a, b = _conv_traffic(r, conv)
        c1, c2 = conv.in_channels, conv.out_channels
        mac = a * c1 + b * c2 + c1 * c2
        bound = 2.0 * math.sqrt(a * b * c1 * c2) + c1 * c2
        ratio = mac / bound
        warn = ratio > threshold
        message = (
            f"1x1 conv {c1}->{c2} channels: memory access {ratio:.3f}x the G1 lower bound "
            f"(channel ratio c1/c2 = {c1 / c2:.2f})"
            + ("; equal input and output widths would reach the bound" if warn else "")
        )
        findings.append(
            Finding(
                "G1",
                "layer",
                r.name,
                "warning" if warn else "info",
                message,
                {
                    "in_channels": c1,
                    "out_channels": c2,
                    "channel_ratio": c1 / c2,
                    "mult_adds": r.mult_adds,
                    "mac_elements": mac,
                    "lower_bound_elements": bound,
                    "ratio_to_bound": ratio,
                    "threshold": threshold,
                },
            )
        )
    return findings


def _g2(records: Sequence[LayerRecord], element_bytes: int, threshold: float = G2_RATIO_THRESHOLD) -> list[Finding]:
    """G2 for every grouped convolution: its MAC against the dense one with the same input and mult-adds.

    The dense convolution with the same input, kernel and mult-adds has c2/g output channels, so
    MAC_g - MAC_dense = (batch x output positions) x c2 x (1 - 1/g): the extra output the groups write.
    """
    findings = []
    for r in records:
        conv = r.conv
        if conv is None or conv.transposed or conv.groups <= 1:
            continue
        g, c1, c2 = conv.groups, conv.in_channels, conv.out_channels
        a, b = _conv_traffic(r, conv)
        kernel = math.prod(conv.kernel_size)
        weights = kernel * c1 * c2 // g
        mac = a * c1 + b * c2 + weights
        dense = a * c1 + b * c2 // g + weights
        extra = mac - dense
        ratio = mac / dense
        depthwise = conv.depthwise
        warn = not depthwise and ratio > threshold
        what = "depthwise conv" if depthwise else f"grouped conv (g={g})"
        message = (
            f"{what} {c1}->{c2} channels: {extra} more elements moved ({ratio:.2f}x) than a dense conv "
            f"with the same input and mult-adds"
            + ("; depthwise work is judged under G4 and VoVNet" if depthwise else "")
        )
        findings.append(
            Finding(
                "G2",
                "layer",
                r.name,
                "warning" if warn else "info",
                message,
                {
                    "groups": g,
                    "in_channels": c1,
                    "out_channels": c2,
                    "mult_adds": r.mult_adds,
                    "mac_elements": mac,
                    "dense_equivalent_mac_elements": dense,
                    "extra_mac_elements": extra,
                    "extra_memory_access_bytes": extra * element_bytes,
                    "ratio_to_dense": ratio,
                    "depthwise": float(depthwise),
                    "threshold": threshold,
                },
            )
        )
    return findings


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _candidate_blocks(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    found: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if _is_leaf(child):
            continue
        if isinstance(child, _CONTAINERS):
            found.extend(_candidate_blocks(child, path))
        else:
            found.append((path, child))
    return found


def find_blocks(model: nn.Module) -> list[str]:
    """Module paths of the blocks of ``model`` (see the module docstring for the definition)."""
    found = _candidate_blocks(model, "")
    while len(found) == 1:
        inner = _candidate_blocks(found[0][1], found[0][0])
        if len(inner) < 2:
            break
        found = inner
    return [path for path, _ in found]


def _belongs(name: str, path: str) -> bool:
    return name == path or name.startswith((path + ".", path + "/"))


def _fragment_levels(
    records: Sequence[LayerRecord], parents: Sequence[frozenset[int]], members: Sequence[int]
) -> dict[int, int]:
    """Level of each fragment among ``members``: fragments on the longest path before it (in the set)."""
    inside = set(members)
    depth: dict[int, int] = {}
    levels: dict[int, int] = {}
    for i in sorted(members):  # records are in execution order, a topological order
        base = 0
        for p in parents[i]:
            if p in inside:
                base = max(base, depth[p] + (1 if records[p].kind in _FRAGMENT_KINDS else 0))
        depth[i] = base
        if records[i].kind in _FRAGMENT_KINDS:
            levels[i] = base
    return levels


def _fragment_figures(levels: dict[int, int]) -> dict[str, float]:
    per_level: dict[int, int] = defaultdict(int)
    for level in levels.values():
        per_level[level] += 1
    return {
        "fragments": len(levels),
        "serial_fragments": len(per_level),
        "parallel_fragments": max(per_level.values(), default=0),
    }


def _g3(records: Sequence[LayerRecord], parents: Sequence[frozenset[int]], blocks: Sequence[str]) -> list[Finding]:
    findings = []
    block_fragments = []
    for path in blocks:
        members = [i for i, r in enumerate(records) if _belongs(r.name, path)]
        levels = _fragment_levels(records, parents, members)
        if not levels:
            continue
        figures = _fragment_figures(levels)
        figures["operators"] = len(members)
        block_fragments.append(figures["fragments"])
        warn = figures["parallel_fragments"] >= G3_PARALLEL_THRESHOLD or figures["fragments"] >= G3_FRAGMENT_THRESHOLD
        findings.append(
            Finding(
                "G3",
                "block",
                path,
                "warning" if warn else "info",
                f"{int(figures['fragments'])} fragmented operators (conv/pool/linear): "
                f"{int(figures['serial_fragments'])} in series, up to {int(figures['parallel_fragments'])} "
                f"in parallel, among {len(members)} operators"
                + ("; fewer, larger operators parallelise better" if warn else ""),
                figures,
            )
        )
    network = _fragment_figures(_fragment_levels(records, parents, range(len(records))))
    network.update(
        operators=len(records),
        blocks=len(block_fragments),
        mean_fragments_per_block=statistics.fmean(block_fragments) if block_fragments else 0.0,
        max_fragments_per_block=max(block_fragments, default=0),
    )
    findings.append(
        Finding(
            "G3",
            "network",
            "network",
            "warning" if any(f.severity == "warning" for f in findings) else "info",
            f"{int(network['fragments'])} fragmented operators in {len(records)} operators; "
            f"{len(block_fragments)} blocks with {network['mean_fragments_per_block']:.1f} fragments on average "
            f"(ResNet blocks have 2-3, NASNet-A cells 13)",
            network,
        )
    )
    return findings


def _is_elementwise(record: LayerRecord) -> bool:
    if record.kind in _ELEMENTWISE_KINDS:
        return True
    return record.kind == "other" and record.mult_adds == 0 and record.elementwise_ops > 0


def _is_depthwise(record: LayerRecord) -> bool:
    return record.conv is not None and record.conv.depthwise


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _g4(records: Sequence[LayerRecord], seconds: Sequence[float] | None, total_seconds: float) -> list[Finding]:
    """Share of memory access (and of measured time) spent in element-wise operators."""
    total_memory = sum(r.memory_access_bytes for r in records)
    elementwise = [i for i, r in enumerate(records) if _is_elementwise(r)]
    depthwise = [i for i, r in enumerate(records) if _is_depthwise(r)]
    batch_norm = [i for i, r in enumerate(records) if r.kind == "batch_norm"]
    figures: dict[str, float] = {
        "elementwise_operators": len(elementwise),
        "elementwise_ops": sum(records[i].elementwise_ops for i in elementwise),
        "elementwise_memory_access_bytes": sum(records[i].memory_access_bytes for i in elementwise),
        "total_memory_access_bytes": total_memory,
    }
    figures["elementwise_memory_share"] = _share(figures["elementwise_memory_access_bytes"], total_memory)
    figures["depthwise_memory_share"] = _share(sum(records[i].memory_access_bytes for i in depthwise), total_memory)
    figures["batch_norm_memory_share"] = _share(sum(records[i].memory_access_bytes for i in batch_norm), total_memory)
    findings: list[Finding] = []
    if seconds is not None:
        figures["elementwise_latency_ms"] = 1000.0 * sum(seconds[i] for i in elementwise)
        figures["total_latency_ms"] = 1000.0 * total_seconds
        figures["elementwise_latency_share"] = _share(sum(seconds[i] for i in elementwise), total_seconds)
        figures["depthwise_latency_share"] = _share(sum(seconds[i] for i in depthwise), total_seconds)
        figures["batch_norm_latency_share"] = _share(sum(seconds[i] for i in batch_norm), total_seconds)
        share, basis, threshold = figures["elementwise_latency_share"], "operator time", G4_LATENCY_SHARE_THRESHOLD
    else:
        share, basis, threshold = figures["elementwise_memory_share"], "memory access", G4_MEMORY_SHARE_THRESHOLD
    figures["threshold"] = threshold
    for i in elementwise:
        r = records[i]
        layer = {
            "elementwise_ops": r.elementwise_ops,
            "memory_access_bytes": r.memory_access_bytes,
            "memory_share": _share(r.memory_access_bytes, total_memory),
        }
        if seconds is not None:
            layer["latency_ms"] = 1000.0 * seconds[i]
            layer["latency_share"] = _share(seconds[i], total_seconds)
        layer_share = layer["latency_share"] if seconds is not None else layer["memory_share"]
        if layer_share >= G4_LAYER_SHARE:
            findings.append(
                Finding(
                    "G4",
                    "layer",
                    r.name,
                    "info",
                    f"element-wise {r.kind} ({r.op}) takes {100 * layer_share:.1f}% of the {basis}",
                    layer,
                )
            )
    warn = share >= threshold
    findings.append(
        Finding(
            "G4",
            "network",
            "network",
            "warning" if warn else "info",
            f"element-wise operators ({len(elementwise)}) take {100 * share:.1f}% of the {basis}"
            + (
                f"; depthwise convs a further {100 * figures['depthwise_latency_share']:.1f}%"
                if seconds is not None
                else ""
            )
            + ("; fuse or remove activations, additions and copies where accuracy allows" if warn else ""),
            figures,
        )
    )
    return findings


def _vovnet(records: Sequence[LayerRecord], seconds: Sequence[float], total_seconds: float) -> list[Finding]:
    """Computation efficiency (mult-adds per second) of each compute layer against the network's."""
    compute = [i for i, r in enumerate(records) if r.kind in _COMPUTE_KINDS and r.mult_adds > 0 and seconds[i] > 0]
    compute_seconds = sum(seconds[i] for i in compute)
    compute_mult_adds = sum(records[i].mult_adds for i in compute)
    reference = _share(compute_mult_adds, compute_seconds)
    findings: list[Finding] = []
    flagged_seconds = 0.0
    for i in compute:
        r = records[i]
        efficiency = r.mult_adds / seconds[i]
        relative = _share(efficiency, reference)
        if relative >= VOVNET_EFFICIENCY_FRACTION:
            continue
        time_share = _share(seconds[i], total_seconds)
        flagged_seconds += seconds[i]
        what = "depthwise conv" if _is_depthwise(r) else r.kind
        findings.append(
            Finding(
                "VoVNet",
                "layer",
                r.name,
                "warning" if time_share >= VOVNET_MIN_TIME_SHARE else "info",
                f"{what}: {efficiency / 1e9:.3f} G mult-adds/s, {relative:.2f}x the network's compute layers, "
                f"{100 * time_share:.1f}% of the operator time",
                {
                    "mult_adds": r.mult_adds,
                    "latency_ms": 1000.0 * seconds[i],
                    "mult_adds_per_s": efficiency,
                    "relative_efficiency": relative,
                    "latency_share": time_share,
                    "depthwise": float(_is_depthwise(r)),
                },
            )
        )
    total_mult_adds = sum(r.mult_adds for r in records)
    flagged_share = _share(flagged_seconds, total_seconds)
    findings.append(
        Finding(
            "VoVNet",
            "network",
            "network",
            "warning" if flagged_share >= G4_LATENCY_SHARE_THRESHOLD else "info",
            f"compute layers run at {reference / 1e9:.3f} G mult-adds/s; {len(findings)} layers fall below "
            f"{VOVNET_EFFICIENCY_FRACTION:.2f}x of that and take {100 * flagged_share:.1f}% of the operator time",
            {
                "compute_layers": len(compute),
                "compute_mult_adds_per_s": reference,
                "network_mult_adds_per_s": _share(total_mult_adds, total_seconds),
                "low_efficiency_layers": len(findings),
                "low_efficiency_latency_share": flagged_share,
                "efficiency_fraction": VOVNET_EFFICIENCY_FRACTION,
            },
        )
    )
    return findings


# --- the audit ----------------------------------------------------------------------------------


def _as_args(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return inputs
    raise ValueError(f"inputs must be a torch.Tensor or a tuple of torch.Tensor, got {type(inputs).__name__}")


def _synchronizer(device: str, args: tuple[torch.Tensor, ...]) -> Callable[[], None] | None:
    target = torch.device(device) if device in {"cpu", "cuda"} or device.startswith("cuda:") else None
    if target is None:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    for t in args:
        if t.device.type != target.type:
            raise ValueError(f"inputs are on {t.device} but device={device!r}: move model and inputs there first")
    if target.type == "cuda":
        index = target.index

        def synchronize() -> None:
            torch.cuda.synchronize(index)

        return synchronize
    return None


def audit(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    layers: list[LayerRecord] | None = None,
    measure: bool = True,
    device: str = "cpu",
    repeats: int = 10,
) -> GuidelineReport:
    """Audit ``model`` on ``inputs`` against G1-G4 and VoVNet; findings come with their figures.

    ``layers`` are the records of ``collect_layers(model, inputs)`` when the caller already has them.
    With ``measure`` the operators are timed on ``device`` (where model and inputs must already be):
    ``repeats`` runs after one warm-up, median per operator; G4's latency share and VoVNet need it.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1; got {repeats!r}")
    args = _as_args(inputs)
    synchronize = _synchronizer(device, args)
    records = collect_layers(model, args) if layers is None else list(layers)

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        events = _trace(model, args, None)
        runs: list[list[_Event]] = []
        if measure:
            _trace(model, args, synchronize)  # warm-up
            runs = [_trace(model, args, synchronize) for _ in range(repeats)]
    finally:
        for module, mode in modes:
            module.training = mode

    matches = _align(records, events)
    parents = _parents(events, matches)
    element_bytes = args[0].element_size()

    findings = _g1(records) + _g2(records, element_bytes) + _g3(records, parents, find_blocks(model))
    summary: dict[str, Any] = {"measured": measure, "device": device, "operators": len(records)}
    if measure:
        if any(len(run) != len(events) or [e.op for e in run] != [e.op for e in events] for run in runs):
            raise ValueError("the model ran different operators from one run to the next; it must be static")
        medians = [statistics.median(run[j].seconds for run in runs) for j in range(len(events))]
        seconds = [medians[j] for j in matches]
        total = sum(medians)
        findings += _g4(records, seconds, total) + _vovnet(records, seconds, total)
        summary.update(repeats=repeats, operator_latency_ms=1000.0 * total)
    else:
        findings += _g4(records, None, 0.0)
    counts: dict[str, dict[str, int]] = {}
    for f in findings:
        counts.setdefault(f.guideline, {"info": 0, "warning": 0})[f.severity] += 1
    summary.update(
        counts=counts,
        warnings=sum(c["warning"] for c in counts.values()),
        network={f.guideline: dict(f.figures) for f in findings if f.scope == "network"},
        thresholds={
            "G1_ratio": G1_RATIO_THRESHOLD,
            "G2_ratio": G2_RATIO_THRESHOLD,
            "G3_parallel": G3_PARALLEL_THRESHOLD,
            "G3_fragments": G3_FRAGMENT_THRESHOLD,
            "G4_latency_share": G4_LATENCY_SHARE_THRESHOLD,
            "G4_memory_share": G4_MEMORY_SHARE_THRESHOLD,
            "VoVNet_efficiency_fraction": VOVNET_EFFICIENCY_FRACTION,
        },
    )
    return GuidelineReport(findings=findings, summary=summary)
