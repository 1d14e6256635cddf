"""Small tensor helpers shared by the VITS modules: masks, paths, slicing, weight norm."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

#: Standard deviation of HiFi-GAN's initial conv weights.
INIT_STD = 0.01


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel with the given dilation."""
    return (kernel_size * dilation - dilation) // 2


def init_weights(module: nn.Module, std: float = INIT_STD) -> None:
    """Normal init for conv layers (HiFi-GAN's choice); other modules untouched."""
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d)):
        module.weight.data.normal_(0.0, std)


def weight_norm(module: nn.Module) -> nn.Module:
    """Weight-normalise ``module.weight`` (the parametrization API, not the deprecated one)."""
    return _weight_norm(module, name="weight")


def remove_weight_norm(root: nn.Module) -> None:
    """Fold every weight-norm parametrization under ``root`` into a plain ``weight``."""
    for module in root.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


def sequence_mask(lengths: torch.Tensor, max_length: int | torch.Tensor | None = None) -> torch.Tensor:
    """Boolean [b, t] mask, True where the position is inside the sequence."""
    if max_length is None:
        max_length = lengths.max()
    positions = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def generate_path(durations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard alignment [b, 1, t_y, t_x] from integer durations [b, 1, t_x]."""
    b, _, t_y, t_x = mask.shape
    ends = torch.cumsum(durations, -1).view(b * t_x)
    path = sequence_mask(ends, t_y).to(mask.dtype).view(b, t_x, t_y)
    # Frames up to the end of token i minus frames up to the end of token i-1.
    path = path - F.pad(path, (0, 0, 1, 0, 0, 0))[:, :-1]
    return path.unsqueeze(1).transpose(2, 3) * mask


def slice_segments(x: torch.Tensor, starts: torch.Tensor, size: int) -> torch.Tensor:
    """Gather x[b, :, starts[b]:starts[b]+size] for each batch item, without a Python loop."""
    idx = starts.view(-1, 1) + torch.arange(size, device=x.device).view(1, -1)
    idx = idx.clamp(max=x.size(2) - 1).unsqueeze(1).expand(-1, x.size(1), -1)
    return torch.gather(x, 2, idx)


def rand_slice_segments(
    x: torch.Tensor, lengths: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``size`` frames inside each item's valid length."""
    max_start = (lengths - size + 1).clamp(min=1)
    rand = torch.rand(x.size(0), generator=generator, device="cpu").to(x.device)
    starts = (rand * max_start).long()
    return slice_segments(x, starts, size), starts


def kl_divergence_gaussian(m_p, logs_p, m_q, logs_q) -> torch.Tensor:
    """Element-wise KL(P || Q) between diagonal Gaussians given means and log-stds."""
    kl = (logs_q - logs_p) - 0.5
    return kl + 0.5 * (torch.exp(2.0 * logs_p) + (m_p - m_q) ** 2) * torch.exp(-2.0 * logs_q)


def gated_activation(x_in: torch.Tensor, g: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet gate: tanh of the first half times sigmoid of the second half."""
    act = x_in + g
    return torch.tanh(act[:, :n_channels]) * torch.sigmoid(act[:, n_channels:])


LOG_2PI = math.log(2 * math.pi)
