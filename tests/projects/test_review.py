"""Review actions on the store: every edit persists, and undo puts it back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines import audio as audio_io
from projects import review
from projects.errors import BadInput, Conflict
from projects.store import dumps, now
from tests.speech import RATE, SENTENCES, speak

WORD_GAP_S = 0.12
ROOT_DIR = Path(__file__).resolve().parents[2]


def spoken_words(words: list[str], speaker: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Each word spoken separately and joined with short gaps: exact word timings."""
    gap = np.zeros(int(WORD_GAP_S * RATE), np.float32)
    pieces, timings, cursor = [gap], [], WORD_GAP_S
    for word in words:
        audio, _ = speak(word, speaker)
        timings.append({"word": " " + word, "start": round(cursor, 3),
                        "end": round(cursor + len(audio) / RATE, 3), "prob": 0.9})
        pieces += [audio, gap]
        cursor += (len(audio) + len(gap)) / RATE
    return np.concatenate(pieces), timings


def add_speaker(store, project, name, origin="cluster"):
    return store.db["speakers"].insert({"project_id": project.id, "name": name, "origin": origin,
                                        "use_for_training": 0, "created_at": now()}).last_pk


def add_clip(store, ws, project, speaker_id, audio, text, words=(), embedding=None,
             flags=(), name=None, quality=None):
    """A clip row plus its WAV at the project's rate (audio given at tests.speech.RATE)."""
    sr = project.sample_rate
    data = audio_io.resample(audio, RATE, sr)
    n = store.one("SELECT COUNT(*) AS n FROM clips")["n"]
    path = ws.project_dir(project.slug) / "clips" / f"{name or f'clip{n}'}.wav"
    audio_io.write_wav(path, data, sr)
    return store.db["clips"].insert({
        "project_id": project.id, "speaker_id": speaker_id, "path": ws.relative(path),
        "duration_s": len(data) / sr, "text": text, "words": dumps(list(words)),
        "quality": dumps(quality or {"snr_db": 30.0, "confidence": 0.9}),
        "flags": dumps(list(flags)), "review": "unreviewed", "created_at": now(),
        "embedding": None if embedding is None else np.asarray(embedding, "<f4").tobytes(),
    }).last_pk


def unit(seed: int, dims: int = 256) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dims)
    return v / np.linalg.norm(v)


@pytest.fixture
def two_voices(store, ws, project):
    """Speaker A (3 clips, voice 0) and B (2 clips, voice 2), near-identical embeddings each."""
    a, b = add_speaker(store, project, "Speaker 1"), add_speaker(store, project, "Speaker 2")
    base_a, base_b = unit(1), unit(2)
    clips = {"a": [], "b": []}
    for i in range(3):
        audio, _ = speak(SENTENCES[i], 0)
        clips["a"].append(add_clip(store, ws, project, a, audio, SENTENCES[i],
                                   embedding=base_a + 0.05 * unit(10 + i)))
    for i in range(2):
        audio, _ = speak(SENTENCES[3 + i], 2)
        clips["b"].append(add_clip(store, ws, project, b, audio, SENTENCES[3 + i],
                                   embedding=base_b + 0.05 * unit(20 + i),
                                   flags=["low_snr"] if i == 0 else []))
    return a, b, clips


def speaker_of(store, clip_id):
    return review.get_clip(store, clip_id).speaker_id


def test_overview_counts_minutes_and_representative(store, project, two_voices):
    a, b, clips = two_voices
    rows = {r.id: r for r in review.overview(store, project.id)}
    assert rows[a].clips == 3 and rows[b].clips == 2 and rows[b].flagged == 1
    assert rows[a].minutes > 0.05
    assert rows[a].representative_clip_id in clips["a"]
    points = review.embedding_map(store, project.id)
    assert len(points) == 5
    xs = {p["speaker_id"]: p["x"] for p in points}
    # The first principal axis separates the two voices.
    assert np.sign(xs[a]) != np.sign(xs[b])


def test_merge_then_undo_restores_both_speakers(store, ws, project, two_voices):
    a, b, clips = two_voices
    assert review.merge_speakers(store, a, [b]) == 2
    assert all(speaker_of(store, c) == a for c in clips["b"])
    assert [s["id"] for s in review.list_speakers(store, project.id)] == [a]
    assert review.get_speaker(store, a)["origin"] == "user"
    assert review.undo(store, ws, project.id).startswith("merge")
    assert all(speaker_of(store, c) == b for c in clips["b"])
    assert review.get_speaker(store, b)["name"] == "Speaker 2"
    assert review.get_speaker(store, a)["origin"] == "cluster"


