"""Dataset build on real generated speech: speakers found, transcripts right, clips cut
between words, instant re-clustering, resume, bad input and ready-clip import.

One three-speaker conversation (about 30 s) is built once, through the CLI's
code path, and shared by the read-only tests.
"""
from __future__ import annotations

import time
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import adjusted_rand_score

from engines import asr, segment, speaker
from projects import dataset, jobs, sources
from projects.errors import BadInput, ModelMissing, NoGPU
from projects.store import Store, loads
from projects.workspace import Workspace
from tests import speech

RATE = speech.RATE


def _write(path, audio, rate=RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def _clips(store, project_id=None):
    sql = "SELECT * FROM clips" + (" WHERE project_id = ?" if project_id else "") + \
          " ORDER BY source_id, start_s, id"
    return store.all(sql, [project_id] if project_id else [])


def _turn_of(clip, truth) -> int:
    overlaps = [min(clip["end_s"], t.end_s) - max(clip["start_s"], t.start_s) for t in truth]
    return int(np.argmax(overlaps))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A conversation of three speakers, built with `launch.py dataset build`."""
    import launch

    root = tmp_path_factory.mktemp("dataset")
    turns = [(i % 3, text) for i, text in enumerate(speech.SENTENCES[:9])]
    audio, rate, truth = speech.conversation(turns, gap_s=0.8)
    wav = _write(root / "talk.wav", audio, rate)
    code = launch.main(["--workspace", str(root / "ws"), "dataset", "build",
                        "--project", "Talk", str(wav)])
    assert code == 0
    ws = Workspace.open(root / "ws")
    store = Store(ws.db_path)
    project = store.one("SELECT * FROM projects WHERE name = 'Talk'")
    return SimpleNamespace(ws=ws, store=store, project=project, truth=truth, audio=audio,
                           wav=wav, root=root)


@pytest.fixture
def no_models(monkeypatch):
    """Whisper and the speaker encoder fail if anything tries to run them."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a model ran where none should")

    monkeypatch.setattr(asr, "make_transcriber", refuse)
    monkeypatch.setattr(speaker.SpeakerEncoder, "embed", refuse)
    return calls


# --------------------------------------------------------------------------- the main build

def test_each_speaker_becomes_its_own_cluster(built):
    clips = _clips(built.store)
    true = [built.truth[_turn_of(c, built.truth)].speaker for c in clips]
    found = [c["speaker_id"] for c in clips]
    assert len(clips) == len(built.truth)
    assert len(set(true)) == 3 and len(set(found)) == 3
    assert adjusted_rand_score(true, found) >= 0.9
    speakers = built.store.all("SELECT * FROM speakers")
    assert {s["origin"] for s in speakers} == {"cluster"}
    assert sorted(s["name"] for s in speakers) == ["Speaker 1", "Speaker 2", "Speaker 3"]


def test_transcripts_match_the_script(built):
    clips = _clips(built.store)
    heard = " ".join(c["text"] for c in clips)
    assert speech.wer(" ".join(t.text for t in built.truth), heard) <= 0.12
    for clip in clips:
        words = loads(clip["words"])
        assert clip["text"] == " ".join(w["word"] for w in words)
        assert all(0 <= w["start"] <= w["end"] <= clip["duration_s"] + 1e-3 for w in words)


