"""VITS generator shapes per preset, the multi-band decoder's pieces and the spline flow."""
import numpy as np
import pytest
import torch

from engines.errors import BadInput
from engines.vits.config import PRESET_NAMES, VitsConfig, preset
from engines.vits.mb_istft import PQMF, ConvISTFT
from engines.vits.models import VitsGenerator
from engines.vits.modules import rq_spline_linear_tails


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_config_round_trips_through_dict(name):
    cfg = preset(name, n_speakers=3)
    again = VitsConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.model.gin_channels > 0
    cfg.validate()  # decoder hop equals the STFT hop


def test_unknown_preset_and_bad_config_are_user_errors():
    with pytest.raises(BadInput):
        preset("huge")
    with pytest.raises(BadInput):
        VitsConfig.from_dict({"model": {"no_such_field": 1}})


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_infer_shapes_per_preset(name):
    torch.manual_seed(0)
    gen = VitsGenerator(preset(name)).eval()
    ids = torch.randint(1, 100, (2, 12))
    lengths = torch.tensor([12, 7])
    with torch.no_grad():
        audio, attn, y_mask = gen.infer(ids, lengths, noise_scale=0.5, noise_scale_w=0.5)
    frames = int(y_mask.sum(2).max())
    assert audio.shape == (2, 1, y_mask.size(2) * 256)
    assert attn.shape == (2, 1, y_mask.size(2), 12)
    assert frames >= 1 and torch.isfinite(audio).all()
    assert attn[1, 0, :, 7:].sum() == 0  # padding phonemes get no frames


def test_length_scale_stretches_speech():
    torch.manual_seed(0)
    gen = VitsGenerator(preset("tiny")).eval()
    ids, lengths = torch.randint(1, 100, (1, 20)), torch.tensor([20])
    with torch.no_grad():
        short = gen.infer(ids, lengths, noise_scale=0, noise_scale_w=0, length_scale=1.0)[0]
        long = gen.infer(ids, lengths, noise_scale=0, noise_scale_w=0, length_scale=2.0)[0]
    assert long.size(-1) > 1.6 * short.size(-1)


@pytest.mark.parametrize("name", ["tiny", "mb-istft"])
def test_speaker_embedding_conditions_the_decoder(name):
    torch.manual_seed(0)
    cfg = preset(name, n_speakers=4)
    if name == "mb-istft":  # keep it quick: the shape of the decoder is what matters here
        cfg.model.n_layers, cfg.model.posterior_layers = 1, 1
    gen = VitsGenerator(cfg).eval()
    z = torch.randn(1, cfg.model.inter_channels, 10)
    with torch.no_grad():
        a = gen.dec(z, g=gen.speaker_embedding(torch.tensor([0])))
        b = gen.dec(z, g=gen.speaker_embedding(torch.tensor([3])))
    assert (a - b).abs().max() > 1e-4


def test_conv_istft_matches_torch_istft():
    torch.manual_seed(0)
    n_fft, hop = 16, 4
    signal = torch.randn(2, 400)
    spec = torch.stft(signal, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    ours = ConvISTFT(n_fft, hop, bands=2)(spec.abs().unsqueeze(0), spec.angle().unsqueeze(0))[0]
    ref = torch.istft(spec, n_fft, hop, window=torch.hann_window(n_fft))
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(ours[:, 8:-8], signal[:, 8:ref.size(1) - 8], atol=1e-5)


def test_pqmf_split_and_merge_reconstructs_audio():
    torch.manual_seed(0)
    t = torch.arange(8192) / 22050
    audio = (torch.sin(2 * np.pi * 440 * t) + 0.3 * torch.sin(2 * np.pi * 5000 * t)).view(1, 1, -1)
    pqmf = PQMF(4)
    bands = pqmf.split(audio)
    assert bands.shape == (1, 4, 2048)
    back = pqmf.merge(bands)
    err = (back - audio)[..., 200:-200]
    snr = 10 * torch.log10(audio[..., 200:-200].pow(2).sum() / err.pow(2).sum())
    assert snr > 30


def test_spline_inverse_undoes_forward():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 50) * 3  # some values fall in the linear tails (|x| > 5)
    w, h, d = torch.randn(3, 1, 50, 10), torch.randn(3, 1, 50, 10), torch.randn(3, 1, 50, 9)
    y, logdet = rq_spline_linear_tails(x, w, h, d, False, 5.0)
    back, inv_logdet = rq_spline_linear_tails(y, w, h, d, True, 5.0)
    assert torch.allclose(back, x, atol=1e-4)
    assert torch.allclose(logdet, -inv_logdet, atol=1e-4)
    assert not torch.allclose(y, x)
