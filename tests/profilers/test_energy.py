"""Energy per inference: the analytical model, RAPL on a fake sysfs tree, NVML through a fake module."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from profilers import _nvml, _rapl
from profilers.energy import (
    DRAM_PJ_PER_BYTE,
    EnergyResult,
    energy_per_inference,
    measure_nvml,
    measure_rapl,
    model_energy,
)

torch.set_num_threads(1)


# --- analytical model ----------------------------------------------------------------------------


def test_model_fp32_arithmetic() -> None:
    result = model_energy(1_000_000, 4_000_000, dtype_bytes=4)
    # 1e6 x (3.7 + 0.9) pJ + 4e6 B x 160 pJ/B = 4.6e6 pJ + 640e6 pJ = 0.6446 mJ
    assert result.source == "model"
    assert result.value_mj == pytest.approx(0.6446)
    assert result.details["compute_mj"] == pytest.approx(0.0046)
    assert result.details["memory_mj"] == pytest.approx(0.64)
    assert DRAM_PJ_PER_BYTE == 160.0


@pytest.mark.parametrize(("dtype_bytes", "pj"), [(4, 4.6), (2, 1.5), (1, 0.3)])
def test_model_mult_add_energy_by_dtype(dtype_bytes: int, pj: float) -> None:
    result = model_energy(10**9, 0, dtype_bytes=dtype_bytes)
    assert result.value_mj == pytest.approx(pj)  # 1e9 mult-adds x pj pJ = pj mJ
    assert result.details["pj_per_mult_add"] == pytest.approx(pj)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mult_adds": -1, "memory_access_bytes": 0}, "mult_adds"),
        ({"mult_adds": 0, "memory_access_bytes": -5}, "memory_access_bytes"),
        ({"mult_adds": 0, "memory_access_bytes": 0, "dtype_bytes": 8}, "dtype_bytes must be one of"),
    ],
)
def test_model_rejects_bad_input(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model_energy(**kwargs)


def test_result_to_dict_is_json() -> None:
    result = model_energy(1000, 1000)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["source"] == "model"
    assert data["value"] == pytest.approx(result.value_mj)
    assert data["details"]["reference"].startswith("Horowitz")


# --- RAPL on a fake powercap tree ----------------------------------------------------------------


def _zone(root: Path, zone: str, name: str, energy: int, max_range: int = 10**12) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def _bump(path: Path, amount: int) -> None:
    """Advance a fake counter, wrapping at its max_energy_range_uj like the kernel's."""
    value = int((path / "energy_uj").read_text()) + amount
    max_range = int((path / "max_energy_range_uj").read_text())
    if value > max_range:
        value -= max_range
    (path / "energy_uj").write_text(f"{value}\n")


def _full_tree(root: Path) -> dict[str, Path]:
    return {
        "package": _zone(root, "intel-rapl:0", "package-0", 5_000),
        "core": _zone(root, "intel-rapl:0:0", "core", 1_000),
        "uncore": _zone(root, "intel-rapl:0:1", "uncore", 1_000),
        "dram": _zone(root, "intel-rapl:0:2", "dram", 7_000),
        "psys": _zone(root, "intel-rapl:1", "psys", 9_000),
        "mmio": _zone(root, "intel-rapl-mmio:0", "package-0", 5_000),
    }


def _runner(zones: dict[str, Path], per_run: dict[str, int], sleep_s: float = 0.0):
    calls = {"n": 0}

    def run() -> None:
        calls["n"] += 1
        for key, amount in per_run.items():
            _bump(zones[key], amount)
        if sleep_s:
            time.sleep(sleep_s)

    return run, calls


def test_rapl_sums_package_and_dram_only(tmp_path: Path) -> None:
    zones = _full_tree(tmp_path)
    per_run = {"package": 1_000, "dram": 200, "core": 600, "uncore": 100, "psys": 5_000, "mmio": 1_000}
    run, calls = _runner(zones, per_run, sleep_s=0.005)
    result = measure_rapl(run, min_time_s=0.03, powercap_root=tmp_path)
    assert result.source == "rapl"
    # 1000 uJ package + 200 uJ dram per run = 1.2 mJ; core/uncore are inside the package, psys and
    # the mmio duplicate are not summed.
    assert result.value_mj == pytest.approx(1.2)
    assert set(result.details["domains"]) == {"intel-rapl:0", "intel-rapl:0:2"}
    assert result.details["has_dram"] is True
    assert result.details["iterations"] == calls["n"] - 1  # one warm-up call outside the window
    assert result.details["iterations"] >= 2
    assert result.details["total_uj"] == 1_200 * result.details["iterations"]