def test_clip_edges_fall_in_pauses_and_files_follow_conventions(built):
    levels = segment.frame_levels(built.audio, RATE // 100)
    for clip in _clips(built.store):
        for edge in (clip["start_s"], clip["end_s"]):
            frame = min(int(edge * 100), len(levels) - 1)
            near = levels[max(0, frame - 50):frame + 50].max()
            assert levels[frame] < near - 20, f"edge at {edge:.2f} s is inside speech"
        info = sf.info(built.ws.resolve(clip["path"]))
        assert info.samplerate == 22050 and info.subtype == "PCM_16" and info.channels == 1
        assert abs(info.duration - clip["duration_s"]) < 0.01
        assert abs(info.duration - (clip["end_s"] - clip["start_s"])) < 0.01
        vector = np.frombuffer(clip["embedding"], dtype="<f4")
        assert vector.shape == (256,) and abs(np.linalg.norm(vector) - 1) < 1e-4
        measures = loads(clip["quality"])
        assert measures["snr_db"] > 20 and 60 < measures["pitch_hz"] < 300
        assert loads(clip["flags"]) == []


def test_summary_reports_speakers_minutes_and_pitch(built):
    summary = dataset.dataset_summary(built.store, "Talk")
    assert summary["clips"] == 9 and len(summary["speakers"]) == 3
    assert summary["hours_in"] == pytest.approx(len(built.audio) / RATE / 3600, rel=0.01)
    for s in summary["speakers"]:
        assert s["usable_minutes"] > 0.1 and s["pitch_range_hz"][0] <= s["pitch_hz"]
    text = dataset.format_summary(summary)
    assert "9 clips" in text and "3 speaker(s)" in text and "Speaker 1" in text
    assert summary["seconds"] > 0 and summary["stage_seconds"]["asr"] > 0


def test_recluster_regroups_instantly_without_running_models(built, no_models, capsys):
    import launch

    store, ws = built.store, built.ws
    started = time.perf_counter()
    loose = dataset.recluster(store, ws, "Talk", 0.2)
    strict = dataset.recluster(store, ws, "Talk", 0.98)
    assert time.perf_counter() - started < 1.0
    assert loose["speakers"] == 1 and strict["speakers"] > 3
    # The CLI takes the same path; back at the default the three voices return.
    assert launch.main(["--workspace", str(ws.root), "dataset", "recluster", "--project",
                        "Talk", "--threshold", "0.7"]) == 0
    assert "3 speaker(s)" in capsys.readouterr().out
    assert not no_models


def test_recluster_leaves_user_speakers_alone(built, no_models):
    store, ws = built.store, built.ws
    clip = _clips(store)[0]
    sid = store.db["speakers"].insert({"project_id": built.project["id"], "name": "Narrator",
                                       "origin": "user", "created_at": 0}).last_pk
    store.db["clips"].update(clip["id"], {"speaker_id": sid})
    try:
        result = dataset.recluster(store, ws, "Talk", 0.2)
        assert result["clips"] == 8
        assert store.one("SELECT speaker_id FROM clips WHERE id = ?", [clip["id"]])["speaker_id"] == sid
        assert store.one("SELECT name FROM speakers WHERE id = ?", [sid])["name"] == "Narrator"
    finally:
        store.db["clips"].update(clip["id"], {"speaker_id": None})
        store.db.execute("DELETE FROM speakers WHERE id = ?", [sid])
        store.db.conn.commit()
        dataset.recluster(store, ws, "Talk", 0.7)


def test_rebuilding_the_same_file_adds_nothing(built, no_models):
    store, ws = built.store, built.ws
    before = [(c["id"], c["path"]) for c in _clips(store)]
    job, problems = dataset.start_build(store, ws, "Talk", [(built.wav, None)])
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done", final.error
    assert problems == [] and len(sources.list_sources(store, built.project["id"])) == 1
    assert [(c["id"], c["path"]) for c in _clips(store)] == before


# --------------------------------------------------------------------------- resume and failures

def test_resume_after_cancel_does_not_redo_finished_sources(store, ws, project, tmp_path,
                                                            monkeypatch):
    first = _write(tmp_path / "a.wav", speech.conversation([(0, speech.SENTENCES[0])])[0])
    second = _write(tmp_path / "b.wav", speech.conversation([(1, speech.SENTENCES[1])])[0])
    # Stop the job as soon as one recording is finished (deterministic "user cancels").
    monkeypatch.setattr(jobs.JobContext, "should_cancel",
                        lambda self: len(self.state.get("done_sources", [])) >= 1)
    job, _ = dataset.start_build(store, ws, project.name, [(first, None), (second, None)])
    assert jobs.run_job(store, ws, job.id).status == "cancelled"
    statuses = [s.status for s in sources.list_sources(store, project.id)]
    assert statuses == ["built", "new"]
    kept = _clips(store)
    monkeypatch.undo()

    transcribed = []
    real_stage = dataset._speech_stage
    monkeypatch.setattr(dataset, "_speech_stage",
                        lambda run, source, *a: transcribed.append(source.name) or
                        real_stage(run, source, *a))
    jobs.resume(store, job.id)
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done", final.error
    assert transcribed == ["b.wav"]
    after = _clips(store)
    assert [c["id"] for c in after[:len(kept)]] == [c["id"] for c in kept]
    assert {c["source_id"] for c in after} == {s.id for s in sources.list_sources(store, project.id)}


def test_bad_files_get_a_reason_and_the_rest_is_built(store, ws, project, tmp_path):
    inputs = tmp_path / "in"
    good = _write(inputs / "Zoë – интервью.wav",
                  speech.conversation([(0, speech.SENTENCES[3])])[0])
    corrupt = inputs / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 20)
    empty = inputs / "empty.wav"
    empty.write_bytes(b"")
    silent = _write(inputs / "silent.wav", np.zeros(RATE * 3, np.float32))
    music = _write(inputs / "music.wav", speech.music(5.0))
    text = inputs / "notes.txt"
    text.write_text("not audio at all")
    files = [(p, None) for p in (corrupt, empty, silent, music, good, text)]
    job, problems = dataset.start_build(store, ws, project.name, files)
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done", final.error
    by_name = {s.name: s for s in sources.list_sources(store, project.id)}
    expected = {"corrupt.wav": ("failed", "corrupt"), "empty.wav": ("failed", "empty"),
                "silent.wav": ("no_speech", "silent"), "music.wav": ("no_speech", "music"),
                "notes.txt": ("failed", "unsupported format")}
    for name, (status, words) in expected.items():
        assert by_name[name].status == status and words in by_name[name].error, by_name[name]
        assert name in final.result["failures"]
    assert by_name["Zoë – интервью.wav"].status == "built"
    clips = _clips(store)
    assert len(clips) == 1 and speech.wer(speech.SENTENCES[3], clips[0]["text"]) <= 0.2
    assert clips[0]["speaker_id"] is not None


