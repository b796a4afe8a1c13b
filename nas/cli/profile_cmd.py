"""`nas profile`: profile a preset, an architecture of a space, or any user model."""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli.memory_estimate import check_input_fits
from nas.core.errors import UsageError, clip
from nas.core.paths import check_writable_dir

if TYPE_CHECKING:
    from torch import nn

    from search_spaces import Architecture, SearchSpace

__all__ = ["PROFILE_TIMING", "ProfileRequest", "load_arch", "load_user_model", "run_profile"]

# The timing protocol of `nas profile` (profilers.timing; recorded in the profile's latency_ms.protocol): the
# search's, with a longer warm-up and at least a second of samples, so that load that comes and goes over
# a second is averaged into the median, and an interval of +/- 0.5 %: five profiles in a row then agree within
# a few per cent on a 2-core machine shared with other work (results/benchmarks/timing_repeatability.json).
PROFILE_TIMING: dict[str, float] = {"warmup_time_s": 0.5, "min_time_s": 1.0, "ci_target": 0.005, "max_time_s": 4.0}


@dataclass(frozen=True)
class ProfileRequest:
    space: str | None = None
    preset: str | None = None
    arch: str | None = None
    layout: str | None = None
    model: str | None = None
    input_size: int | None = None
    in_channels: int | None = None
    batch_size: int = 1
    device: str = "cpu"
    backend: str = "eager"
    threads: int | None = None
    repeats: int | None = None
    latency_table: str | None = None  # a directory holding (or to hold) the space's latency table
    as_json: bool = False


_MAX_ARCH_BYTES = 1 << 20
_DEFAULT_MODEL_SIDE = 224  # --model without --input-size: ImageNet's side, said in the output  # an architecture is a few hundred labels at most


def _arch_document(text: str) -> dict[str, Any]:
    """The JSON object of ``--arch`` (text or a .json file), within size and nesting limits."""
    candidate = Path(text) if len(text) < 4096 else None
    if not text.lstrip().startswith(("{", "[")) and candidate is not None and candidate.suffix == ".json":
        if not candidate.is_file():
            raise UsageError(f"architecture file {clip(text)} does not exist")
        if candidate.stat().st_size > _MAX_ARCH_BYTES:
            raise UsageError(f"architecture file {clip(text)} is larger than {_MAX_ARCH_BYTES} bytes; an architecture is a small JSON object")
        text = candidate.read_text(encoding="utf-8", errors="replace")
    if len(text) > _MAX_ARCH_BYTES:
        raise UsageError(f"--arch is {len(text)} characters, more than {_MAX_ARCH_BYTES}; an architecture is a small JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--arch is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            'give {"space": ..., "values": {label: value}}, a bare {label: value} object, or a .json file'
        ) from None
    except RecursionError:
        raise UsageError("--arch is nested too deeply; an architecture is a flat {label: value} object") from None
    if not isinstance(data, dict):
        raise UsageError(f"--arch must be a JSON object, got {type(data).__name__}")
    return data


def load_arch(text: str, space_name: str | None) -> tuple[Architecture, dict[str, Any] | None]:
    """An architecture from JSON text or a file, and the space configuration the file records (if any).

    Accepted: ``{"space", "values"}`` (with ``arch_id``, ``layout`` and ``space_config`` as ``nas export``
    writes them) or a bare ``{label: value}`` mapping (then ``space_name`` is needed).
    """
    from search_spaces import Architecture

    data = _arch_document(text)
    space_config = data.pop("space_config", None)
    layout = data.pop("layout", None)
    if space_config is not None and not isinstance(space_config, dict):
        raise UsageError(f"--arch: space_config must be a JSON object, got {type(space_config).__name__}")
    try:
        if "values" in data and isinstance(data["values"], dict):
            arch = Architecture.from_dict(data)
        elif space_name is None:
            raise UsageError('--arch without --space must name its space: {"space": ..., "values": {...}}')
        else:
            arch = Architecture(space=space_name, values=data)
    except (ValueError, TypeError) as err:
        raise UsageError(clip(str(err), 300)) from None
    if space_name is not None and arch.space != space_name:
        raise UsageError(f"--arch belongs to space {clip(arch.space)} but --space is {clip(space_name)}")
    recorded = dict(space_config) if space_config is not None else ({"layout": layout} if layout else None)
    return arch, recorded


def _import_dependencies() -> None:
    """Import what profiling uses before the user's directory is importable, so no file there can replace it."""
    import fvcore.nn  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import profilers  # noqa: F401


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    text = " ".join(f"{type(err).__name__}: {lines[-1] if lines else ''}".rstrip(": ").split())
    return text if len(text) <= 160 else text[:159] + "…"


