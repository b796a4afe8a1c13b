"""Reading a YAML file the user gave, safely: the safe loader, with limits that stop hostile documents early.

Limits (each refusal is a :class:`ValueError` with a short message that never quotes the document):
- the file's size (``MAX_YAML_BYTES``): a run config is a few kilobytes;
- aliases (``MAX_ALIASES``): the "billion laughs" document expands nine aliases into 10^9 nodes, which the loader
  shares but every later step (validation, messages) expands; it is refused while parsing, in milliseconds;
- nesting depth (``MAX_DEPTH``): deeply nested collections would otherwise end in a RecursionError.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_YAML_BYTES", "read_yaml"]

MAX_YAML_BYTES = 1 << 20
MAX_ALIASES = 20
MAX_DEPTH = 50


class _LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts aliases and nesting while composing the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise ValueError(f"has more than {MAX_ALIASES} aliases (*name): refused (a run config needs none)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ValueError(f"is nested deeper than {MAX_DEPTH} levels: refused")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The document in ``path``; ``ValueError`` (short, no document text) when it is too big, hostile or not YAML."""
    file = Path(path)
    size = file.stat().st_size
    if size > MAX_YAML_BYTES:
        raise ValueError(f"is {size} bytes, more than the {MAX_YAML_BYTES} a config may have")
    text = file.read_text(encoding="utf-8")
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ValueError(f"is not valid YAML: {_describe(err)}") from None
    finally:
        loader.dispose()


def _describe(err: yaml.YAMLError) -> str:
    """The parser's context and problem with their line numbers, without quoting the document."""
    parts = []
    for text_key, mark_key in (("context", "context_mark"), ("problem", "problem_mark")):
        text, mark = getattr(err, text_key, None), getattr(err, mark_key, None)
        if text:
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            parts.append(f"{' '.join(str(text).split())[:100]}{where}")
    return ", ".join(parts) or type(err).__name__
