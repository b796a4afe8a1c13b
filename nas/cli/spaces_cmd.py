"""`nas spaces [SPACE [--layout L]]`: the search spaces, their layouts, choices and presets."""

from __future__ import annotations

import json
from typing import Any

from nas.core.errors import UsageError, clip
from search_spaces import get_space_class, list_spaces

__all__ = ["show_spaces"]


def _describe(name: str, layout: str | None = None) -> dict[str, Any]:
    cls = get_space_class(name)
    try:
        space = cls({"layout": layout} if layout else None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    info = space.describe()
    info["layout"] = layout or cls.default_layout
    info["presets"] = {
        preset: {"description": spec.description, "config": dict(spec.config), "reference": dict(spec.reference)}
        for preset, spec in cls.preset_table().items()
    }
    return info


def _format_choices(choices: dict[str, list[Any]]) -> list[str]:
    """Group consecutive labels sharing the same options, so 20 identical layers print as one line."""
    lines: list[str] = []
    items = list(choices.items())
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1][1] == items[i][1]:
            j += 1
        labels = items[i][0] if i == j else f"{items[i][0]} .. {items[j][0]} ({j - i + 1} labels)"
        lines.append(f"    {labels}: {', '.join(map(str, items[i][1]))}")
        i = j + 1
    return lines


def show_spaces(space: str | None, *, layout: str | None = None, as_json: bool = False) -> int:
    names = list_spaces()
    if space is not None and space not in names:
        raise UsageError(f"unknown space {clip(space)}; allowed: {', '.join(names)}")
    if layout is not None and space is None:
        raise UsageError("--layout needs a space: nas spaces SPACE --layout LAYOUT")
    infos = [_describe(n, layout) for n in ([space] if space else names)]
    if as_json:
        print(json.dumps(infos[0] if space else infos, indent=2))
        return 0
    for info in infos:
        print(f"{info['name']}: {info['description']}")
        print(f"  layouts: {', '.join(info['layouts'])}")
        print(f"  presets: {', '.join(info['presets'])}")
        if space:
            print(f"  layout {info['layout']}: {json.dumps(info['config'])}")
            print(f"  choices ({len(info['choices'])} labels, {info['cardinality']:.3g} combinations):")
            print("\n".join(_format_choices(info["choices"])))
            print("  presets in full:")
            for name, preset in info["presets"].items():
                ref = ", ".join(f"{k} {v:.4g}" for k, v in preset["reference"].items())
                print(f"    {name}: {preset['description']}" + (f" [published: {ref}]" if ref else ""))
        else:
            print(f"  {len(info['choices'])} labels, {info['cardinality']:.3g} combinations (default layout)")
        print()
    return 0
