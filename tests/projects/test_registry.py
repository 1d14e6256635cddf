"""The model registry: installed detection, download with checksum, offline failure, import."""
import hashlib
import http.server
import json
import threading
from functools import partial

import pytest

from projects.errors import BadInput, ModelMissing
from projects.registry import Registry

PAYLOAD = b"weights" * 1000


def manifest(tmp_path, url, sha=hashlib.sha256(PAYLOAD).hexdigest()):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"version": 1, "models": [
        {"id": "demo", "task": "asr", "title": "Demo model", "licence": "MIT",
         "source": "https://example.invalid/demo",
         "files": [{"name": "model.bin", "url": url, "size": len(PAYLOAD), "sha256": sha}]},
        {"id": "embedded", "task": "vad", "title": "Embedded", "licence": "MIT",
         "source": "pip", "package": "silero_vad", "package_path": "data/silero_vad.onnx"},
        {"id": "gone", "task": "vad", "title": "Gone", "licence": "MIT", "source": "pip",
         "package": "no_such_package_here"},
    ]}))
    return path


@pytest.fixture
def server(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "model.bin").write_bytes(PAYLOAD)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "srv"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_bundled_defaults_are_installed():
    reg = Registry()
    for model_id in ("silero-vad", "whisper-tiny.en", "resemblyzer", "piper-en_US-joe-medium"):
        assert reg.is_installed(model_id), model_id
        assert reg.path(model_id).exists()


def test_missing_package_model_says_how_to_get_it(tmp_path):
    reg = Registry([manifest(tmp_path, "http://x")], models_dir=tmp_path / "models")
    assert reg.is_installed("embedded")
    assert not reg.is_installed("gone")
    with pytest.raises(ModelMissing, match="launch.py"):
        reg.path("gone")


def test_download_verifies_checksum_and_installs(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_STUDIO_OFFLINE", "0")
    reg = Registry([manifest(tmp_path, f"{server}/model.bin")], models_dir=tmp_path / "models")
    seen = []
    folder = reg.download("demo", progress=lambda f, m: seen.append(f))
    assert (folder / "model.bin").read_bytes() == PAYLOAD
    assert reg.is_installed("demo") and seen[-1] == 1.0


def test_checksum_mismatch_installs_nothing(tmp_path, server, monkeypatch):
    monkeypatch.setenv("VOICE_STUDIO_OFFLINE", "0")
    reg = Registry([manifest(tmp_path, f"{server}/model.bin", sha="0" * 64)],
                   models_dir=tmp_path / "models")
    with pytest.raises(BadInput, match="checksum"):
        reg.download("demo")
    assert not reg.is_installed("demo")
    assert not list((tmp_path / "models" / "demo").glob("*")), "no partial file left behind"


def test_offline_download_fails_at_once_naming_file_source_and_place(tmp_path):
    reg = Registry([manifest(tmp_path, "https://example.invalid/model.bin")],
                   models_dir=tmp_path / "models")
    with pytest.raises(ModelMissing) as err:
        reg.download("demo")
    text = str(err.value)
    assert "model.bin" in text and "example.invalid" in text and str(tmp_path / "models") in text


def test_import_checks_the_file(tmp_path):
    reg = Registry([manifest(tmp_path, "http://x")], models_dir=tmp_path / "models")
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"not the weights")
    with pytest.raises(BadInput):
        reg.import_files("demo", [bad])
    bad.write_bytes(PAYLOAD)
    reg.import_files("demo", [bad])
    assert reg.is_installed("demo")
