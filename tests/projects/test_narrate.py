"""Narration end to end with the bundled voice: files, chapter marks, norms, cache, back-check."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from engines import audio, encode, mastering
from engines.text import normalize
from projects import books, jobs, narrate
from projects.errors import BadInput, NotFound

BOOK = """The Two Bells

Chapter 1

The old bell rang at noon. Children ran out of the school.

A baker closed his door for lunch.

Chapter 2

At night the second bell was quiet. The town went to sleep.
"""

FRENCH = """Le Petit Livre

Chapitre 1

Il était une fois une petite maison dans la forêt. Elle était vieille et le toit
était rouge. Les enfants de la ville ne venaient pas dans la forêt, parce que la
nuit il y avait des loups et des renards dans les arbres. Mais un jour, une fille
est venue avec son chien et elle a ouvert la porte de la maison.
"""


@pytest.fixture
def book(store, ws, project, tmp_path):
    (tmp_path / "bells.txt").write_text(BOOK)
    return books.import_book(store, ws, project, tmp_path / "bells.txt")


def run(store, ws, book_id, **settings):
    job = narrate.start_narration(store, ws, book_id, narrate.NarrationSettings(**settings))
    return jobs.run_job(store, ws, job.id)


def chapter_wer(ws, chapter) -> float:
    audio, sr = sf.read(ws.resolve(chapter.audio_path), dtype="float32")
    heard = normalize(narrate.BackChecker("en-us").heard(audio, sr), "en-us")
    return narrate.word_error_rate(normalize(chapter.text, "en-us"), heard)


def test_narrate_two_chapters_then_only_the_edited_sentence_again(store, ws, book):
    done = run(store, ws, book.id, back_check=True)
    assert done.status == "done", done.error
    result = done.result
    assert (result["synthesized"], result["cached"], result["flagged"]) == (5, 0, 0)

    files = [ws.resolve(p) for p in result["files"]]
    assert [f.name for f in files] == ["01 - Chapter 1.mp3", "02 - Chapter 2.mp3"]
    info = encode.probe_output(files[0])
    assert (info.codec, info.sample_rate, info.bitrate_kbps) == ("mp3", 44100, 192)

    chapters = books.list_chapters(store, book.id)
    lengths = [sf.info(ws.resolve(c.audio_path)).duration for c in chapters]
    marks = encode.read_chapters(ws.resolve(result["m4b"]))
    assert [m[0] for m in marks] == ["Chapter 1", "Chapter 2"]
    assert marks[0][1] == 0 and marks[1][1] == pytest.approx(lengths[0], abs=0.05)
    assert marks[1][2] == pytest.approx(sum(lengths), abs=0.05)

    for c, mp3 in zip(chapters, files):
        published = mastering.measure(audio.load(mp3, 44100), 44100)  # what listeners get
        assert -23 <= published.rms_db <= -18 and published.true_peak_db <= -3, published
        assert published.noise_floor_db < -60
        assert c.report["problems"] == []
        assert chapter_wer(ws, c) < 0.10
    statuses = {s.status for c in chapters for s in books.list_sentences(store, c.id)}
    assert statuses == {"ok"}
    assert jobs.metrics(store, done.id, ["narrate/rtf"])["narrate/rtf"][-1][1] > 0

    sentence = books.list_sentences(store, chapters[0].id)[1]
    assert sentence.text == "Children ran out of the school."
    books.edit_sentence(store, sentence.id, "Children walked out of the school.")
    again = run(store, ws, book.id, back_check=True).result
    assert (again["synthesized"], again["cached"]) == (1, 4)
    assert len(encode.read_chapters(ws.resolve(again["m4b"]))) == 2
    # Chapter 2 did not change: its mastered file was kept as it was.
    assert books.get_chapter(store, chapters[1].id).audio_key == chapters[1].audio_key


def test_cancel_then_resume_synthesizes_only_what_is_missing(store, ws, book, monkeypatch):
    monkeypatch.setattr(narrate, "SYNTH_BATCH", 2)
    original = narrate.SentenceSynth.synthesize
    calls = []

    def synthesize_then_cancel(self, voice, sentences, should_cancel):
        original(self, voice, sentences, should_cancel)
        calls.append(len(sentences))
        if len(calls) == 1:
            store.db["jobs"].update(job.id, {"cancel_requested": 1})
            import time
            time.sleep(narrate_poll())

    monkeypatch.setattr(narrate.SentenceSynth, "synthesize", synthesize_then_cancel)
    job = narrate.start_narration(store, ws, book.id,
                                  narrate.NarrationSettings(back_check=False, make_m4b=False))
    assert jobs.run_job(store, ws, job.id).status == "cancelled"
    monkeypatch.setattr(narrate.SentenceSynth, "synthesize", original)
    final = jobs.run_job(store, ws, job.id)
    assert final.status == "done"
    assert (final.result["synthesized"], final.result["cached"]) == (3, 2)


def narrate_poll() -> float:
    return jobs.CANCEL_POLL_S + 0.1


def test_back_check_retries_then_flags_and_the_user_accepts(store, ws, book, monkeypatch):
    scored = []

    def fake_score(self, audio, sr, normalized):
        scored.append(normalized)
        garbled = "baker" in normalized
        return (0.8, 5, "mumble") if garbled else (0.0, 0, normalized)

    monkeypatch.setattr(narrate.BackChecker, "score", fake_score)
    result = run(store, ws, book.id, back_check=True, chapter_format="none").result
    assert result["flagged"] == 1
    assert sum("baker" in s for s in scored) == 1 + len(narrate.RETRY_NOISE)
    flagged = narrate.flagged_sentences(store, book.id)
    assert [f["text"] for f in flagged] == ["A baker closed his door for lunch."]
    assert narrate.sentence_audio(store, ws, flagged[0]["id"]).is_file()

    narrate.accept_sentence(store, ws, flagged[0]["id"])
    assert narrate.flagged_sentences(store, book.id) == []
    again = run(store, ws, book.id, back_check=True, chapter_format="none").result
    assert (again["synthesized"], again["flagged"]) == (0, 0)  # acceptance is remembered


def test_preview_reads_with_the_lexicon_and_fills_the_cache(store, ws, project, book):
    books.set_lexicon_entry(store, project.id, "bell", "gong")
    pairs = narrate.reading_preview(store, ws, project.id, "The bell rang 3 times.")
    assert pairs == [("The bell rang 3 times.", "The gong rang three times.")]
    paragraph = books.list_chapters(store, book.id)[1].paragraphs()[0]
    wav, read = narrate.preview_paragraph(store, ws, book.id, paragraph,
                                          narrate.NarrationSettings(back_check=False))
    audio, sr = sf.read(wav)
    assert sr == 22050 and 2.0 < len(audio) / sr < 10.0 and np.abs(audio).max() > 0.05
    assert [r[1] for r in read] == ["At night the second gong was quiet.", "The town went to sleep."]
    result = run(store, ws, book.id, back_check=False, chapter_format="none").result
    assert (result["synthesized"], result["cached"]) == (3, 2)


def test_bad_inputs_get_clear_messages(store, ws, project, book, tmp_path):
    (tmp_path / "livre.txt").write_text(FRENCH)
    french = books.import_book(store, ws, project, tmp_path / "livre.txt")
    with pytest.raises(BadInput, match="in 'fr'.*speaks 'en-us'"):
        narrate.start_narration(store, ws, french.id)
    (tmp_path / "de.md").write_text("---\ntitle: Buch\nlang: de\n---\n\n# Eins\n\nHallo Welt.\n")
    german = books.import_book(store, ws, project, tmp_path / "de.md")
    with pytest.raises(BadInput, match="in 'de'"):
        narrate.start_narration(store, ws, german.id)
    with pytest.raises(BadInput, match="Choose a voice"):
        narrate.start_narration(store, ws, book.id, narrate.NarrationSettings(voice=""))
    with pytest.raises(NotFound, match="No voice"):
        narrate.start_narration(store, ws, book.id, narrate.NarrationSettings(voice="nobody"))
    with pytest.raises(BadInput, match="RVC"):
        narrate.start_narration(store, ws, book.id, narrate.NarrationSettings(rvc_voice="x"))
    for c in books.list_chapters(store, book.id):
        books.set_chapter_included(store, c.id, False)
    with pytest.raises(BadInput, match="No chapter is included"):
        narrate.start_narration(store, ws, book.id)
    assert jobs.list_jobs(store) == []


def test_language_guess():
    assert narrate.guess_language(FRENCH) == "fr"
    assert narrate.guess_language(BOOK) == "en"
    assert narrate.guess_language("Hello there, Anna. The end.") is None  # too little to be sure
