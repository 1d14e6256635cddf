"""Linear and mel spectrograms for training, always computed in fp32.

Under fp16 autocast an STFT overflows and the losses turn NaN, so every
function here disables autocast and casts its input to float32 first.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.nn import functional as F

from .config import AudioConfig

#: Floor of magnitudes before the log (avoids log(0)).
LOG_CLIP = 1e-5
#: Added inside the magnitude's square root so its gradient stays finite at 0.
MAG_EPS = 1e-6


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa  # imported lazily: heavy, and only training needs it

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def _autocast_off(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def spectrogram(y: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """Magnitude spectrogram [b, n_fft/2+1, frames] of audio [b, samples] (or [b, 1, samples])."""
    if y.dim() == 3:
        y = y.squeeze(1)
    with _autocast_off(y.device):
        y = y.float()
        pad = (audio.filter_length - audio.hop_length) // 2
        y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        window = torch.hann_window(audio.win_length, device=y.device)
        spec = torch.stft(y, audio.filter_length, hop_length=audio.hop_length,
                          win_length=audio.win_length, window=window, center=False,
                          return_complex=True)
        return torch.sqrt(spec.real**2 + spec.imag**2 + MAG_EPS)


def spec_to_mel(spec: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """Log-mel spectrogram [b, mels, frames] from a magnitude spectrogram."""
    with _autocast_off(spec.device):
        basis = _mel_basis(audio.sample_rate, audio.filter_length, audio.mel_channels,
                           audio.mel_fmin, audio.mel_fmax)
        mel = torch.matmul(torch.from_numpy(basis).to(spec.device), spec.float())
        return torch.log(torch.clamp(mel, min=LOG_CLIP))


def mel_spectrogram(y: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """Log-mel spectrogram [b, mels, frames] of audio, in fp32."""
    return spec_to_mel(spectrogram(y, audio), audio)


def spectrogram_frames(num_samples: int, audio: AudioConfig) -> int:
    """Frames :func:`spectrogram` returns for a clip of ``num_samples``."""
    return num_samples // audio.hop_length
