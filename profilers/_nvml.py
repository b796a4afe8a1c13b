"""A thin wrapper over NVIDIA's NVML Python bindings (the ``pynvml`` module of ``nvidia-ml-py``).

The module is imported lazily, only when a CUDA device is profiled, and is optional: without it
``load_nvml`` raises ``NvmlUnavailable`` with a message saying what to install, and the caller falls
back to another energy source. Every function takes the module object as an argument, so tests pass
a fake one instead of patching globals.

The NVML calls used, as documented in the NVML API reference:

- ``nvmlInit()`` / ``nvmlShutdown()``: reference-counted library initialisation.
- ``nvmlDeviceGetHandleByUUID(uuid)``: the handle of the GPU with that UUID ("GPU-xxxxxxxx-...").
  CUDA's device ordinals and NVML's indices can differ (``CUDA_VISIBLE_DEVICES``, PCI vs fastest-first
  order), so the UUID that CUDA reports is the reliable link; ``nvmlDeviceGetHandleByIndex`` is the
  fallback when no UUID is known.
- ``nvmlDeviceGetTotalEnergyConsumption(handle)``: energy in millijoules consumed by the GPU since the
  driver was last reloaded. Volta or newer fully supported devices only; other devices raise an
  ``NVMLError`` whose ``value`` is ``NVML_ERROR_NOT_SUPPORTED``. The counter is updated every 20-100 ms.
- ``nvmlDeviceGetPowerUsage(handle)``: power draw of the board in milliwatts. Fermi or newer; on
  Ampere (except GA100) and newer it is averaged over 1 s, older parts give the instantaneous value.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "NvmlDevice",
    "NvmlUnavailable",
    "PowerSampler",
    "integrate_power_mj",
    "load_nvml",
    "open_device",
]

_INSTALL_HINT = "install the NVML bindings with `pip install nvidia-ml-py` to measure GPU energy"


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why (module missing, no driver, no device...)."""


def load_nvml() -> Any:
    """Import and return the ``pynvml`` module, or raise ``NvmlUnavailable`` with an install hint."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as err:
        raise NvmlUnavailable(f"the pynvml module is not installed: {_INSTALL_HINT}") from err


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class NvmlDevice:
    """One GPU seen through an initialised NVML module."""

    def __init__(self, nvml: Any, handle: Any, *, identified_by: str) -> None:
        self.nvml = nvml
        self.handle = handle
        self.identified_by = identified_by

    def total_energy_mj(self) -> int | None:
        """The cumulative energy counter in mJ, or None where the device does not support it."""
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception as err:
            if _is_not_supported(self.nvml, err):
                return None
            raise NvmlUnavailable(f"nvmlDeviceGetTotalEnergyConsumption failed: {_error_text(err)}") from err

    def power_mw(self) -> float:
        """The board's current power draw in mW."""
        try:
            return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle))
        except Exception as err:
            raise NvmlUnavailable(f"nvmlDeviceGetPowerUsage failed: {_error_text(err)}") from err


def _is_not_supported(nvml: Any, err: BaseException) -> bool:
    code = getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", None)
    return code is not None and getattr(err, "value", None) == code


@contextmanager
def open_device(nvml: Any, *, uuid: str | None = None, index: int = 0) -> Iterator[NvmlDevice]:
    """Initialise NVML, yield the device (by UUID when given, else by index), shut NVML down after.

    ``uuid`` is the CUDA UUID string; the "GPU-" prefix NVML expects is added when missing.
    Any NVML failure while opening becomes ``NvmlUnavailable``.
    """
    try:
        nvml.nvmlInit()
    except Exception as err:
        raise NvmlUnavailable(f"nvmlInit failed (is the NVIDIA driver loaded?): {_error_text(err)}") from err
    try:
        try:
            if uuid:
                key = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
                handle = nvml.nvmlDeviceGetHandleByUUID(key)
                identified_by = f"uuid {key}"
            else:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                identified_by = f"nvml index {index}"
        except Exception as err:
            raise NvmlUnavailable(f"no NVML device for uuid={uuid!r} index={index}: {_error_text(err)}") from err
        yield NvmlDevice(nvml, handle, identified_by=identified_by)
    finally:
        # a failing shutdown must not hide the measurement or its error
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def integrate_power_mj(samples: list[tuple[float, float]]) -> float:
    """Trapezoidal integral of (time in s, power in mW) samples: mW x s = mJ.

    Samples must be in time order; fewer than two samples integrate to 0.
    """
    total = 0.0
    for (t0, p0), (t1, p1) in itertools.pairwise(samples):
        if t1 < t0:
            raise ValueError(f"power samples must be in time order; got t={t1} after t={t0}")
        total += 0.5 * (p0 + p1) * (t1 - t0)
    return total


class PowerSampler:
    """Samples ``device.power_mw()`` on a background thread every ``interval_s`` seconds.

    Use as a context manager: a sample is taken synchronously on entry and on exit, so the samples
    always bracket the measured window, and the thread adds the ones in between.
    """

    def __init__(
        self,
        device: NvmlDevice,
        *,
        interval_s: float = 0.02,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0; got {interval_s}")
        self.device = device
        self.interval_s = interval_s
        self.clock = clock
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _sample(self) -> None:
        power = self.device.power_mw()
        now = self.clock()
        with self._lock:
            self.samples.append((now, power))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except BaseException as err:
                self._error = err
                return

    def __enter__(self) -> PowerSampler:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="nvml-power-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is not None:
            return  # the body's own error propagates
        if self._error is not None:
            raise NvmlUnavailable(f"power sampling failed: {_error_text(self._error)}") from self._error
        self._sample()

    def energy_mj(self) -> float:
        with self._lock:
            samples = sorted(self.samples)
        return integrate_power_mj(samples)
