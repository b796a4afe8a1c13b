"""The project's one formatter of configuration errors: a pydantic ``ValidationError`` as one readable line.

Every configuration of the project is a pydantic model (a space's layout, the supernet's training, the run
config), and each bad key is reported the same way: its path, what was given, what is allowed, and a "did you
mean" for a misspelt key. It lives in ``search_spaces``, the bottom package that ``supernet`` and ``nas`` may
both import.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

__all__ = ["did_you_mean", "format_validation_error", "model_class"]


def format_validation_error(err: ValidationError, root: type[BaseModel], *, extra_keys: Sequence[str] = ()) -> str:
    """One line for all the problems pydantic found in ``root``, each naming its key path and what is allowed.

    ``extra_keys`` are keys the caller accepts at the top level besides ``root``'s fields (e.g. ``layout``).
    """
    messages = []
    for item in err.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            allowed = list(model.model_fields) if model is not None else []
            if len(loc) == 1:
                allowed = [*extra_keys, *allowed]
            hint = did_you_mean(str(loc[-1]), allowed)
            where = f" in {'.'.join(str(p) for p in loc[:-1])!r}" if len(loc) > 1 else ""
            messages.append(f"unknown key {path!r}{hint}; allowed keys{where}: {', '.join(allowed)}")
            continue
        msg = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] in {"value_error", "assertion_error"}:
            # A model validator's message may name its field first: "root: ..." in data -> "data.root: ...".
            model = _model_at(root, loc)
            head, sep, rest = msg.partition(": ")
            if sep and model is not None and head in model.model_fields:
                path, msg = ".".join(p for p in (path, head) if p), rest
            messages.append(f"{path}: {msg}" if path else msg)
            continue
        expected = _expected(root, loc)
        given = item.get("input")
        text = f"{path or '(top level)'}: {msg}; got {_short_repr(given)} ({type(given).__name__})"
        if expected and item["type"] != "literal_error":  # pydantic's message already lists the options
            text += f", expected {expected}"
        if "a number" in expected and isinstance(given, str) and _looks_like_float(given):
            text += f" (YAML reads {_short_repr(given)} as a string: write it with a dot, e.g. 1.0e-3)"
        messages.append(text)
    if len(messages) > _MAX_PROBLEMS:
        messages = [*messages[:_MAX_PROBLEMS], f"and {len(messages) - _MAX_PROBLEMS} more problem(s)"]
    return "; ".join(messages)


_MAX_PROBLEMS = 3
_MAX_ECHO = 60  # characters of a user's value quoted back in a message


def _short_repr(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters: a message never quotes a whole hostile document back."""
    text = repr(value)
    return text if len(text) <= _MAX_ECHO else f"{text[: _MAX_ECHO - 1]}… ({len(text)} characters)"


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``M``, ``M | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = model_class(arg)
            if found is not None:
                return found
    return None


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = model_class(model.model_fields[part].annotation)
    return model


def _expected(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    model = _model_at(root, loc[:-1])
    if model is None or not loc or not isinstance(loc[-1], str) or loc[-1] not in model.model_fields:
        return ""
    annotation = model.model_fields[loc[-1]].annotation
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return _type_name(annotation)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with keys {', '.join(annotation.model_fields)}"
    if isinstance(annotation, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(
            annotation.__name__, annotation.__name__
        )
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin is dict:
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    return str(annotation)


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def did_you_mean(word: str, options: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the option closest to ``word``, or an empty string."""
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
