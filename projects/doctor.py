"""A health check of this machine for the studio, with one-line fixes. No network."""
from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from projects.registry import Registry
from projects.workspace import Workspace

LOW_DISK_GB = 10.0


@dataclass(frozen=True)
class Check:
    """One line of the report; ``level`` is ok, warn or fail."""

    name: str
    level: str
    detail: str
    fix: str = ""


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("Python", "ok" if ok else "fail", platform.python_version(),
                 "" if ok else "Install Python 3.11 or newer.")


def check_torch() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("PyTorch", "fail", "not installed", "Run `python3 launch.py` to install.")]
    checks = [Check("PyTorch", "ok", f"{torch.__version__}")]
    if not torch.cuda.is_available():
        built = "CUDA build" if torch.version.cuda else "CPU-only build"
        checks.append(Check("GPU", "warn", f"none visible to torch ({built})",
                            "Training runs on CPU, very slowly; install an NVIDIA driver for GPU."))
        return checks
    arches = set(torch.cuda.get_arch_list())
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        arch = f"sm_{props.major}{props.minor}"
        supported = arch in arches or any(a.startswith("compute_") for a in arches)
        detail = f"#{i} {props.name}, {props.total_memory / 2**30:.1f} GiB, {arch}"
        checks.append(Check(f"GPU {i}", "ok" if supported else "fail", detail,
                            "" if supported else f"This torch build lacks {arch}; install a "
                            "torch wheel built for your GPU."))
    return checks


def check_espeak() -> Check:
    try:
        import espeakng_loader

        lib = espeakng_loader.get_library_path()
        ctypes.cdll.LoadLibrary(lib)
        data = espeakng_loader.get_data_path()
    except Exception as err:  # any failure here means phonemization cannot work
        return Check("espeak-ng", "fail", f"not usable ({err})",
                     "Run `python3 launch.py` to reinstall requirements (espeakng-loader).")
    return Check("espeak-ng", "ok", f"{Path(lib).name}, data in {data}")


def check_ffmpeg() -> Check:
    try:
        from engines.audio import ffmpeg_exe

        exe = ffmpeg_exe()  # the very binary every decode uses
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20)
        version = out.stdout.split("\n")[0]
    except Exception as err:
        return Check("ffmpeg", "fail", f"not usable ({err})",
                     "Run `python3 launch.py` to reinstall requirements (imageio-ffmpeg).")
    return Check("ffmpeg", "ok", version)


def check_models(registry: Registry) -> list[Check]:
    checks = []
    for row in registry.status():
        entry = registry.get(row["id"])
        if row["installed"]:
            checks.append(Check(f"model {row['id']}", "ok", row["title"]))
        elif entry.package:
            checks.append(Check(f"model {row['id']}", "fail", "missing",
                                "Run `python3 launch.py` to reinstall requirements."))
    missing = [r["id"] for r in registry.status() if not r["installed"] and not
               registry.get(r["id"]).package]
    if missing:
        checks.append(Check("optional models", "ok", f"{len(missing)} available to download",
                            "See `python3 launch.py models`."))
    return checks


def check_workspace(ws: Workspace) -> list[Check]:
    free_gb = shutil.disk_usage(ws.root).free / 1e9
    disk = Check("disk", "ok" if free_gb >= LOW_DISK_GB else "warn",
                 f"{free_gb:.1f} GB free in {ws.root}",
                 "" if free_gb >= LOW_DISK_GB else "Free some space: training and audio need "
                 f"at least {LOW_DISK_GB:.0f} GB.")
    try:
        with tempfile.NamedTemporaryFile(dir=ws.root):
            pass
        writable = Check("workspace", "ok", f"{ws.root} is writable")
    except OSError as err:
        writable = Check("workspace", "fail", f"{ws.root} is not writable ({err.strerror})",
                         "Choose another folder with --workspace.")
    return [disk, writable]


def run_doctor(ws: Workspace, registry: Registry | None = None) -> list[Check]:
    """Every check, in the order a user would fix them."""
    registry = registry or Registry()
    return [check_python(), *check_torch(), check_espeak(), check_ffmpeg(),
            *check_models(registry), *check_workspace(ws)]


def as_rows(checks: list[Check]) -> list[dict]:
    """The report as dicts (for tables and JSON)."""
    return [asdict(c) for c in checks]
