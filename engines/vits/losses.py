"""VITS losses: least-squares GAN, feature matching, KL, mel and multi-resolution STFT.

Every loss computes in fp32 (inputs are cast), so autocast never reaches them.
"""
from __future__ import annotations

import torch

from .config import AudioConfig
from .mel_processing import spectrogram

#: Feature matching is scaled ×2 as in HiFi-GAN/VITS.
FEATURE_LOSS_SCALE = 2.0
#: (n_fft, hop, window) of the sub-band STFT loss used by the multi-band decoder.
SUBBAND_STFT_RESOLUTIONS = ((384, 30, 150), (683, 60, 300), (171, 10, 60))


def discriminator_loss(real_scores, fake_scores) -> torch.Tensor:
    """LSGAN discriminator loss: real → 1, fake → 0."""
    loss = 0.0
    for dr, dg in zip(real_scores, fake_scores):
        loss = loss + torch.mean((1 - dr.float()) ** 2) + torch.mean(dg.float() ** 2)
    return loss


def generator_loss(fake_scores) -> torch.Tensor:
    """LSGAN generator loss: fake → 1."""
    loss = 0.0
    for dg in fake_scores:
        loss = loss + torch.mean((1 - dg.float()) ** 2)
    return loss


def feature_loss(real_fmaps, fake_fmaps) -> torch.Tensor:
    """L1 between discriminator features of real and generated audio."""
    loss = 0.0
    for dr, dg in zip(real_fmaps, fake_fmaps):
        for r, g in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(r.float().detach() - g.float()))
    return loss * FEATURE_LOSS_SCALE


def kl_loss(z_p, logs_q, m_p, logs_p, z_mask) -> torch.Tensor:
    """KL between the posterior (sampled through the flow) and the text prior, per frame."""
    z_p, logs_q, m_p, logs_p, z_mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * ((z_p - m_p) ** 2) * torch.exp(-2.0 * logs_p)
    return torch.sum(kl * z_mask) / torch.sum(z_mask)


def mel_loss(mel_real: torch.Tensor, mel_fake: torch.Tensor) -> torch.Tensor:
    """L1 between log-mel spectrograms."""
    return torch.nn.functional.l1_loss(mel_fake.float(), mel_real.float())


def stft_loss(real: torch.Tensor, fake: torch.Tensor,
              resolutions=SUBBAND_STFT_RESOLUTIONS) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log magnitude), on [b, c, t] signals."""
    real = real.reshape(-1, real.size(-1)).float()
    fake = fake.reshape(-1, fake.size(-1)).float()
    loss = 0.0
    for n_fft, hop, win in resolutions:
        audio = AudioConfig(filter_length=n_fft, hop_length=hop, win_length=win)
        s_real, s_fake = spectrogram(real, audio), spectrogram(fake, audio)
        sc = torch.norm(s_real - s_fake, p="fro") / torch.norm(s_real, p="fro")
        mag = torch.nn.functional.l1_loss(torch.log(s_fake), torch.log(s_real))
        loss = loss + sc + mag
    return loss / len(resolutions)