def test_bad_parameters_and_missing_models_fail_before_queuing(store, ws, project, tone):
    path = tone("a.wav")
    with pytest.raises(BadInput, match="speech_prob"):
        dataset.start_build(store, ws, project.name, [(path, None)],
                            dataset.BuildConfig(speech_prob=1.5))
    with pytest.raises(BadInput, match="min_seconds"):
        dataset.start_build(store, ws, project.name, [(path, None)],
                            dataset.BuildConfig(min_seconds=8, max_seconds=4))
    with pytest.raises(ModelMissing, match="whisper-small.en|Whisper small"):
        dataset.start_build(store, ws, project.name, [(path, None)],
                            dataset.BuildConfig(model="whisper-small.en"))
    with pytest.raises(ModelMissing, match="openai-whisper"):
        dataset.start_build(store, ws, project.name, [(path, None)],
                            dataset.BuildConfig(backend="openai-whisper"))
    if not asr.cuda_available():
        with pytest.raises(NoGPU):
            dataset.start_build(store, ws, project.name, [(path, None)],
                                dataset.BuildConfig(device="cuda"))
    assert store.one("SELECT COUNT(*) AS n FROM jobs")["n"] == 0


# --------------------------------------------------------------------------- clip sets, windows

def test_ljspeech_zip_is_imported_without_transcription(store, ws, project, tmp_path, monkeypatch):
    monkeypatch.setattr(asr, "make_transcriber",
                        lambda *a, **k: pytest.fail("transcripts came with the clips"))
    archive = tmp_path / "clips.zip"
    lines = []
    with zipfile.ZipFile(archive, "w") as z:
        for n, (who, text) in enumerate([(0, speech.SENTENCES[4]), (2, speech.SENTENCES[5]),
                                         (0, speech.SENTENCES[6])]):
            wav = _write(tmp_path / f"LJ{n}.wav", speech.speak(text, who)[0])
            z.write(wav, f"wavs/LJ{n}.wav")
            lines.append(f"LJ{n}|{text}|{text}")
        z.writestr("metadata.csv", "\n".join(lines) + "\n")
    for _ in range(2):  # a second import of the same zip adds nothing
        job, _ = dataset.start_build(store, ws, project.name, [(archive, None)])
        final = jobs.run_job(store, ws, job.id)
        assert final.status == "done", final.error
    clips = store.all("SELECT * FROM clips ORDER BY id")
    assert [c["text"] for c in clips] == list(speech.SENTENCES[4:7])
    assert all(c["source_id"] is None and c["embedding"] for c in clips)
    assert clips[0]["speaker_id"] == clips[2]["speaker_id"] != clips[1]["speaker_id"]


