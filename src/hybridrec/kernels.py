"""CPU kernels that compute the same floating-point results on any x86-64 processor with AVX2.

PyTorch chooses its CPU kernels by what the processor offers: ATen's AVX-512 kernels on a CPU
with AVX-512, its AVX2 kernels on one without; MKL and oneDNN choose code paths by instruction
set (and MKL by vendor). Each path rounds differently, and training a model from scratch
amplifies a rounding difference into another trajectory: the same ``make demo`` gave other
HR@5 on an AMD EPYC with AVX-512 than on an Intel Xeon without (docs/results.md, "Across
CPUs"). Pinning each library to a code path every x86-64 CPU with AVX2 runs the same way makes
the numbers a property of the code and the data rather than of the machine, at some speed (on
an AVX-512 CPU the demo's study takes about a third longer: docs/results.md, "Setup times").

:func:`pin_cpu_kernels` sets ``ATEN_CPU_CAPABILITY=avx2``, ``MKL_CBWR=COMPATIBLE`` and
``ONEDNN_MAX_CPU_ISA=AVX2`` where each is unset. The libraries read them once, at their first
CPU kernel, so ``import hybridrec`` does it (before any torch code of hybridrec's runs); a
process that ran torch code before importing hybridrec keeps the kernels it started with.
Setting a variable yourself wins (for example ``ATEN_CPU_CAPABILITY=avx512`` for AVX-512 speed),
and ``HYBRIDREC_NATIVE_CPU_KERNELS=1`` leaves all three alone. Nothing is set on a processor
without AVX2 or that is not x86-64 (an ARM Mac has its own kernels either way).
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["NATIVE_SWITCH", "PINNED", "cpu_has_avx2", "kernel_settings", "pin_cpu_kernels"]

#: The variables pinned, and their values.
PINNED: dict[str, str] = {
    # ATen's vectorised kernels: AVX2 on every x86-64 CPU, whatever wider units it has.
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL's one branch that is the same on Intel and other vendors' CPUs (its AVX2 branch is
    # honoured on Intel CPUs only; elsewhere MKL silently keeps its automatic choice).
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
#: Set to ``1`` to keep each library's own choice of kernels (faster where AVX-512 is offered;
#: the numbers then depend on the CPU).
NATIVE_SWITCH = "HYBRIDREC_NATIVE_CPU_KERNELS"
_CPUINFO = Path("/proc/cpuinfo")


def cpu_has_avx2(cpuinfo: Path = _CPUINFO) -> bool:
    """Whether this is an x86-64 CPU whose flags include AVX2 (read from ``cpuinfo`` on Linux;
    False where it cannot be read)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return "avx2" in (_cpuinfo_field("flags", cpuinfo) or "").split()


def _cpuinfo_field(name: str, cpuinfo: Path = _CPUINFO) -> str | None:
    """The first ``name : value`` of ``cpuinfo`` (None where absent or unreadable)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[-1].strip()
    return None


def pin_cpu_kernels(environ: MutableMapping[str, str] | None = None, *,
                    has_avx2: bool | None = None) -> dict[str, str]:
    """Set each of :data:`PINNED` that ``environ`` (default ``os.environ``) does not already set,
    unless :data:`NATIVE_SWITCH` is truthy or the CPU lacks AVX2 (``has_avx2``, default
    :func:`cpu_has_avx2`). Returns the variables it set."""
    env = os.environ if environ is None else environ
    if env.get(NATIVE_SWITCH, "").strip().lower() in ("1", "true", "yes", "on"):
        return {}
    if not (cpu_has_avx2() if has_avx2 is None else has_avx2):
        return {}
    added = {key: value for key, value in PINNED.items() if key not in env}
    env.update(added)
    return added


def kernel_settings() -> dict[str, str | None]:
    """What this process computes with, for a report: the CPU's name, torch's CPU capability
    (the kernels ATen runs, e.g. ``AVX2``; None without torch) and the pinned variables as
    set."""
    out: dict[str, str | None] = {"cpu": _cpu_name()}
    try:
        import torch

        out["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    except ImportError:  # pragma: no cover - torch is a dependency
        out["torch_cpu_capability"] = None
    out.update({key: os.environ.get(key) for key in PINNED})
    return out


def _cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()