def test_name_move_and_training_flag_with_several_undo_levels(store, ws, project, two_voices):
    a, b, clips = two_voices
    review.name_speaker(store, a, "Alice")
    review.move_clips(store, [clips["a"][0]], b)
    review.set_training(store, b, True)
    with pytest.raises(Conflict):
        review.name_speaker(store, b, "alice")
    assert speaker_of(store, clips["a"][0]) == b
    assert review.get_speaker(store, b)["use_for_training"] == 1
    assert [e.action for e in review.history(store, project.id)][:3] == [
        "use for training", "move 1 clips", "name speaker Alice"]
    review.undo(store, ws, project.id)
    review.undo(store, ws, project.id)
    assert review.get_speaker(store, b)["use_for_training"] == 0
    assert speaker_of(store, clips["a"][0]) == a
    assert review.get_speaker(store, a)["name"] == "Alice"
    review.undo(store, ws, project.id)
    assert review.get_speaker(store, a)["name"] == "Speaker 1"


def test_find_speaker_ranks_same_voice_first_and_pulls_in(store, project, two_voices):
    a, b, clips = two_voices
    ranked = review.find_similar(store, project.id, [clips["a"][0]])
    assert {c.id for c, _ in ranked[:2]} == set(clips["a"][1:])
    assert ranked[0][1] > 0.9 and ranked[-1][1] < 0.5
    new = review.create_speaker(store, project.id, "Narrator")
    review.pull_in(store, new, [c.id for c, s in ranked if s > 0.9] + [clips["a"][0]])
    assert {c.id for c in review.list_clips(store, project.id, new)} == set(clips["a"])


def test_split_real_voices_preview_then_apply_and_undo(store, ws, project):
    """One cluster holding two real voices splits in two, by resemblyzer embeddings."""
    from engines.speaker import embed_clips

    mixed = add_speaker(store, project, "Speaker 1")
    audios = [speak(SENTENCES[i], 0 if i < 3 else 2)[0] for i in range(5)]
    vectors = embed_clips(audios, RATE)
    ids = [add_clip(store, ws, project, mixed, au, SENTENCES[i], embedding=v)
           for i, (au, v) in enumerate(zip(audios, vectors))]
    groups = review.preview_split(store, mixed)
    assert [sorted(g) for g in groups] == [ids[:3], ids[3:]]
    assert speaker_of(store, ids[4]) == mixed  # a preview changes nothing
    out = review.apply_split(store, mixed, groups)
    assert len(out) == 2 and review.get_speaker(store, out[1])["name"] == "Speaker 1 (2)"
    assert speaker_of(store, ids[4]) == out[1] and speaker_of(store, ids[0]) == mixed
    review.undo(store, ws, project.id)
    assert speaker_of(store, ids[4]) == mixed
    assert len(review.list_speakers(store, project.id)) == 1


def test_review_states_filters_and_bulk_actions(store, ws, project, two_voices):
    a, b, clips = two_voices
    review.set_review(store, [clips["a"][0]], "accepted")
    review.set_review(store, [clips["a"][1]], "rejected")
    assert [c.id for c in review.list_clips(store, project.id, a, "unreviewed")] == [clips["a"][2]]
    assert review.reject_flagged(store, project.id, b) == 1
    assert review.get_clip(store, clips["b"][0]).review == "rejected"
    assert review.accept_all(store, project.id, b) == 1
    assert review.get_clip(store, clips["b"][1]).review == "accepted"
    longest = review.list_clips(store, project.id, None, "all", "longest")
    assert [c.duration_s for c in longest] == sorted((c.duration_s for c in longest), reverse=True)
    review.undo(store, ws, project.id)
    review.undo(store, ws, project.id)
    assert review.get_clip(store, clips["b"][0]).review == "unreviewed"
    with pytest.raises(BadInput):
        review.set_review(store, [clips["a"][0]], "maybe")


def test_transcript_edit_saved_and_undone(store, ws, project, two_voices):
    a, b, clips = two_voices
    review.set_text(store, clips["a"][0], "  The weather  was warm. ")
    assert review.get_clip(store, clips["a"][0]).text == "The weather was warm."
    review.undo(store, ws, project.id)
    assert review.get_clip(store, clips["a"][0]).text == SENTENCES[0]


def test_trim_keeps_words_inside_and_undo_restores_file(store, ws, project):
    spk = add_speaker(store, project, "Speaker 1")
    audio, words = spoken_words(["please", "close", "the", "window"])
    clip_id = add_clip(store, ws, project, spk, audio, "Please close the window.", words)
    before = review.get_clip(store, clip_id)
    # Cut off the first word: keep from the gap after it to the end.
    start = (words[0]["end"] + words[1]["start"]) / 2
    trimmed = review.trim_clip(store, ws, clip_id, start, before.duration_s)
    assert trimmed.path != before.path and ws.resolve(before.path).exists()
    assert trimmed.text == "close the window"
    assert [w["word"].strip() for w in trimmed.words] == ["close", "the", "window"]
    assert trimmed.words[0]["start"] == pytest.approx(words[1]["start"] - start, abs=0.01)
    audio2, sr = audio_io.read_wav(ws.resolve(trimmed.path))
    assert len(audio2) / sr == pytest.approx(before.duration_s - start, abs=0.01)
    review.undo(store, ws, project.id)
    again = review.get_clip(store, clip_id)
    assert again.path == before.path and again.text == "Please close the window."
    assert not ws.resolve(trimmed.path).exists()  # the undone edit's file is cleaned up


