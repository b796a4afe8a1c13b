"""G3 of ShuffleNetV2: network fragmentation, counted per block on the data-flow graph of the layer records.

Multi-path blocks of many small operators lower parallelism (Ma et al., ECCV 2018, G3: NASNet-A has 13 "fragmented
operators", i.e. convolutions or poolings, per block, ResNet 2 or 3).

**Blocks.** A block is an outermost module below the root that is neither a leaf nor a pure container
(``nn.Sequential`` and its subclasses, ``nn.ModuleList``, ``nn.ModuleDict``): containers are looked through,
so the blocks of ``features = nn.Sequential(Block(), Block(), ...)`` are the ``Block`` instances. When this
finds a single module that itself holds two or more such modules (a "backbone" wrapper), its inner modules
are the blocks instead. An operator belongs to the block whose module path prefixes its record name.

**Fragments.** A fragment is a convolution, pooling, linear or matrix-product operator; within a block, a
fragment's level is the number of fragments on the longest data-flow path before it: the block's *serial* count
is the number of levels, its *parallel* count the largest number of fragments on one level (operators that could
run side by side). The same figures are given for the whole network.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING

from torch import nn

from profilers.guidelines._findings import Finding

if TYPE_CHECKING:
    from collections.abc import Sequence

    from profilers.layers import LayerRecord

__all__ = ["G3_FRAGMENT_THRESHOLD", "G3_PARALLEL_THRESHOLD", "find_blocks", "g3_findings"]

# G3: warn for blocks with three or more fragments side by side, or eight or more fragments in all
# (between ResNet's 2-3 and NASNet-A's 13).
G3_PARALLEL_THRESHOLD = 3
G3_FRAGMENT_THRESHOLD = 8

_FRAGMENT_KINDS = frozenset({"conv", "pool", "linear", "matmul"})
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


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


def g3_findings(
    records: Sequence[LayerRecord], parents: Sequence[frozenset[int]], blocks: Sequence[str]
) -> list[Finding]:
    """G3 for every block with fragments, then for the network.

    ``parents[i]`` are the records whose outputs record ``i`` reads; ``blocks`` the module paths of the blocks
    (:func:`find_blocks`).
    """
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
