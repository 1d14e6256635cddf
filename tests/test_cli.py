"""The CLI: same projects functions as the UI, one-line errors with exit code 2."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(workspace, *args, timeout=180):
    env = {**os.environ, "VOICE_STUDIO_NO_VENV": "1"}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), "--workspace", str(workspace),
                           *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_lists_the_subcommands(tmp_path):
    out = cli(tmp_path, "--help")
    assert out.returncode == 0
    for word in ("test", "doctor", "project", "job", "models", "sources", "--listen", "--auth"):
        assert word in out.stdout


def test_project_and_sources_flow(tmp_path, tone):
    ws = tmp_path / "ws"
    assert cli(ws, "project", "create", "Podcast").returncode == 0
    dup = cli(ws, "project", "create", "podcast")
    assert dup.returncode == 2 and dup.stderr.startswith("error: ") and "Traceback" not in dup.stderr

    wav = tone("episode.wav", seconds=2.0)
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    added = cli(ws, "sources", "add", "--project", "Podcast", str(wav), str(bad))
    assert added.returncode == 0, added.stderr
    assert "done" in added.stdout and "failed: notes.txt" in added.stderr

    listed = cli(ws, "sources", "list", "--project", "Podcast")
    assert "episode.wav" in listed.stdout and "LUFS" in listed.stdout
    jobs = cli(ws, "job", "list")
    assert "done" in jobs.stdout and "Analyse" in jobs.stdout

    refused = cli(ws, "project", "delete", "Podcast")  # no tty, no --yes: kept
    assert refused.returncode == 1
    assert cli(ws, "project", "delete", "Podcast", "--yes").returncode == 0
    assert "No projects" in cli(ws, "project", "list").stdout


def test_models_list_and_offline_download(tmp_path):
    listed = cli(tmp_path, "models")
    assert "installed" in listed.stdout and "whisper-tiny.en" in listed.stdout
    unknown = cli(tmp_path, "models", "download", "no-such-model")
    assert unknown.returncode == 2 and "No model" in unknown.stderr


def test_doctor_reports_without_network(tmp_path):
    out = cli(tmp_path, "doctor")
    assert out.returncode == 0, out.stdout
    for word in ("Python", "PyTorch", "GPU", "espeak-ng", "ffmpeg", "disk", "workspace"):
        assert word in out.stdout


def test_listen_without_auth_refuses_to_start(tmp_path):
    out = cli(tmp_path, "--listen", "--no-browser", timeout=60)
    assert out.returncode == 2 and "--auth" in out.stderr