def test_uploaded_folder_of_clips_is_gathered_and_imported(store, ws, project, tmp_path,
                                                           monkeypatch):
    """A browser sends a folder's files one by one, each in its own temporary folder."""
    monkeypatch.setattr(asr, "make_transcriber",
                        lambda *a, **k: pytest.fail("transcripts came with the clips"))
    uploads, lines = [], []
    for n, (who, text) in enumerate([(1, speech.SENTENCES[1]), (1, speech.SENTENCES[2])]):
        (tmp_path / f"u{n}").mkdir()
        uploads.append(_write(tmp_path / f"u{n}" / f"take{n}.wav", speech.speak(text, who)[0]))
        lines.append(f"take{n}|{text}")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "metadata.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a clip")
    uploads += [tmp_path / "meta" / "metadata.csv", tmp_path / "junk" / "notes.txt"]
    with sources.staged_clip_folder(ws, uploads) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["metadata.csv", "take0.wav",
                                                            "take1.wav"]
        job, problems = dataset.start_build(store, ws, project.name, [(folder, "folder")])
    assert not problems and not folder.exists(), "the staging folder is cleaned up"
    assert jobs.run_job(store, ws, job.id).status == "done"
    texts = [c["text"] for c in store.all("SELECT text FROM clips ORDER BY id")]
    assert texts == list(speech.SENTENCES[1:3])
    with pytest.raises(BadInput, match="no audio clips"):
        with sources.staged_clip_folder(ws, [tmp_path / "junk" / "notes.txt"]):
            pass


def test_long_files_stream_in_windows_cut_in_silence(tmp_path):
    turns = [(i % 3, t) for i, t in enumerate(speech.SENTENCES)]  # about 40 s
    audio, rate, _ = speech.conversation(turns, gap_s=0.6)
    path = _write(tmp_path / "long.wav", audio)
    windows = list(dataset.iter_windows(path, 22050, window_s=30.0))
    assert len(windows) >= 2
    assert windows[0].start_s == 0
    levels = segment.frame_levels(audio, RATE // 100)
    for before, after in zip(windows, windows[1:]):
        assert after.start_s == pytest.approx(before.end_s)
        frame = int(before.end_s * 100)
        assert levels[frame] < levels[max(0, frame - 50):frame + 50].max() - 20
    for w in windows:
        assert abs(len(w.audio) / 22050 - len(w.audio16) / RATE) < 0.05
        assert w.end_s - w.start_s <= 60.0
    assert sum(len(w.audio16) for w in windows) == pytest.approx(len(audio), abs=RATE * 0.05)
