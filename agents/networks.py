"""Network builders shared by the deep agents: an MLP for vector observations and the Nature CNN for
stacks of 84x84 frames, picked from the observation space by `make_torso`.

A torso maps a batch of observations to a flat feature vector; each agent puts its own heads on top
(Q-values, a policy, a value).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from core.errors import ConfigError


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int | None = None) -> nn.Sequential:
    """Linear+ReLU layers of `hidden_sizes`; a final plain Linear to `out_features` when given."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """The convolutional torso of Mnih et al. (2015): 32 8x8/4, 64 4x4/2, 64 3x3/1, then 512 units.

    Input: (batch, channels, H, W) uint8 frames (a 2-D (batch, H, W) input gets one channel); they
    are scaled to [0, 1] here so replay buffers keep the compact uint8 form. Output: (batch, 512).

    Weights and activations are kept channels-last: on CPU the oneDNN convolutions skip their layout
    reorders then (the gain is in docs/performance.md).

    `scale` multiplies every layer's width (0.5: 16, 32, 32 filters and 256 units), for a cheaper update.
    """

    def __init__(self, in_channels: int, height: int = 84, width: int = 84, scale: float = 1.0):
        super().__init__()
        c1, c2, c3, features = (max(1, round(n * scale)) for n in (32, 64, 64, 512))
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.out_features = features
        self.convs.to(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames, or frames already scaled by `inputs` (any float dtype): (batch, 512)."""
        if frames.dtype == torch.uint8:
            frames = self.inputs(frames)
        return self.fc(self.convs(frames))

    def inputs(self, frames: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 frames -> `dtype` values in [0, 1], channels-last, as `forward` reads them. An update that
        reads one batch in several passes scales it once. In bfloat16 (for bf16 autocast) the division
        still rounds once from its float32 result (every byte is exact in bfloat16), so the values equal
        float32 frames cast by autocast, without the float32 copy."""
        if frames.dim() == 3:
            frames = frames.unsqueeze(1)
        if dtype == torch.float32:
            # Reorder the uint8 frames (a quarter of the bytes of floats); the float copy keeps the layout.
            return frames.contiguous(memory_format=torch.channels_last).to(dtype).div_(255.0)
        # A narrow float is converted and scaled in the frames' own layout first: faster on the CPU.
        return frames.to(dtype).div_(255.0).contiguous(memory_format=torch.channels_last)


class FlatMLP(nn.Module):
    """An MLP torso that flattens (batch, *obs_shape) float observations first. Output: (batch, last)."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int]):
        super().__init__()
        self.body = mlp(in_features, hidden_sizes)
        self.out_features = hidden_sizes[-1] if hidden_sizes else in_features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.body(self.inputs(observations))

    def inputs(self, observations: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(batch, *shape) -> (batch, features) float32; autocast casts inside the layers (`dtype` is
        the Nature CNN's choice, unused here)."""
        return observations.flatten(1).float()


def adam(parameters, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has one for the parameters' device (CPU since torch
    2.4): one pass over the parameters instead of several foreach passes (docs/performance.md)."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr, eps=eps)


def clip_grad_norm(parameters: Sequence[nn.Parameter], max_norm: float) -> None:
    """`nn.utils.clip_grad_norm_`, the same gradients, without its multiply by 1 when the norm is within
    `max_norm` (on the CPU, where reading the norm costs no device sync): that multiply is a full pass
    over every gradient, which an update within the limit does not need."""
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters or parameters[0].device.type != "cpu":
        nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    norm = nn.utils.get_total_norm([p.grad for p in parameters])
    # torch scales by min(1, max_norm / (norm + 1e-6)): by exactly 1, a no-op, where this is at least 1
    # (a NaN norm still scales, as torch does).
    if not bool(max_norm / (norm + 1e-6) >= 1.0):
        nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)


def check_compiler(device: torch.device) -> None:
    """`torch.compile` builds its kernels with a C compiler (C++ on the CPU); without one the first update
    would fail mid-run, so the run is refused before it starts."""
    names = (
        [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if device.type == "cpu"
        else [os.environ.get("CC", ""), "gcc", "cc", "clang"]
    )
    if not any(name and shutil.which(name) for name in names):
        kind = "C++" if device.type == "cpu" else "C"
        raise ConfigError(
            f"compile_update needs a {kind} compiler on PATH ({', '.join(names[1:])}); install one or leave it off"
        )


def compiled(module: nn.Module) -> nn.Module:
    """`torch.compile(module)`: a view sharing the module's parameters, so the module's state_dict (and
    so the checkpoint) keeps its plain names. Kernels are built in this process: no pool of compile
    workers that could outlive a killed run."""
    import torch._inductor.config as inductor  # noqa: PLC0415  (loaded only when compiling)

    inductor.compile_threads = 1
    return torch.compile(module)


def is_image_space(space: gym.Space) -> bool:
    """uint8 boxes of 2 or 3 dimensions are frames (Atari `dqn`, VizDoom `doom`)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def make_torso(space: gym.Space, hidden_sizes: Sequence[int], cnn_scale: float = 1.0) -> nn.Module:
    """Nature CNN (its widths times `cnn_scale`) for image stacks, else an MLP with `hidden_sizes`;
    `.out_features` gives its width."""
    shape = space.shape
    if is_image_space(space):
        channels = shape[0] if len(shape) == 3 else 1
        return NatureCNN(channels, shape[-2], shape[-1], scale=cnn_scale)
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"no torso for observation space {space}")
    return FlatMLP(int(np.prod(shape)), hidden_sizes)