def test_split_at_word_makes_two_clips_and_undo_joins_them(store, ws, project):
    spk = add_speaker(store, project, "Speaker 1")
    audio, words = spoken_words(["open", "the", "door", "slowly"])
    clip_id = add_clip(store, ws, project, spk, audio, "Open the door, slowly.", words)
    review.set_review(store, [clip_id], "accepted")
    first, second = review.split_clip(store, ws, clip_id, 2)
    assert (first.text, second.text) == ("Open the", "door, slowly.")
    assert second.speaker_id == spk and second.review == "accepted"
    assert second.words[0]["start"] < 0.1  # timings are relative to the new clip
    a1, sr = audio_io.read_wav(ws.resolve(first.path))
    a2, _ = audio_io.read_wav(ws.resolve(second.path))
    assert (len(a1) + len(a2)) / sr == pytest.approx(review.get_clip(store, clip_id).duration_s
                                                    + second.duration_s, abs=0.01)
    assert abs(first.duration_s - (words[1]["end"] + words[2]["start"]) / 2) < 0.01
    with pytest.raises(BadInput):
        review.split_clip(store, ws, clip_id, 0)
    review.undo(store, ws, project.id)
    restored = review.get_clip(store, clip_id)
    assert restored.text == "Open the door, slowly." and len(restored.words) == 4
    assert len(review.list_clips(store, project.id, spk)) == 1


# ------------------------------------------------------------ recording studio

def recording(tmp_path, name, text, level=1.0, rate=44100, pad_s=1.0):
    """A microphone-like take: silence, the sentence, silence, at ``rate``."""
    import soundfile as sf

    speech, _ = speak(text, 0)
    pad = np.zeros(int(pad_s * RATE), np.float32)
    take = audio_io.resample(np.concatenate([pad, speech * level, pad]), RATE, rate)
    path = tmp_path / name
    sf.write(path, np.clip(take, -1, 1), rate, subtype="PCM_16")
    return path, len(speech) / RATE


def test_shipped_prompt_set_is_large_and_clean():
    from projects import prompts

    lines = prompts.load_prompt_file(prompts.shipped_sets()["en_voice_studio"])
    assert len(lines) >= 200 and len(set(lines)) == len(lines)
    assert all(5 <= len(line) <= 120 for line in lines)
    with pytest.raises(BadInput):
        prompts.parse_prompts("\n# only a comment\n\n")


def test_record_prompts_trim_warn_replace_and_resume(store, ws, project, tmp_path):
    from projects import prompts

    lines = prompts.parse_prompts("# my set\nThe weather was warm.\n\nPlease close the window.\n")
    session = prompts.start_session(store, project, "Me", lines, "my set")
    take, speech_s = recording(tmp_path, "take.wav", lines[0])
    saved = prompts.save_take(store, ws, project, session.id, 0, take)
    clip = saved.clip
    assert clip.text == "The weather was warm." and saved.warnings == []
    assert clip.speaker_id == review.find_speaker(store, project.id, "me")["id"]
    # Trimmed: the second of silence either side is gone, the speech is kept.
    assert speech_s <= clip.duration_s <= speech_s + 0.6
    assert len(review.embedding_of(clip)) == 256
    done = prompts.session_progress(store, session.id)
    assert (done.done, done.total, done.next_index) == (1, 2, 1)
    # Resume: the same speaker and list name reopen the session where it stopped.
    again = prompts.start_session(store, project, "Me", lines, "my set")
    assert again.id == session.id and prompts.next_prompt(store, again.id) == 1
    quiet, _ = recording(tmp_path, "quiet.wav", lines[0], level=0.01)
    redo = prompts.save_take(store, ws, project, session.id, 0, quiet)
    assert any("quiet" in w for w in redo.warnings) and "too_quiet" in redo.clip.flags
    assert prompts.session_progress(store, session.id).done == 1  # replaced, not added
    assert not ws.resolve(clip.path).exists()
    silent = tmp_path / "silent.wav"
    audio_io.write_wav(silent, np.zeros(RATE * 2, np.float32), RATE)
    with pytest.raises(BadInput, match="No speech"):
        prompts.save_take(store, ws, project, session.id, 1, silent)
