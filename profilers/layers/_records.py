"""The layer record: one executed aten operator with its costs, and the geometry of a convolution.

Records are plain data: they serialise to JSON (``to_dict``/``from_dict``) so that a profile keeps its layer table.
The counting rules behind the figures are in :mod:`profilers.layers._costs` (mult-adds and element-wise work) and
:mod:`profilers.layers._recorder` (memory access).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["LAYER_KINDS", "ConvInfo", "LayerRecord"]

LAYER_KINDS: tuple[str, ...] = (
    "conv",
    "linear",
    "matmul",
    "batch_norm",
    "activation",
    "add",
    "mul",
    "concat",
    "copy",
    "pool",
    "softmax",
    "other",
)


@dataclass(frozen=True)
class ConvInfo:
    """Geometry of one convolution; ``h`` and ``w`` are the output's last two spatial sizes (``h = 1`` in 1-D)."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    h: int
    w: int
    transposed: bool = False

    @property
    def depthwise(self) -> bool:
        """True when every input channel has its own filter group (``groups == in_channels > 1``)."""
        return self.groups == self.in_channels and self.groups > 1

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists when serialised)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvInfo:
        """The inverse of :meth:`to_dict`; ``transposed`` defaults to ``False`` when absent."""
        return cls(
            in_channels=int(data["in_channels"]),
            out_channels=int(data["out_channels"]),
            kernel_size=tuple(int(v) for v in data["kernel_size"]),
            stride=tuple(int(v) for v in data["stride"]),
            padding=tuple(int(v) for v in data["padding"]),
            dilation=tuple(int(v) for v in data["dilation"]),
            groups=int(data["groups"]),
            h=int(data["h"]),
            w=int(data["w"]),
            transposed=bool(data.get("transposed", False)),
        )


@dataclass(frozen=True)
class LayerRecord:
    """One executed aten operator with its costs (see :mod:`profilers.layers` for the counting rules).

    ``input_shapes`` lists the feature-map inputs only (tensors that are not parameters or buffers of the
    model), in argument order; weights are summarised by ``params`` and ``conv``.
    """

    name: str
    kind: str
    op: str
    module_type: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    params: int
    mult_adds: int
    elementwise_ops: int
    memory_access_bytes: int
    conv: ConvInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: shapes as lists, ``conv`` as a dict or ``None``."""
        data = asdict(self)
        data["input_shapes"] = [list(s) for s in self.input_shapes]
        data["output_shape"] = list(self.output_shape)
        data["conv"] = None if self.conv is None else self.conv.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerRecord:
        """The inverse of :meth:`to_dict`."""
        conv = data.get("conv")
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            op=str(data["op"]),
            module_type=str(data["module_type"]),
            input_shapes=tuple(tuple(int(v) for v in s) for s in data["input_shapes"]),
            output_shape=tuple(int(v) for v in data["output_shape"]),
            params=int(data["params"]),
            mult_adds=int(data["mult_adds"]),
            elementwise_ops=int(data["elementwise_ops"]),
            memory_access_bytes=int(data["memory_access_bytes"]),
            conv=None if conv is None else ConvInfo.from_dict(conv),
        )
