"""Building blocks of VITS: normalisation, WaveNet, residual blocks and invertible flows.

Attribute names follow the original VITS/Piper layout so that Piper weights map 1:1.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .commons import gated_activation, get_padding, init_weights, weight_norm

LRELU_SLOPE = 0.1
#: Smallest bin width/height/slope of the rational-quadratic spline (keeps it invertible).
SPLINE_MIN_BIN = 1e-3
SPLINE_MIN_DERIVATIVE = 1e-3
#: Small epsilon added to the last bin edge so the top value lands in the last bin.
SPLINE_SEARCH_EPS = 1e-6


class LayerNorm(nn.Module):
    """Layer norm over the channel axis of a [b, c, t] tensor."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class DDSConv(nn.Module):
    """Dilated depth-separable convolutions with residual connections."""

    def __init__(self, channels: int, kernel_size: int, n_layers: int, p_dropout: float = 0.0):
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_sep.append(nn.Conv1d(
                channels, channels, kernel_size, groups=channels, dilation=dilation,
                padding=get_padding(kernel_size, dilation)))
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(LayerNorm(channels))
            self.norms_2.append(LayerNorm(channels))

    def forward(self, x, x_mask, g=None):
        if g is not None:
            x = x + g
        for sep, pw, n1, n2 in zip(self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2):
            y = F.gelu(n1(sep(x * x_mask)))
            y = F.gelu(n2(pw(y)))
            x = x + self.drop(y)
        return x * x_mask


class WN(nn.Module):
    """Non-causal WaveNet: gated dilated convs with optional global conditioning."""

    def __init__(self, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, gin_channels: int = 0, p_dropout: float = 0.0):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        if gin_channels:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(weight_norm(nn.Conv1d(
                hidden_channels, 2 * hidden_channels, kernel_size, dilation=dilation,
                padding=get_padding(kernel_size, dilation))))
            # The last layer only feeds the skip output.
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, out, 1)))

    def forward(self, x, x_mask, g=None):
        h = self.hidden_channels
        output = torch.zeros_like(x)
        if g is not None:
            g = self.cond_layer(g)
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            g_l = g[:, i * 2 * h:(i + 1) * 2 * h] if g is not None else 0.0
            acts = self.drop(gated_activation(in_layer(x), g_l, h))
            rs = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + rs[:, :h]) * x_mask
                output = output + rs[:, h:]
            else:
                output = output + rs
        return output * x_mask


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: three (dilated conv, conv) pairs."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=get_padding(kernel_size, d))) for d in dilation)
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=1,
                                  padding=get_padding(kernel_size, 1))) for _ in dilation)
        self.convs1.apply(init_weights)
        self.convs2.apply(init_weights)

    def forward(self, x, x_mask=None):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, LRELU_SLOPE)
            xt = c1(xt if x_mask is None else xt * x_mask)
            xt = F.leaky_relu(xt, LRELU_SLOPE)
            xt = c2(xt if x_mask is None else xt * x_mask)
            x = x + xt
        return x if x_mask is None else x * x_mask


class ResBlock2(nn.Module):
    """HiFi-GAN residual block type 2: one conv per dilation (Piper medium/low)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d,
                                  padding=get_padding(kernel_size, d))) for d in dilation)
        self.convs.apply(init_weights)

    def forward(self, x, x_mask=None):
        for conv in self.convs:
            xt = F.leaky_relu(x, LRELU_SLOPE)
            x = x + conv(xt if x_mask is None else xt * x_mask)
        return x if x_mask is None else x * x_mask


class Log(nn.Module):
    """Invertible log transform of durations (clamped away from zero)."""

    def forward(self, x, x_mask, reverse=False, **kwargs):
        if reverse:
            return torch.exp(x) * x_mask
        y = torch.log(torch.clamp_min(x, 1e-5)) * x_mask
        return y, torch.sum(-y, [1, 2])


class Flip(nn.Module):
    """Reverse the channel order so the next coupling layer transforms the other half."""

    def forward(self, x, *args, reverse=False, **kwargs):
        x = torch.flip(x, [1])
        if reverse:
            return x
        return x, torch.zeros(x.size(0), dtype=x.dtype, device=x.device)


class ElementwiseAffine(nn.Module):
    """y = m + exp(logs) * x, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x, x_mask, reverse=False, **kwargs):
        if reverse:
            return (x - self.m) * torch.exp(-self.logs) * x_mask
        y = (self.m + torch.exp(self.logs) * x) * x_mask
        return y, torch.sum(self.logs * x_mask, [1, 2])


