"""The CPU-kernel pin (hybridrec.kernels): what it sets, what it leaves alone, and that importing
hybridrec makes a fresh process compute with ATen's AVX2 kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridrec import kernels
from hybridrec.kernels import NATIVE_SWITCH, PINNED, cpu_has_avx2, pin_cpu_kernels


def test_pins_every_unset_variable_on_an_avx2_cpu() -> None:
    env: dict[str, str] = {}
    assert pin_cpu_kernels(env, has_avx2=True) == PINNED
    assert env == PINNED
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    # MKL honours its AVX2 branch on Intel CPUs only: the cross-vendor branch is COMPATIBLE
    assert env["MKL_CBWR"] == "COMPATIBLE"
    assert pin_cpu_kernels(env, has_avx2=True) == {}  # idempotent


def test_a_users_own_setting_wins() -> None:
    env = {"ATEN_CPU_CAPABILITY": "avx512"}
    added = pin_cpu_kernels(env, has_avx2=True)
    assert env["ATEN_CPU_CAPABILITY"] == "avx512"
    assert "ATEN_CPU_CAPABILITY" not in added and added["MKL_CBWR"] == "COMPATIBLE"


@pytest.mark.parametrize("switch", ["1", "true", "ON"])
def test_the_native_switch_and_cpus_without_avx2_leave_the_environment_alone(switch: str) -> None:
    env = {NATIVE_SWITCH: switch}
    assert pin_cpu_kernels(env, has_avx2=True) == {} and env == {NATIVE_SWITCH: switch}
    bare: dict[str, str] = {}
    assert pin_cpu_kernels(bare, has_avx2=False) == {} and bare == {}


def test_avx2_is_read_from_the_cpu_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx fma\nmodel name\t: Old\n")
    monkeypatch.setattr(kernels.platform, "machine", lambda: "x86_64")
    assert cpu_has_avx2(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n")
    assert cpu_has_avx2(info) is True
    assert cpu_has_avx2(tmp_path / "missing") is False
    monkeypatch.setattr(kernels.platform, "machine", lambda: "arm64")
    assert cpu_has_avx2(info) is False


@pytest.mark.skipif(not cpu_has_avx2(), reason="the pin applies to x86-64 CPUs with AVX2")
def test_importing_hybridrec_pins_atens_kernels_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in PINNED and k != NATIVE_SWITCH}
    code = ("import os, hybridrec, torch; "
            "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["AVX2", "COMPATIBLE"]
    # opting out leaves torch its own choice (whatever this CPU offers) and MKL_CBWR unset
    code = "import os, hybridrec, torch; print(os.environ.get('MKL_CBWR'))"
    out = subprocess.run([sys.executable, "-c", code], env={**env, NATIVE_SWITCH: "1"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["None"]
