"""Waveform decoders: the shared HiFi-GAN upsampling body and the HiFi-GAN decoder proper."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .commons import init_weights, weight_norm
from .config import ModelConfig
from .modules import LRELU_SLOPE, ResBlock1, ResBlock2

#: Kernel of the decoder's input and output convolutions.
PRE_POST_KERNEL = 7
#: Piper/VITS apply torch's default leaky-ReLU slope (0.01) before conv_post.
FINAL_LRELU_SLOPE = 0.01


class UpsamplerBase(nn.Module):
    """conv_pre → [transposed conv → averaged multi-receptive-field res blocks] × n.

    Speaker conditioning (``cond``) is added right after ``conv_pre`` so every
    decoder built on this body, multi-band included, hears the speaker.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch0 = cfg.upsample_initial_channel
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(cfg.inter_channels, ch0, PRE_POST_KERNEL, 1, padding=3)
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            ch = ch0 // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(
                ch0 // (2**i), ch, kernel, rate, padding=(kernel - rate) // 2)))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, d))
        self.out_channels = ch0 // (2 ** len(cfg.upsample_rates))
        self.ups.apply(init_weights)
        if cfg.gin_channels:
            self.cond = nn.Conv1d(cfg.gin_channels, ch0, 1)

    def body(self, x: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """Upsampled features [b, out_channels, t * prod(rates)] before the output layer."""
        x = self.conv_pre(x)
        if g is not None:
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        return F.leaky_relu(x, FINAL_LRELU_SLOPE)


class HifiGanDecoder(UpsamplerBase):
    """The VITS/Piper decoder: latent frames → waveform in [-1, 1], [b, 1, t * hop]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.conv_post = nn.Conv1d(self.out_channels, 1, PRE_POST_KERNEL, 1, padding=3, bias=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.conv_post(self.body(x, g)))
