"""The machine a benchmark ran on: CPU model, cores, memory, library versions."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

PACKAGES = ("torch", "timm", "onnxruntime", "ai-edge-litert", "tensorflow", "coremltools", "numpy")


def cpu_model() -> str:
    """The CPU's marketing name ('model name' in /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on (affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict:
    """Everything needed to compare two benchmark reports fairly."""
    import psutil

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": usable_cores(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def describe(info: dict) -> str:
    """One line for report headers."""
    return (f"{info['cpu']} ({info['arch']}), {info['usable_cores']} usable of {info['logical_cores']} logical cores, "
            f"{info['memory_gb']} GiB RAM, {info['os']}, load average {info.get('load_average')}")