def test_rapl_counter_wraparound(tmp_path: Path) -> None:
    max_range = 100_000
    zones = {"package": _zone(tmp_path, "intel-rapl:0", "package-0", max_range - 1_500, max_range)}
    run, _ = _runner(zones, {"package": 1_000}, sleep_s=0.005)
    result = measure_rapl(run, min_time_s=0.03, powercap_root=tmp_path)
    domain = result.details["domains"]["intel-rapl:0"]
    assert domain["wrapped"] is True
    assert domain["after_uj"] < domain["before_uj"]
    assert result.value_mj == pytest.approx(1.0)


def test_counter_delta_arithmetic() -> None:
    assert _rapl.counter_delta_uj(100, 350, 1_000) == 250
    assert _rapl.counter_delta_uj(900, 50, 1_000) == 150  # 100 to the top, then 50
    with pytest.raises(ValueError, match="max_energy_range_uj"):
        _rapl.counter_delta_uj(1, 2, 0)


def test_rapl_without_dram_zone(tmp_path: Path) -> None:
    zones = {
        "package": _zone(tmp_path, "intel-rapl:0", "package-0", 0),
        "core": _zone(tmp_path, "intel-rapl:0:0", "core", 0),
    }
    run, _ = _runner(zones, {"package": 2_500, "core": 2_000})
    result = measure_rapl(run, min_time_s=1e-6, powercap_root=tmp_path)
    assert result.details["has_dram"] is False
    assert result.value_mj == pytest.approx(2.5)


def test_rapl_two_packages(tmp_path: Path) -> None:
    zones = {
        "p0": _zone(tmp_path, "intel-rapl:0", "package-0", 0),
        "p1": _zone(tmp_path, "intel-rapl:1", "package-1", 0),
        "d1": _zone(tmp_path, "intel-rapl:1:0", "dram", 0),
    }
    run, _ = _runner(zones, {"p0": 1_000, "p1": 3_000, "d1": 500})
    assert measure_rapl(run, min_time_s=1e-6, powercap_root=tmp_path).value_mj == pytest.approx(4.5)


def _expect_model_fallback(root: Path, reason: str) -> None:
    result = energy_per_inference(
        lambda: None,
        device="cpu",
        mult_adds=1_000,
        memory_access_bytes=0,
        min_time_s=1e-6,
        powercap_root=root,
    )
    assert result.source == "model"
    assert result.value_mj == pytest.approx(1_000 * 4.6e-9)
    assert len(result.details["fallback"]) == 1
    assert result.details["fallback"][0].startswith("rapl: ")
    assert reason in result.details["fallback"][0]