class ResidualCouplingLayer(nn.Module):
    """Affine coupling (mean-only in VITS): shift one half by a WaveNet of the other."""

    def __init__(self, channels: int, hidden_channels: int, kernel_size: int, dilation_rate: int,
                 n_layers: int, p_dropout: float = 0.0, gin_channels: int = 0, mean_only: bool = True):
        super().__init__()
        self.half = channels // 2
        self.mean_only = mean_only
        self.pre = nn.Conv1d(self.half, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers,
                      gin_channels=gin_channels, p_dropout=p_dropout)
        self.post = nn.Conv1d(hidden_channels, self.half * (2 - mean_only), 1)
        # Start as the identity transform.
        self.post.weight.data.zero_()
        self.post.bias.data.zero_()

    def forward(self, x, x_mask, g=None, reverse=False):
        x0, x1 = torch.split(x, [self.half, self.half], 1)
        h = self.enc(self.pre(x0) * x_mask, x_mask, g=g)
        stats = self.post(h) * x_mask
        if self.mean_only:
            m, logs = stats, torch.zeros_like(stats)
        else:
            m, logs = torch.split(stats, [self.half, self.half], 1)
        if reverse:
            x1 = (x1 - m) * torch.exp(-logs) * x_mask
            return torch.cat([x0, x1], 1)
        x1 = m + x1 * torch.exp(logs) * x_mask
        return torch.cat([x0, x1], 1), torch.sum(logs, [1, 2])


class ConvFlow(nn.Module):
    """Neural spline coupling used by the stochastic duration predictor."""

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, n_layers: int,
                 num_bins: int = 10, tail_bound: float = 5.0):
        super().__init__()
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.half = in_channels // 2
        self.pre = nn.Conv1d(self.half, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers, p_dropout=0.0)
        self.proj = nn.Conv1d(filter_channels, self.half * (num_bins * 3 - 1), 1)
        self.proj.weight.data.zero_()
        self.proj.bias.data.zero_()

    def forward(self, x, x_mask, g=None, reverse=False):
        x0, x1 = torch.split(x, [self.half, self.half], 1)
        h = self.proj(self.convs(self.pre(x0), x_mask, g=g)) * x_mask
        b, c, t = x0.shape
        h = h.reshape(b, c, -1, t).permute(0, 1, 3, 2)  # [b, c, t, 3*bins-1]
        scale = math.sqrt(self.filter_channels)
        widths = h[..., :self.num_bins] / scale
        heights = h[..., self.num_bins:2 * self.num_bins] / scale
        derivs = h[..., 2 * self.num_bins:]
        x1, logdet = rq_spline_linear_tails(x1, widths, heights, derivs, reverse, self.tail_bound)
        x = torch.cat([x0, x1], 1) * x_mask
        if reverse:
            return x
        return x, torch.sum(logdet * x_mask, [1, 2])


def _bin_edges(unnormalized: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative bin edges in [-bound, bound] and bin sizes from unnormalised logits."""
    num_bins = unnormalized.shape[-1]
    sizes = SPLINE_MIN_BIN + (1 - SPLINE_MIN_BIN * num_bins) * F.softmax(unnormalized, dim=-1)
    edges = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
    edges = 2 * bound * edges - bound
    # Pin the outer edges exactly so rounding never leaves a gap at the bounds.
    edges = torch.cat([torch.full_like(edges[..., :1], -bound), edges[..., 1:-1],
                       torch.full_like(edges[..., :1], bound)], dim=-1)
    return edges, edges[..., 1:] - edges[..., :-1]


def _pick(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.gather(-1, idx)[..., 0]


def rq_spline_linear_tails(x, unnorm_w, unnorm_h, unnorm_d, inverse: bool, bound: float):
    """Monotonic rational-quadratic spline on [-bound, bound], identity outside (Durkan et al. 2019).

    Returns the transformed values and log|dy/dx| (of the direction applied).
    """
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    # Linear tails: slope 1 at both ends, so the spline meets the identity smoothly.
    edge_d = math.log(math.exp(1 - SPLINE_MIN_DERIVATIVE) - 1)
    unnorm_d = F.pad(unnorm_d, (1, 1), value=edge_d)
    cw, widths = _bin_edges(unnorm_w, bound)
    ch, heights = _bin_edges(unnorm_h, bound)
    derivs = SPLINE_MIN_DERIVATIVE + F.softplus(unnorm_d)
    search = ch if inverse else cw
    search = torch.cat([search[..., :-1], search[..., -1:] + SPLINE_SEARCH_EPS], dim=-1)
    idx = (torch.sum((xc[..., None] >= search).long(), dim=-1) - 1).clamp(0, widths.size(-1) - 1)
    idx = idx[..., None]
    x_cw, w, x_ch, hgt = _pick(cw, idx), _pick(widths, idx), _pick(ch, idx), _pick(heights, idx)
    delta = _pick(heights / widths, idx)
    d0, d1 = _pick(derivs, idx), _pick(derivs[..., 1:], idx)
    s = d0 + d1 - 2 * delta
    if inverse:
        dy = xc - x_ch
        a = dy * s + hgt * (delta - d0)
        b = hgt * d0 - dy * s
        c = -delta * dy
        theta = (2 * c) / (-b - torch.sqrt(torch.clamp_min(b.pow(2) - 4 * a * c, 0.0)))
        out = theta * w + x_cw
    else:
        theta = (xc - x_cw) / w
        tt = theta * (1 - theta)
        out = x_ch + hgt * (delta * theta.pow(2) + d0 * tt) / (delta + s * tt)
    tt = theta * (1 - theta)
    num = delta.pow(2) * (d1 * theta.pow(2) + 2 * delta * tt + d0 * (1 - theta).pow(2))
    logdet = torch.log(num) - 2 * torch.log(delta + s * tt)
    if inverse:
        logdet = -logdet
    return torch.where(inside, out, x), torch.where(inside, logdet, torch.zeros_like(logdet))