def load_user_model(spec: str) -> nn.Module:
    """Call MODULE:CALLABLE from the current directory and check it returns an nn.Module.

    The current directory is importable only while the user's module is imported, after the tool's own
    dependencies are: a stray ``fvcore.py`` there is never executed. Any failure of the user's code (syntax error,
    import error, an exception, a callable that needs arguments) is bad input showing its error's last line.
    """
    from torch import nn

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {clip(spec)} must look like MODULE:CALLABLE, e.g. mypkg.models:make_model")
    _import_dependencies()
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise UsageError(f"--model: no module {clip(module_name)} in {clip(cwd)} or the installed packages") from None
        raise UsageError(f"--model: your model failed to import: {_last_line(err)}") from None
    except Exception as err:
        raise UsageError(f"--model: your model failed to import: {_last_line(err)}") from None
    finally:
        if sys.path and sys.path[0] == cwd:
            del sys.path[0]
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UsageError(f"--model: {clip(module_name)} has no callable {clip(attr)}; callables: {', '.join(public[:20])[:200]}")
    try:
        model = factory()
    except Exception as err:
        raise UsageError(f"--model: your model failed when called as {clip(spec)}(): {_last_line(err)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model: {clip(spec)} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_user_model_runs(model: nn.Module, shape: tuple[int, ...]) -> None:
    """One forward pass at batch 1 of ``shape``; a failure is the user's model rejecting the input."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros((1, *shape[1:])))
    except Exception as err:
        raise UsageError(
            f"--model: your model failed on an input of shape {tuple(shape[1:])} (set --input-size / "
            f"--in-channels): {_last_line(err)}"
        ) from None
    finally:
        model.train(was_training)


def _space_and_arch(request: ProfileRequest) -> tuple[SearchSpace, Architecture]:
    from search_spaces import get_space, get_space_class, list_spaces

    if request.preset is not None:
        if request.space is None:
            raise UsageError(f"--preset needs --space; spaces: {', '.join(list_spaces())}")
        if request.layout is not None:
            raise UsageError("--layout goes with --arch; a preset fixes its own layout")
        return get_space_class(request.space).preset(request.preset)
    if request.arch is None:
        assert request.space is not None
        raise UsageError(
            f"--space needs --preset NAME or --arch JSON; presets of {clip(request.space)}: "
            + ", ".join(get_space_class(request.space).preset_table())
        )
    arch, recorded = load_arch(request.arch, request.space)
    config: dict[str, Any] = dict(recorded or {})
    if request.layout is not None:  # the user's layout wins over the file's, which must then not pin a config
        config = {"layout": request.layout}
    space = get_space(arch.space, config or None)
    return space, space.validate(arch)


def _space_model(
    request: ProfileRequest,
) -> tuple[nn.Module, tuple[int, int, int, int], dict[str, Any], SearchSpace, Architecture]:
    try:
        space, arch = _space_and_arch(request)
        model = space.build(arch)
    except ValueError as err:
        raise UsageError(clip(str(err), 300)) from None
    shape = space.input_shape(request.batch_size, arch)
    if request.input_size is not None:
        shape = (shape[0], shape[1], request.input_size, request.input_size)
    if request.in_channels is not None and request.in_channels != shape[1]:
        raise UsageError(f"--in-channels {request.in_channels} differs from the space's {shape[1]}; omit it")
    subject = {"space": space.name, "arch": arch.to_dict(), "arch_id": arch.arch_id, "preset": request.preset}
    subject["input_size_source"] = "--input-size" if request.input_size is not None else "the space's own"
    return model, shape, subject, space, arch


def run_profile(request: ProfileRequest) -> int:
    space_arch: tuple[SearchSpace, Architecture] | None = None
    if request.model is not None:
        if request.preset or request.arch or request.layout or request.latency_table:
            raise UsageError("--preset, --arch, --layout and --latency-table go with --space, not with --model")
        model = load_user_model(request.model)
        side = request.input_size or _DEFAULT_MODEL_SIDE
        shape = (request.batch_size, request.in_channels or 3, side, side)
        source = "--input-size" if request.input_size else f"the default {_DEFAULT_MODEL_SIDE} (set --input-size)"
        subject: dict[str, Any] = {"model": request.model, "input_size_source": source}
        check_user_model_runs(model, shape)
    elif request.space is None and request.arch is None:
        raise UsageError("say what to profile: --space SPACE (--preset NAME | --arch JSON), --arch FILE or --model MODULE:CALLABLE")
    else:
        model, shape, subject, space, arch = _space_model(request)
        space_arch = (space, arch)
    if request.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here; allowed on this machine: cpu")
    check_input_fits(model, shape)
    if request.latency_table is not None:
        check_writable_dir(request.latency_table, "--latency-table directory")
    from profilers import profile_model

    try:
        profile = profile_model(
            model,
            shape[1:],
            batch_size=shape[0],
            device=request.device,
            backend=request.backend,
            threads=request.threads,
            latency_options={**PROFILE_TIMING, **({"repeats": request.repeats} if request.repeats else {})},
            energy=True,
            guidelines=True,
        )
    except ValueError as err:
        raise UsageError(clip(str(err), 300)) from None
    except Exception as err:
        if request.model is None:
            raise
        raise UsageError(f"--model: your model failed while being profiled: {_last_line(err)}") from None
    result = {**subject, "input_shape": list(shape), **profile.to_dict()}
    if request.latency_table is not None and space_arch is not None:
        result["latency_table"] = _table_prediction(request, space_arch[0], space_arch[1], shape, profile)
    if request.as_json:
        result.pop("layers", None)
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0


def _table_prediction(
    request: ProfileRequest, space: SearchSpace, arch: Architecture, shape: tuple[int, ...], profile: Any
) -> dict[str, Any]:
    """The latency table of the space in ``--latency-table DIR`` (built there on first use) and its prediction."""
    from nas.search.latency_table import TABLE_NAME, load_or_build, predict_latency

    if shape[2] != space.resolution(arch):
        raise UsageError("--latency-table predicts at the space's own input size; leave out --input-size")
    table = load_or_build(
        request.latency_table or ".",
        space,
        device=request.device,
        threads=request.threads or 1,
        batch_size=request.batch_size,
        backend=request.backend,
    )
    predicted = predict_latency(table, space, arch)
    measured = profile.latency.median_ms if profile.latency is not None else float("nan")
    return {
        "path": str(Path(request.latency_table or ".") / TABLE_NAME),
        "entries": len(table.entries),
        "overhead_ms": table.overhead_ms,
        "predicted_ms": predicted,
        "measured_ms": measured,
        "relative_error": predicted / measured - 1 if measured > 0 else None,
    }


def _print_human(result: dict[str, Any]) -> None:
    what = result.get("preset") or result.get("model") or result.get("arch_id")
    print(f"profile of {what} at input {tuple(result['input_shape'])} (input size: {result['input_size_source']})")
    print(f"  params               {result['params'] / 1e6:10.3f} M")
    print(f"  mult_adds            {result['mult_adds'] / 1e6:10.2f} M")
    print(f"  elementwise_ops      {result['elementwise_ops'] / 1e6:10.2f} M")
    print(f"  memory_access_bytes  {result['memory_access_bytes'] / 1e6:10.2f} MB")
    lat = result.get("latency_ms")
    if lat:
        print(
            f"  latency_ms           {lat['median']:10.3f} (p10 {lat['p10']:.3f}, p90 {lat['p90']:.3f}, "
            f"{lat['repeats']} runs, {lat['backend']} on {lat['device']}, {lat['threads']} threads, "
            f"batch {lat['batch_size']}, {lat['dtype']})"
        )
        protocol = lat.get("protocol") or {}
        if protocol and lat.get("ci_low_ms") is not None:
            print(
                f"                       95% CI of the median {lat['ci_low_ms']:.3f}-{lat['ci_high_ms']:.3f} "
                f"(protocol {protocol.get('name')}, target +/-{100 * protocol.get('ci_target', 0):.1f}%, "
                f"{'met' if protocol.get('converged') else 'not met within ' + str(protocol.get('max_time_s')) + ' s'})"
            )
    energy = result.get("energy_mj")
    if energy:
        print(f"  energy_mj            {energy['value']:10.4f} (source: {energy['source']})")
    table = result.get("latency_table")
    if table:
        print(f"  latency table        {table['predicted_ms']:10.3f} ms predicted ({table['entries']} blocks, {table['path']})")
    findings = result.get("guidelines") or []
    warned = [f for f in findings if f.get("severity") == "warning"]
    for finding in warned:
        print(f"  [{finding.get('guideline')}] {finding.get('message')}")
    if len(findings) > len(warned):
        print(f"  ({len(findings) - len(warned)} more guideline findings at info level: see --json)")
