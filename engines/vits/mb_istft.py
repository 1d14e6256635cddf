"""Multi-band inverse-STFT decoder (MB-iSTFT-VITS) built only from convolutions.

The decoder predicts, for each sub-band, a small magnitude/phase spectrogram;
an inverse STFT written as a transposed convolution turns it into sub-band
audio, and a PQMF (or learned) synthesis filter merges the bands. No
``torch.istft``, so the whole model exports to ONNX and runs on CPU.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig
from .decoders import PRE_POST_KERNEL, UpsamplerBase

#: PQMF prototype filter (4 bands): taps, normalised cutoff and Kaiser beta.
PQMF_TAPS = 62
PQMF_CUTOFF = 0.142
PQMF_BETA = 9.0
#: Smallest overlap-add window envelope we divide by.
ENVELOPE_FLOOR = 1e-8
#: Largest log-magnitude the decoder may emit (exp(10) ≈ 22000 stays finite in fp16).
MAX_LOG_MAGNITUDE = 10.0


class ConvISTFT(nn.Module):
    """Inverse STFT (Hann window, centred frames) as one grouped transposed convolution.

    Input: magnitude and phase [b, bands, n_fft//2+1, frames]; output [b, bands, (frames-1)*hop].
    """

    def __init__(self, n_fft: int, hop: int, bands: int = 1):
        super().__init__()
        self.n_fft, self.hop, self.bands = n_fft, hop, bands
        window = torch.hann_window(n_fft, dtype=torch.float64)
        bins = n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
        # Real inverse DFT: interior bins count twice (their conjugate mirror is implied).
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        weight[-1] = 1.0
        angle = 2 * math.pi * k * n / n_fft
        cos_k = weight * torch.cos(angle) / n_fft * window
        sin_k = -weight * torch.sin(angle) / n_fft * window
        kernel = torch.cat([cos_k, sin_k], 0).unsqueeze(1).float()  # [2*bins, 1, n_fft]
        self.register_buffer("kernel", kernel.repeat(bands, 1, 1), persistent=False)
        self.register_buffer("window_sq", (window**2).float().view(1, 1, -1), persistent=False)

    def forward(self, mag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        b, bands, bins, frames = mag.shape
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=2)
        spec = spec.reshape(b, bands * 2 * bins, frames)
        frames_out = F.conv_transpose1d(spec, self.kernel, stride=self.hop, groups=bands)
        ones = torch.ones_like(spec[:1, :1])
        envelope = F.conv_transpose1d(ones, self.window_sq, stride=self.hop)
        audio = frames_out / torch.clamp_min(envelope, ENVELOPE_FLOOR)
        trim = self.n_fft // 2
        return audio[:, :, trim:audio.size(2) - trim]


def pqmf_filters(subbands: int, taps: int = PQMF_TAPS, cutoff: float = PQMF_CUTOFF,
                 beta: float = PQMF_BETA) -> tuple[np.ndarray, np.ndarray]:
    """Analysis and synthesis filters [subbands, taps+1] of a cosine-modulated filter bank."""
    n = np.arange(taps + 1) - taps / 2
    omega = np.pi * cutoff
    with np.errstate(invalid="ignore", divide="ignore"):
        proto = np.sin(omega * n) / (np.pi * n)
    proto[taps // 2] = cutoff  # limit of the sinc at n = 0
    proto *= np.kaiser(taps + 1, beta)
    analysis, synthesis = [], []
    for k in range(subbands):
        arg = (2 * k + 1) * np.pi / (2 * subbands) * n
        phase = (-1) ** k * np.pi / 4
        analysis.append(2 * proto * np.cos(arg + phase))
        synthesis.append(2 * proto * np.cos(arg - phase))
    return np.stack(analysis), np.stack(synthesis)


class PQMF(nn.Module):
    """Pseudo-QMF bank: split audio into critically sampled bands and merge them back."""

    def __init__(self, subbands: int = 4, taps: int = PQMF_TAPS, learned: bool = False):
        super().__init__()
        self.subbands, self.taps = subbands, taps
        ana, syn = pqmf_filters(subbands, taps)
        self.register_buffer("analysis", torch.from_numpy(ana).float().unsqueeze(1), persistent=False)
        updown = torch.zeros(subbands, subbands, subbands)
        updown[torch.arange(subbands), torch.arange(subbands), 0] = 1.0
        self.register_buffer("updown", updown, persistent=False)
        synthesis = torch.from_numpy(syn * subbands).float().unsqueeze(0)  # [1, bands, taps+1]
        if learned:
            # MS-iSTFT: a trainable synthesis filter, started from the PQMF one.
            self.synthesis = nn.Parameter(synthesis)
        else:
            self.register_buffer("synthesis", synthesis, persistent=False)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[b, 1, t] → [b, bands, t / bands]."""
        x = F.conv1d(F.pad(x, (self.taps // 2, self.taps // 2)), self.analysis)
        return F.conv1d(x, self.updown, stride=self.subbands)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[b, bands, t] → [b, 1, t * bands]."""
        x = F.conv_transpose1d(x, self.updown, stride=self.subbands)
        return F.conv1d(F.pad(x, (self.taps // 2, self.taps // 2)), self.synthesis)


class MultiBandIstftDecoder(UpsamplerBase):
    """Latent frames → sub-band spectrograms → iSTFT → band merge; [b, 1, t * hop]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.bins = cfg.istft_n_fft // 2 + 1
        self.subbands = cfg.subbands
        self.conv_post = nn.Conv1d(self.out_channels, cfg.subbands * 2 * self.bins,
                                   PRE_POST_KERNEL, 1, padding=3)
        self.istft = ConvISTFT(cfg.istft_n_fft, cfg.istft_hop, cfg.subbands)
        self.pqmf = PQMF(cfg.subbands, learned=cfg.synthesis == "learned")

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_bands(x, g)[0]

    def forward_bands(self, x: torch.Tensor, g: torch.Tensor | None = None):
        """Full-band audio [b, 1, t] and the sub-band signals [b, bands, t / bands]."""
        x = self.conv_post(self.body(x, g))
        # One extra frame so the iSTFT yields exactly frames * hop samples.
        x = F.pad(x, (1, 0), mode="reflect")
        b, _, frames = x.shape
        x = x.view(b, self.subbands, 2 * self.bins, frames)
        mag = torch.exp(torch.clamp(x[:, :, :self.bins], max=MAX_LOG_MAGNITUDE))
        phase = math.pi * torch.sin(x[:, :, self.bins:])
        bands = self.istft(mag, phase)
        return self.pqmf.merge(bands), bands
