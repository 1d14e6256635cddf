"""Dataset engines on real generated speech: VAD, ASR, segmentation, quality,
speaker embeddings, clustering and pitch.

One conversation of four synthetic speakers (three turns each, known text and
turn times) is generated once per module and reused.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from engines import asr, cluster, pitch, quality, segment, speaker, vad
from engines.errors import BadInput, ModelMissing
from tests import speech

RATE = speech.RATE


@pytest.fixture(scope="module")
def talk():
    turns = [(i % 4, text) for i, text in enumerate(speech.SENTENCES)]
    audio, rate, truth = speech.conversation(turns, gap_s=0.8)
    return audio, truth


@pytest.fixture(scope="module")
def transcriber():
    return asr.make_transcriber()


@pytest.fixture(scope="module")
def regions(talk):
    return vad.detect_speech(talk[0], RATE)


@pytest.fixture(scope="module")
def words(talk, regions, transcriber):
    return asr.all_words(asr.transcribe_regions(transcriber, talk[0], regions))


@pytest.fixture(scope="module")
def clips(talk, words):
    return segment.plan_clips(words, segment.SegmentConfig(), talk[0], RATE)


@pytest.fixture(scope="module")
def embeddings(talk, clips):
    return speaker.embed_clips([segment.cut(talk[0], RATE, c) for c in clips], RATE)


def _turn_of(clip, truth) -> int:
    """Index of the truth turn that overlaps ``clip`` most."""
    overlaps = [min(clip.end, t.end_s) - max(clip.start, t.start_s) for t in truth]
    return int(np.argmax(overlaps))


# ------------------------------------------------------------------ speech

def test_speech_helpers():
    assert speech.wer("The cat sat.", "the cat sat") == 0
    assert speech.wer("the cat sat on the mat", "the dog sat on mat") == pytest.approx(2 / 6)
    audio, rate = speech.speak("Hello there.", 2)
    assert rate == RATE and 0.3 < len(audio) / rate < 3 and np.abs(audio).max() <= 0.71
    with pytest.raises(ValueError):
        speech.speak("Hello.", 9)


# --------------------------------------------------------------------- VAD

def test_vad_finds_each_turn(talk, regions):
    _, truth = talk
    assert len(regions) == len(truth)
    for (start, end), turn in zip(regions, truth):
        assert abs(start - turn.start_s) < 0.3 and abs(end - turn.end_s) < 0.35


def test_vad_streaming_matches_one_pass(talk):
    audio = talk[0][:RATE * 12]
    stream = vad.VadStream()
    for first in range(0, len(audio), 7777):  # blocks not a multiple of a frame
        stream.feed(audio[first:first + 7777])
    assert np.allclose(stream.finish(), vad.speech_probabilities(audio), atol=1e-5)


def test_vad_threshold_and_merging(talk):
    audio = talk[0]
    strict = vad.regions_from_probs(vad.speech_probabilities(audio), vad.VadConfig(speech_prob=0.999))
    loose = vad.detect_speech(audio, RATE, vad.VadConfig(min_silence_s=1.0))
    assert sum(e - s for s, e in strict) < sum(e - s for s, e in vad.detect_speech(audio))
    assert len(loose) == 1  # 0.8 s gaps are bridged when min_silence is 1 s
    with pytest.raises(BadInput):
        vad.regions_from_probs(np.zeros(3), vad.VadConfig(speech_prob=1.5))


def test_vad_no_speech_in_silence_or_music():
    assert vad.detect_speech(np.zeros(RATE * 3, np.float32)) == []
    assert vad.detect_speech(speech.music(6.0)) == []
    noise = np.random.default_rng(0).standard_normal(RATE * 3).astype(np.float32) * 0.01
    assert vad.detect_speech(noise) == []


# --------------------------------------------------------------------- ASR

def test_transcripts_match_the_script(talk, words):
    _, truth = talk
    heard = " ".join(w.text for w in words)
    assert speech.wer(" ".join(t.text for t in truth), heard) <= 0.2
    for turn in truth:
        said = " ".join(w.text for w in words if turn.start_s - 0.3 <= w.start <= turn.end_s)
        if turn.speaker != 2:  # Piper-based voices; espeak-ng is harder for tiny.en
            assert speech.wer(turn.text, said) <= 0.1, (turn.text, said)


def test_words_have_times_and_probabilities(talk, words):
    audio, truth = talk
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= len(audio) / RATE for w in words)
    assert all(0.0 <= w.probability <= 1.0 for w in words)
    # Word times are on the conversation's time line: the first word of each
    # turn starts near the turn.
    for turn in truth:
        first = min((w for w in words if w.start >= turn.start_s - 0.4), key=lambda w: w.start)
        assert abs(first.start - turn.start_s) < 0.4


def test_windows_never_exceed_whisper_span():
    windows = asr.plan_windows([(0, 10), (10.5, 25), (26, 70), (100, 101)])
    assert all(hi - lo <= asr.WINDOW_S + 1e-9 for lo, hi in windows)
    assert windows[0] == (0, 25) and windows[-1] == (100, 101)
    # Short gaps are transcribed with their neighbours; long regions split evenly.
    assert sum(hi - lo for lo, hi in windows) == pytest.approx(25 + 44 + 1)


def test_asr_backend_errors():
    with pytest.raises(ModelMissing, match="openai-whisper"):
        asr.make_transcriber(asr.AsrConfig(backend="openai-whisper"))
    with pytest.raises(BadInput, match="unknown ASR backend"):
        asr.make_transcriber(asr.AsrConfig(backend="kaldi"))
    with pytest.raises(ModelMissing):
        asr.make_transcriber(asr.AsrConfig(model="/nonexistent/model-folder"))


def test_silence_transcribes_to_nothing(transcriber):
    assert transcriber.transcribe(np.zeros(0, np.float32)) == []
    assert asr.transcribe_regions(transcriber, np.zeros(RATE, np.float32), []) == []


# ------------------------------------------------------------- segmentation

def _assert_between_words(clip_list, words, audio=None, min_dip_db=20.0):
    """Every edge in a quiet frame (20 dB under the speech around it) when the
    audio is known; otherwise no edge deeper than Whisper's timing precision
    (0.1 s) into a word. Whisper often stretches a word over the following
    pause, so with audio the measured silence is the judge."""
    levels = segment.frame_levels(audio, RATE // 100) if audio is not None else None
    for clip in clip_list:
        for edge in (clip.start, clip.end):
            if levels is None:
                inside = [w for w in words if w.start + 0.1 < edge < w.end - 0.1]
                assert not inside, f"cut at {edge:.2f} s inside {inside[0].text!r}"
            else:
                frame = min(int(edge * 100), len(levels) - 1)
                near = levels[max(0, frame - 50):frame + 50].max()
                assert levels[frame] < near - min_dip_db, f"cut at {edge:.2f} s is not in a pause"
        assert clip.text == " ".join(w.text for w in clip.words)
        assert all(0 <= w.start <= w.end <= clip.duration + 1e-9 for w in clip.words)


def test_clips_follow_turns_and_never_split_words(talk, words, clips):
    audio, truth = talk
    assert len(clips) == len(truth)  # one clip per turn: the 0.8 s gaps end clips
    _assert_between_words(clips, words, audio)
    for clip in clips:
        turn = truth[_turn_of(clip, truth)]
        assert turn.start_s - 0.3 <= clip.start and clip.end <= turn.end_s + 0.3
        edges = np.concatenate([segment.cut(audio, RATE, clip)[:160],
                                segment.cut(audio, RATE, clip)[-160:]])
        assert np.abs(edges).max() < 0.05  # trimmed to silence plus padding


def test_short_max_cuts_inside_sentences_at_word_gaps(talk, words):
    audio, _ = talk
    config = segment.SegmentConfig(min_seconds=0.8, max_seconds=2.0, pad_seconds=0.1)
    short = segment.plan_clips(words, config, audio, RATE)
    assert len(short) > 12
    assert all(config.min_seconds <= c.duration <= config.max_seconds + 1e-6 for c in short)
    # Inside a 2 s limit some cuts must fall at word junctions with no real pause
    # (connected speech); the quietest point there is a dip, not silence.
    _assert_between_words(short, words, audio, min_dip_db=10.0)
    kept = [w.text for c in short for w in c.words]
    remaining = iter(w.text for w in words)
    assert all(text in remaining for text in kept)  # in order, none repeated or split
    assert len(kept) >= 0.9 * len(words)


def test_segmentation_without_audio_and_bad_config(words):
    plain = segment.plan_clips(words)
    assert plain and all(c.duration <= 12.0 for c in plain)
    _assert_between_words(plain, words)
    with pytest.raises(BadInput):
        segment.plan_clips(words, segment.SegmentConfig(min_seconds=5, max_seconds=2))
    assert segment.plan_clips([]) == []
    restored = segment.ClipSpec.from_dict(plain[0].to_dict())
    assert restored == plain[0]


# ----------------------------------------------------------------- quality

def test_quality_flags(talk, clips):
    audio, truth = talk
    clip = next(c for c in clips if truth[_turn_of(c, truth)].speaker == 0)
    clean = segment.cut(audio, RATE, clip)
    good = quality.assess(clean, RATE, clip.words)
    assert good.flags == [] and good.snr_db > 30 and good.speech_ratio > 0.6
    rng = np.random.default_rng(0)
    noisy = clean + 0.05 * rng.standard_normal(len(clean)).astype(np.float32)
    assert "low_snr" in quality.assess(noisy, RATE, clip.words).flags
    assert "clipped" in quality.assess(np.clip(clean * 6, -1, 1), RATE, clip.words).flags
    assert "too_quiet" in quality.assess(clean * 0.003, RATE, clip.words).flags
    assert "too_short" in quality.assess(clean[:RATE // 2], RATE, clip.words[:1]).flags
    unsure = [asr.Word(w.start, w.end, w.text, 0.3) for w in clip.words]
    assert "low_confidence" in quality.assess(clean, RATE, unsure).flags
    music = quality.assess(speech.music(3.0), RATE, [])
    assert {"no_words", "little_speech"} <= set(music.flags)


# ------------------------------------------------------ speakers, clusters

def test_embeddings_are_unit_rows(embeddings, clips):
    assert embeddings.shape == (len(clips), speaker.EMBED_DIM)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_default_threshold_separates_speakers(talk, clips, embeddings):
    _, truth = talk
    true = [truth[_turn_of(c, truth)].speaker for c in clips]
    labels = cluster.cluster(embeddings)
    assert len(set(true)) >= 3
    assert adjusted_rand_score(true, labels) >= 0.9


def test_threshold_changes_grouping(embeddings):
    tree = cluster.build_tree(embeddings)
    counts = [len(set(cluster.cut_tree(tree, len(embeddings), c))) for c in (0.2, 0.7, 0.97)]
    assert counts[0] == 1 and counts[0] < counts[1] < counts[2]
    assert np.array_equal(cluster.cut_tree(tree, len(embeddings), 0.7), cluster.cluster(embeddings, 0.7))
    with pytest.raises(BadInput):
        cluster.cluster(embeddings, 1.5)


def test_cluster_labels_ordered_and_small_groups_unassigned():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    sizes = [2, 7, 4]
    points = np.concatenate([c + 0.05 * rng.standard_normal((n, 16)) for c, n in zip(centres, sizes)])
    labels = cluster.cluster(points, 0.9)
    assert list(np.bincount(labels)) == [7, 4, 2]
    assert list(cluster.cluster(points, 0.9, min_size=3)).count(cluster.UNASSIGNED) == 2
    assert cluster.cluster(np.zeros((0, 16))).size == 0
    assert list(cluster.cluster(points[:1])) == [0]


def test_cluster_is_fast_on_thousands():
    import time
    rng = np.random.default_rng(1)
    points = rng.standard_normal((3000, 256)).astype(np.float32)
    started = time.perf_counter()
    cluster.cluster(points)
    assert time.perf_counter() - started < 10


# ------------------------------------------------------------------- pitch

def test_pitch_of_tones_and_speakers():
    t = np.arange(RATE) / RATE
    for f0 in (90.0, 210.0):
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
        assert pitch.pitch_stats(tone, RATE).median_hz == pytest.approx(f0, rel=0.01)
    low = pitch.pitch_stats(speech.speak(speech.SENTENCES[0], 3)[0], RATE)
    high = pitch.pitch_stats(speech.speak(speech.SENTENCES[0], 1)[0], RATE)
    assert high.median_hz > 1.3 * low.median_hz  # factors 1.3 vs 0.8 of one voice
    assert low.p5_hz <= low.median_hz <= low.p95_hz
    silent = pitch.pitch_stats(np.zeros(RATE, np.float32), RATE)
    assert silent.voiced_fraction == 0 and silent.to_dict()["median_hz"] is None
