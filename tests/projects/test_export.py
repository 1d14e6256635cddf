"""Exports hold accepted clips only, in the layouts other tools read."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from engines import audio as audio_io
from projects import export, review
from projects.errors import BadInput
from tests.projects.test_review import ROOT_DIR, add_clip, add_speaker
from tests.speech import speak


@pytest.fixture
def reviewed(store, ws, project):
    """Speaker "Anna Lee": 2 accepted clips (one with a number), 1 rejected; "Bob": 1 accepted."""
    anna, bob = add_speaker(store, project, "Anna Lee"), add_speaker(store, project, "Bob")
    texts = ["The market opens at 9 in the morning.", "Please close the window.", "Rejected."]
    ids = [add_clip(store, ws, project, anna, speak(t, 0)[0], t) for t in texts]
    review.set_review(store, ids[:2], "accepted")
    review.set_review(store, ids[2:], "rejected")
    bob_clip = add_clip(store, ws, project, bob, speak("He forgot his keys.", 2)[0],
                        "He forgot his keys.")
    review.set_review(store, [bob_clip], "accepted")
    return anna, bob


def test_ljspeech_layout_with_normalized_text_and_zip(store, ws, project, reviewed):
    result = export.export_speaker(store, ws, project, "anna lee", "ljspeech")
    folder = ws.project_dir(project.slug) / "exports" / "anna-lee-ljspeech"
    assert result.folder == str(folder) and result.clips == 2
    lines = (folder / "metadata.csv").read_text().splitlines()
    assert lines[0].split("|")[:2] == ["anna_lee_00001", "The market opens at 9 in the morning."]
    assert "nine" in lines[0].split("|")[2]  # the normalized column spells numbers out
    wavs = sorted(p.name for p in (folder / "wavs").iterdir())
    assert wavs == ["anna_lee_00001.wav", "anna_lee_00002.wav"]
    audio, sr = audio_io.read_wav(folder / "wavs" / wavs[0])
    assert sr == project.sample_rate and len(audio) > sr
    assert result.sample_rate == project.sample_rate and result.minutes > 0
    with zipfile.ZipFile(result.zip_path) as z:
        assert {"metadata.csv", "wavs/anna_lee_00002.wav"} <= set(z.namelist())


def test_vits_rvc_and_multi_speaker_filelists(store, ws, project, reviewed, tmp_path):
    anna, bob = reviewed
    vits = export.export_speaker(store, ws, project, anna, "vits", out=tmp_path / "v")
    assert (tmp_path / "v" / "filelist.txt").read_text().splitlines() == [
        "wavs/anna_lee_00001.wav|The market opens at 9 in the morning.",
        "wavs/anna_lee_00002.wav|Please close the window."]
    assert vits.zip_path.endswith("v.zip")
    rvc = export.export_speaker(store, ws, project, "Bob", "rvc", out=tmp_path / "r",
                                make_zip=False)
    assert rvc.clips == 1 and rvc.zip_path is None
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["wavs"]
    multi = export.export_speakers(store, ws, project, [anna, bob], "multi", out=tmp_path / "m")
    lines = (tmp_path / "m" / "filelist.txt").read_text().splitlines()
    assert lines[-1] == "wavs/bob_00001.wav|1|He forgot his keys."
    assert (tmp_path / "m" / "speakers.txt").read_text().splitlines() == ["0|Anna Lee", "1|Bob"]
    assert multi.clips == 3


def test_export_refuses_nothing_accepted_and_bad_format(store, ws, project, reviewed):
    empty = review.create_speaker(store, project.id, "Nobody")
    with pytest.raises(BadInput, match="No accepted clips"):
        export.export_speaker(store, ws, project, empty, "vits")
    with pytest.raises(BadInput, match="format"):
        export.export_speaker(store, ws, project, "Bob", "mp3")


def test_cli_dataset_export(store, ws, project, reviewed, tmp_path):
    out = tmp_path / "cli-out"
    done = subprocess.run(
        [sys.executable, str(ROOT_DIR / "launch.py"), "--workspace", str(ws.root), "dataset",
         "export", "--project", project.name, "--speaker", "Anna Lee", "--format", "ljspeech",
         "--out", str(out)], capture_output=True, text=True, cwd=ROOT_DIR, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 clips" in done.stdout
    assert len((out / "metadata.csv").read_text().splitlines()) == 2
    bad = subprocess.run(
        [sys.executable, str(ROOT_DIR / "launch.py"), "--workspace", str(ws.root), "dataset",
         "export", "--project", project.name, "--speaker", "Nobody", "--format", "vits",
         "--out", str(out)], capture_output=True, text=True, cwd=ROOT_DIR, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: No speaker")
