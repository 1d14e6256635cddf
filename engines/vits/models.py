"""The VITS generator: text encoder, duration predictors, flow, posterior encoder, decoder.

Attribute names (``enc_p``, ``dec``, ``flow``, ``dp``, ``enc_q``, ``emb_g``) match
VITS/Piper so Piper voices load directly (see :mod:`engines.vits.piper_import`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import commons
from .attentions import Encoder
from .commons import LOG_2PI
from .config import DECODER_MB_ISTFT, ModelConfig, VitsConfig
from .decoders import HifiGanDecoder
from .mb_istft import MultiBandIstftDecoder
from .modules import (DDSConv, ConvFlow, ElementwiseAffine, Flip, LayerNorm, Log,
                      ResidualCouplingLayer, WN)
from .monotonic_align import maximum_path

#: Fixed shapes of VITS's sub-networks (not exposed in Piper configs either).
SDP_KERNEL = 3
SDP_DROPOUT = 0.5
SDP_FLOWS = 4
SDP_DDS_LAYERS = 3
FLOW_KERNEL = 5
POSTERIOR_KERNEL = 5


class TextEncoder(nn.Module):
    """Phoneme ids → hidden states and the prior's mean / log-std per phoneme."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.hidden = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.emb = nn.Embedding(cfg.n_vocab, cfg.hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, cfg.hidden_channels**-0.5)
        self.encoder = Encoder(cfg.hidden_channels, cfg.filter_channels, cfg.n_heads,
                               cfg.n_layers, cfg.kernel_size, cfg.p_dropout, cfg.window_size)
        self.proj = nn.Conv1d(cfg.hidden_channels, cfg.inter_channels * 2, 1)

    def forward(self, ids, lengths):
        x = (self.emb(ids) * math.sqrt(self.hidden)).transpose(1, -1)  # [b, h, t]
        x_mask = commons.sequence_mask(lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask)
        m, logs = torch.split(self.proj(x) * x_mask, self.out_channels, dim=1)
        return x, m, logs, x_mask


