"""Shared fixtures. Tests run offline, on CPU, in throwaway workspaces."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Set before any project module is imported: no downloads, test-only job kinds,
# and a models folder that starts empty.
os.environ["VOICE_STUDIO_OFFLINE"] = "1"
os.environ["VOICE_STUDIO_JOB_MODULES"] = "tests.jobkinds"
os.environ.setdefault("VOICE_STUDIO_MODELS", tempfile.mkdtemp(prefix="vs-models-"))
os.environ["VOICE_STUDIO_NO_VENV"] = "1"
os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")


@pytest.fixture
def ws(tmp_path):
    from projects.workspace import Workspace

    return Workspace.open(tmp_path / "workspace")


@pytest.fixture
def store(ws):
    from projects.store import Store

    s = Store(ws.db_path)
    yield s
    s.close()


@pytest.fixture
def project(store, ws):
    from projects.projects import create_project

    return create_project(store, ws, "Test project")


def write_tone(path: Path, seconds: float = 2.0, sr: int = 22050, freq: float = 220.0,
               amplitude: float = 0.3) -> Path:
    """A voiced-like harmonic tone with a slow tremolo, as 16-bit WAV."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    wave *= (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    wave = amplitude * wave / np.max(np.abs(wave))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
    return path


@pytest.fixture
def tone(tmp_path):
    return lambda name="tone.wav", **kw: write_tone(tmp_path / "inputs" / name, **kw)