def test_rapl_unreadable_counter_falls_back(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # unreadable as a file even for root
    _expect_model_fallback(tmp_path, "cannot read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_rapl_permission_denied_falls_back(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "intel-rapl:0", "package-0", 0)
    (zone / "energy_uj").chmod(0)
    _expect_model_fallback(tmp_path, "permission denied")


def test_rapl_missing_tree_or_package_falls_back(tmp_path: Path) -> None:
    _expect_model_fallback(tmp_path / "absent", "does not exist")
    _zone(tmp_path, "intel-rapl:1", "psys", 0)
    _expect_model_fallback(tmp_path, "no RAPL package zone")


def test_energy_per_inference_uses_rapl_on_cpu(tmp_path: Path) -> None:
    zones = {"package": _zone(tmp_path, "intel-rapl:0", "package-0", 0)}
    run, _ = _runner(zones, {"package": 3_000})
    result = energy_per_inference(
        run, device="cpu", mult_adds=10, memory_access_bytes=10, min_time_s=1e-6, powercap_root=tmp_path
    )
    assert isinstance(result, EnergyResult)
    assert (result.source, result.value_mj) == ("rapl", pytest.approx(3.0))
    assert result.details["model_mj"] == pytest.approx(model_energy(10, 10).value_mj)


# --- NVML through a fake module ------------------------------------------------------------------


class FakeNvml:
    """Stands in for the pynvml module: same function names, errors with a `value` code."""

    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(f"NVML error {value}")
            self.value = value

    def __init__(self, *, counter: bool = True, power_mw: float | None = 50_000.0, init_ok: bool = True) -> None:
        self.counter = counter
        self.power = power_mw
        self.init_ok = init_ok
        self.energy_mj = 123_456
        self.inits = 0
        self.shutdowns = 0
        self.handle_requests: list[str] = []

    def nvmlInit(self) -> None:
        if not self.init_ok:
            raise self.NVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.handle_requests.append(uuid)
        return "gpu0"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.handle_requests.append(f"index {index}")
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        assert handle == "gpu0"
        if not self.counter:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> float:
        if self.power is None:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return self.power


def test_nvml_energy_counter_arithmetic() -> None:
    fake = FakeNvml()
    syncs = {"n": 0}

    def run() -> None:
        fake.energy_mj += 7  # each inference costs 7 mJ on the fake board
        time.sleep(0.002)

    def sync() -> None:
        syncs["n"] += 1

    with _nvml.open_device(fake, uuid="1234-abcd") as gpu:
        result = measure_nvml(run, device=gpu, synchronize=sync, min_time_s=0.02)
    assert fake.handle_requests == ["GPU-1234-abcd"]
    assert (fake.inits, fake.shutdowns) == (1, 1)
    assert result.source == "nvml"
    assert result.value_mj == pytest.approx(7.0)
    iterations = result.details["iterations"]
    assert iterations >= 2
    assert syncs["n"] == iterations + 1  # after the warm-up and after every measured run
    assert result.details["counter_after_mj"] - result.details["counter_before_mj"] == 7 * iterations


def test_nvml_power_sampling_when_counter_unsupported() -> None:
    fake = FakeNvml(counter=False, power_mw=50_000.0)
    with _nvml.open_device(fake, index=0) as gpu:
        result = measure_nvml(lambda: time.sleep(0.005), device=gpu, synchronize=lambda: None, min_time_s=0.06)
    details = result.details
    assert "nvmlDeviceGetPowerUsage" in details["method"]
    assert details["samples"] >= 2
    # constant 50 W over the sampled window, shared by the runs
    assert result.value_mj == pytest.approx(50_000.0 * details["sampled_window_s"] / details["iterations"])
    assert details["mean_power_w"] == pytest.approx(50.0)
    assert details["sampled_window_s"] >= details["duration_s"]


def test_nvml_no_counter_no_power_raises() -> None:
    fake = FakeNvml(counter=False, power_mw=None)
    with _nvml.open_device(fake, index=0) as gpu, pytest.raises(_nvml.NvmlUnavailable, match="PowerUsage"):
        measure_nvml(lambda: None, device=gpu, synchronize=lambda: None, min_time_s=1e-6)
    assert fake.shutdowns == 1


def test_nvml_counter_going_backwards_raises() -> None:
    fake = FakeNvml()

    def run() -> None:
        fake.energy_mj -= 1

    with _nvml.open_device(fake, index=0) as gpu, pytest.raises(_nvml.NvmlUnavailable, match="counter went"):
        measure_nvml(run, device=gpu, synchronize=lambda: None, min_time_s=1e-6)


def test_nvml_init_failure_is_unavailable() -> None:
    with (
        pytest.raises(_nvml.NvmlUnavailable, match="nvmlInit failed"),
        _nvml.open_device(FakeNvml(init_ok=False)),
    ):
        pass


def test_integrate_power() -> None:
    # 1 s ramping 1 W -> 3 W, then 2 s at 3 W: 2 J + 6 J = 8000 mJ
    assert _nvml.integrate_power_mj([(0.0, 1000.0), (1.0, 3000.0), (3.0, 3000.0)]) == pytest.approx(8000.0)
    assert _nvml.integrate_power_mj([(0.0, 1000.0)]) == 0.0
    with pytest.raises(ValueError, match="time order"):
        _nvml.integrate_power_mj([(1.0, 1.0), (0.0, 1.0)])


def test_load_nvml_missing_module_message() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pynvml is installed here")
    with pytest.raises(_nvml.NvmlUnavailable, match="nvidia-ml-py"):
        _nvml.load_nvml()


def test_cuda_request_without_gpu_falls_back_to_model(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = energy_per_inference(
        lambda: None, device="cuda:0", mult_adds=0, memory_access_bytes=1_000, powercap_root=tmp_path
    )
    assert result.source == "model"
    assert result.value_mj == pytest.approx(1_000 * 160e-9)
    assert result.details["fallback"] == ["nvml: torch reports no CUDA device"]


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", "", None])
def test_bad_device_rejected(device: str | None) -> None:
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        energy_per_inference(lambda: None, device=device, mult_adds=0, memory_access_bytes=0)  # type: ignore[arg-type]


def test_bad_min_time_rejected() -> None:
    with pytest.raises(ValueError, match="min_time_s"):
        energy_per_inference(lambda: None, device="cpu", mult_adds=0, memory_access_bytes=0, min_time_s=0)


def test_real_model_on_cpu_gives_some_source() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def run() -> None:
        with torch.inference_mode():
            model(x)

    result = energy_per_inference(run, device="cpu", mult_adds=93_312, memory_access_bytes=20_000, min_time_s=0.01)
    assert result.source in {"rapl", "model"}
    assert result.value_mj > 0
    json.dumps(result.to_dict())