class DurationPredictor(nn.Module):
    """Deterministic log-duration regressor (two conv + norm layers)."""

    def __init__(self, in_channels, filter_channels, kernel_size, p_dropout, gin_channels=0):
        super().__init__()
        pad = kernel_size // 2
        self.drop = nn.Dropout(p_dropout)
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=pad)
        self.norm_1 = LayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=pad)
        self.norm_2 = LayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, in_channels, 1)

    def forward(self, x, x_mask, g=None):
        x = torch.detach(x)
        if g is not None:
            x = x + self.cond(torch.detach(g))
        x = self.drop(self.norm_1(torch.relu(self.conv_1(x * x_mask))))
        x = self.drop(self.norm_2(torch.relu(self.conv_2(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


class StochasticDurationPredictor(nn.Module):
    """Flow-based duration model: NLL of durations in training, samples log-durations at inference."""

    def __init__(self, channels: int, gin_channels: int = 0, p_dropout: float = SDP_DROPOUT):
        super().__init__()
        k = SDP_KERNEL
        self.log_flow = Log()
        self.flows = nn.ModuleList([ElementwiseAffine(2)])
        self.post_flows = nn.ModuleList([ElementwiseAffine(2)])
        for _ in range(SDP_FLOWS):
            self.flows.extend([ConvFlow(2, channels, k, SDP_DDS_LAYERS), Flip()])
            self.post_flows.extend([ConvFlow(2, channels, k, SDP_DDS_LAYERS), Flip()])
        self.post_pre = nn.Conv1d(1, channels, 1)
        self.post_proj = nn.Conv1d(channels, channels, 1)
        self.post_convs = DDSConv(channels, k, SDP_DDS_LAYERS, p_dropout)
        self.pre = nn.Conv1d(channels, channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.convs = DDSConv(channels, k, SDP_DDS_LAYERS, p_dropout)
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, channels, 1)

    def _condition(self, x, x_mask, g):
        x = self.pre(torch.detach(x))
        if g is not None:
            x = x + self.cond(torch.detach(g))
        return self.proj(self.convs(x, x_mask)) * x_mask

    def forward(self, x, x_mask, w=None, g=None, reverse=False, noise_scale=1.0, noise=None):
        """Training: NLL bound of durations ``w`` [b]; ``reverse``: sampled log-durations.

        One entry point (rather than two methods) so exported graphs keep the ``dp`` scope
        in their node names, as Piper's do.
        """
        if reverse:
            return self._sample(x, x_mask, g, noise_scale)
        return self._nll(x, x_mask, w, g, noise)

    def _nll(self, x, x_mask, w, g, noise):
        x = self._condition(x, x_mask, g)
        h_w = self.post_proj(self.post_convs(self.post_pre(w), x_mask)) * x_mask
        e_q = noise if noise is not None else torch.randn_like(w.expand(-1, 2, -1))
        e_q = e_q * x_mask
        z_q, logdet_q = e_q, 0.0
        for flow in self.post_flows:
            z_q, ld = flow(z_q, x_mask, g=x + h_w)
            logdet_q = logdet_q + ld
        z_u, z1 = torch.split(z_q, [1, 1], 1)
        u = torch.sigmoid(z_u) * x_mask
        z0 = (w - u) * x_mask
        logdet_q = logdet_q + torch.sum(
            (nn.functional.logsigmoid(z_u) + nn.functional.logsigmoid(-z_u)) * x_mask, [1, 2])
        logq = torch.sum(-0.5 * (LOG_2PI + e_q**2) * x_mask, [1, 2]) - logdet_q
        z0, logdet = self.log_flow(z0, x_mask)
        z = torch.cat([z0, z1], 1)
        for flow in self.flows:
            z, ld = flow(z, x_mask, g=x)
            logdet = logdet + ld
        nll = torch.sum(0.5 * (LOG_2PI + z**2) * x_mask, [1, 2]) - logdet
        return nll + logq

    def _sample(self, x, x_mask, g, noise_scale):
        x = self._condition(x, x_mask, g)
        flows = list(reversed(self.flows))
        flows = flows[:-2] + [flows[-1]]  # the first ConvFlow only matters in training
        z = torch.randn(x.size(0), 2, x.size(2), dtype=x.dtype, device=x.device) * noise_scale
        for flow in flows:
            z = flow(z, x_mask, g=x, reverse=True)
        return z[:, :1]


class ResidualCouplingBlock(nn.Module):
    """The normalizing flow between the posterior latent and the text prior."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(cfg.n_flows):
            self.flows.append(ResidualCouplingLayer(
                cfg.inter_channels, cfg.hidden_channels, FLOW_KERNEL, 1, cfg.flow_layers,
                gin_channels=cfg.gin_channels, mean_only=True))
            self.flows.append(Flip())

    def forward(self, x, x_mask, g=None, reverse=False):
        if reverse:
            for flow in reversed(self.flows):
                x = flow(x, x_mask, g=g, reverse=True)
            return x
        for flow in self.flows:
            x, _ = flow(x, x_mask, g=g)
        return x


class PosteriorEncoder(nn.Module):
    """Linear spectrogram → posterior latent z (training only)."""

    def __init__(self, spec_channels: int, cfg: ModelConfig):
        super().__init__()
        self.out_channels = cfg.inter_channels
        self.pre = nn.Conv1d(spec_channels, cfg.hidden_channels, 1)
        self.enc = WN(cfg.hidden_channels, POSTERIOR_KERNEL, 1, cfg.posterior_layers,
                      gin_channels=cfg.gin_channels)
        self.proj = nn.Conv1d(cfg.hidden_channels, cfg.inter_channels * 2, 1)

    def forward(self, y, lengths, g=None):
        y_mask = commons.sequence_mask(lengths, y.size(2)).unsqueeze(1).to(y.dtype)
        x = self.enc(self.pre(y) * y_mask, y_mask, g=g)
        m, logs = torch.split(self.proj(x) * y_mask, self.out_channels, dim=1)
        z = (m + torch.randn_like(m) * torch.exp(logs)) * y_mask
        return z, m, logs, y_mask


@dataclass
class GeneratorOutput:
    """What one training forward pass returns (all tensors)."""

    audio: torch.Tensor          # [b, 1, segment samples]
    loss_dur: torch.Tensor       # scalar duration loss
    attn: torch.Tensor           # [b, 1, t_y, t_x] hard alignment
    slice_starts: torch.Tensor   # [b] first latent frame of each rendered segment
    x_mask: torch.Tensor
    y_mask: torch.Tensor
    z_p: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor
    m_q: torch.Tensor
    logs_q: torch.Tensor


class VitsGenerator(nn.Module):
    """VITS synthesizer. ``forward`` trains on (ids, spectrogram); ``infer`` speaks."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        cfg = config.model
        self.config = config
        self.n_speakers = cfg.n_speakers
        self.use_sdp = cfg.use_sdp
        self.segment_frames = config.segment_frames
        self.enc_p = TextEncoder(cfg)
        self.dec = MultiBandIstftDecoder(cfg) if cfg.decoder == DECODER_MB_ISTFT else HifiGanDecoder(cfg)
        self.enc_q = PosteriorEncoder(config.audio.spec_channels, cfg)
        self.flow = ResidualCouplingBlock(cfg)
        if cfg.use_sdp:
            self.dp = StochasticDurationPredictor(cfg.hidden_channels, cfg.gin_channels)
        else:
            self.dp = DurationPredictor(cfg.hidden_channels, cfg.dp_filter_channels, 3, 0.5,
                                        cfg.gin_channels)
        if cfg.n_speakers > 1:
            self.emb_g = nn.Embedding(cfg.n_speakers, cfg.gin_channels)

    def speaker_embedding(self, sid: torch.Tensor | None) -> torch.Tensor | None:
        """[b, gin, 1] conditioning vector, or None for single-speaker models."""
        if self.n_speakers <= 1:
            return None
        if sid is None:
            sid = torch.zeros(1, dtype=torch.long, device=self.emb_g.weight.device)
        return self.emb_g(sid).unsqueeze(-1)

    def forward(self, ids, id_lengths, spec, spec_lengths, sid=None,
                generator: torch.Generator | None = None) -> GeneratorOutput:
        """Training pass: align text to audio with MAS and render a random segment."""
        x, m_p, logs_p, x_mask = self.enc_p(ids, id_lengths)
        g = self.speaker_embedding(sid)
        z, m_q, logs_q, y_mask = self.enc_q(spec, spec_lengths, g=g)
        z_p = self.flow(z, y_mask, g=g)
        attn = _align(z_p, m_p, logs_p, x_mask, y_mask)
        w = attn.sum(2)
        if self.use_sdp:
            loss_dur = torch.sum(self.dp(x, x_mask, w, g=g)) / torch.sum(x_mask)
        else:
            logw_target = torch.log(w + 1e-6) * x_mask
            loss_dur = torch.sum((self.dp(x, x_mask, g=g) - logw_target) ** 2) / torch.sum(x_mask)
        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
        z_slice, starts = commons.rand_slice_segments(z, spec_lengths, self.segment_frames, generator)
        audio = self.dec(z_slice, g=g)
        return GeneratorOutput(audio, loss_dur, attn, starts, x_mask, y_mask, z_p, m_p, logs_p,
                               m_q, logs_q)

    def infer(self, ids, lengths, sid=None, noise_scale=0.667, length_scale=1.0,
              noise_scale_w=0.8, max_frames: int | None = None):
        """Speak phoneme ids: returns (audio [b, 1, samples], attn, y_mask)."""
        x, m_p, logs_p, x_mask = self.enc_p(ids, lengths)
        g = self.speaker_embedding(sid)
        if self.use_sdp:
            logw = self.dp(x, x_mask, g=g, reverse=True, noise_scale=noise_scale_w)
        else:
            logw = self.dp(x, x_mask, g=g)
        w_ceil = torch.ceil(torch.exp(logw) * x_mask * length_scale)
        y_lengths = torch.clamp_min(torch.sum(w_ceil, [1, 2]), 1).long()
        y_mask = commons.sequence_mask(y_lengths, y_lengths.max()).unsqueeze(1).to(x_mask.dtype)
        attn = commons.generate_path(w_ceil, x_mask.unsqueeze(2) * y_mask.unsqueeze(-1))
        m_p = torch.matmul(attn.squeeze(1), m_p.transpose(1, 2)).transpose(1, 2)
        logs_p = torch.matmul(attn.squeeze(1), logs_p.transpose(1, 2)).transpose(1, 2)
        z_p = m_p + torch.randn_like(m_p) * torch.exp(logs_p) * noise_scale
        z = self.flow(z_p, y_mask, g=g, reverse=True)
        audio = self.dec((z * y_mask)[:, :, :max_frames], g=g)
        return audio, attn, y_mask

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights (for export and fast inference)."""
        commons.remove_weight_norm(self)


def _align(z_p, m_p, logs_p, x_mask, y_mask) -> torch.Tensor:
    """Monotonic alignment [b, 1, t_y, t_x] maximising the prior log-likelihood of z_p."""
    with torch.no_grad():
        s_p_sq_r = torch.exp(-2 * logs_p)
        nc1 = torch.sum(-0.5 * LOG_2PI - logs_p, [1], keepdim=True)
        nc2 = torch.matmul(-0.5 * (z_p**2).transpose(1, 2), s_p_sq_r)
        nc3 = torch.matmul(z_p.transpose(1, 2), m_p * s_p_sq_r)
        nc4 = torch.sum(-0.5 * (m_p**2) * s_p_sq_r, [1], keepdim=True)
        neg_cent = (nc1 + nc2 + nc3 + nc4).float()
        attn_mask = x_mask.unsqueeze(2) * y_mask.unsqueeze(-1)
        return maximum_path(neg_cent, attn_mask.squeeze(1)).unsqueeze(1).to(z_p.dtype)
