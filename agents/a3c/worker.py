"""One A3C worker: its own env and local network, t_max-step rollouts and the gradients they give.

`RolloutLearner` is backend-neutral (the local Hogwild processes and the Ray actors both use it);
`worker_main` is the body of one local worker process.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.a3c.config import A3CConfig
from agents.a3c.network import ActorCritic
from agents.a3c.returns import a3c_loss, gae, n_step_returns
from core.resources import die_with_parent, keep_freed_memory
from envs import EnvConfig, make_env


@dataclass
class Rollout:
    """Up to t_max consecutive steps of one episode. obs (T, *obs_shape) as the env gives them."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    """(T,) float32, already multiplied by reward_scale."""
    bootstrap: float
    """V(s_T) after a cut or a time-limit truncation; 0 after termination."""
    start_state: Any
    episodes: list[tuple[float, int]] = field(default_factory=list)
    """(real return, length) of the episode this rollout finished, from RecordEpisodeStatistics."""


def build_network(config: A3CConfig, observation_space, action_space) -> ActorCritic:
    return ActorCritic(observation_space.shape, int(action_space.n), config.hidden_size, config.lstm_size)


class RolloutLearner:
    """Env + local network of one worker."""

    def __init__(self, config: A3CConfig, env_config: EnvConfig, seed: int):
        torch.manual_seed(seed)
        self.config = config
        self.env = make_env(env_config, seed=seed, mode="train")
        self.net = build_network(config, self.env.observation_space, self.env.action_space)
        self.obs, _ = self.env.reset()
        self.state = self.net.initial_state()

    def rollout(self) -> Rollout:
        """Act with the local network for t_max steps or until the episode ends (no gradients)."""
        c = self.config
        start_state = self.state
        obs, actions, rewards, episodes = [], [], [], []
        bootstrap = 0.0
        with torch.no_grad():
            for _ in range(c.t_max):
                logits, _, self.state = self.net(torch.as_tensor(self.obs[None]), self.state)
                action = int(torch.distributions.Categorical(logits=logits[0]).sample())
                next_obs, reward, terminated, truncated, info = self.env.step(action)
                obs.append(self.obs)
                actions.append(action)
                rewards.append(float(reward) * c.reward_scale)
                if terminated or truncated:
                    if truncated and not terminated:  # a time limit is not a real end: bootstrap
                        bootstrap = float(self.net(torch.as_tensor(next_obs[None]), self.state)[1][0])
                    episodes.append((float(info["episode"]["r"]), int(info["episode"]["l"])))
                    self.obs, _ = self.env.reset()
                    self.state = self.net.initial_state()
                    break
                self.obs = next_obs
            else:
                bootstrap = float(self.net(torch.as_tensor(self.obs[None]), self.state)[1][0])
        rewards_array = np.array(rewards, np.float32)
        return Rollout(np.stack(obs), np.array(actions), rewards_array, bootstrap, start_state, episodes)

    def compute_gradients(self, rollout: Rollout) -> dict[str, float]:
        """Backward pass of the A3C loss into the local network's `.grad`, clipped to max_grad_norm."""
        c = self.config
        logits, values, _ = self.net(torch.as_tensor(rollout.obs), rollout.start_state)
        returns = n_step_returns(rollout.rewards, rollout.bootstrap, c.gamma)
        advantages = gae(rollout.rewards, values.detach().numpy(), rollout.bootstrap, c.gamma, c.gae_lambda)
        loss, stats = a3c_loss(
            logits,
            values,
            torch.as_tensor(rollout.actions),
            torch.as_tensor(returns),
            torch.as_tensor(advantages),
            c.value_coef,
            c.entropy_coef,
        )
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        stats["losses/grad_norm"] = float(nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm))
        return stats

    def close(self) -> None:
        self.env.close()


def worker_main(
    rank: int,
    config: A3CConfig,
    env_config: EnvConfig,
    seed: int,
    global_net: nn.Module,
    optimizer: torch.optim.Optimizer,
    queue: Any,
    stop: Any,
    step_budget: Any = None,
) -> None:
    """Loop: sync from global, roll out, apply gradients to the global network lock-free (Hogwild).

    `step_budget` (a shared integer, optional) counts down the steps left to all workers together; a
    worker stops when it reaches 0, so the run ends on budget even when the main process lags behind.
    Sends ("update", rank, steps, episodes, stats) after each update, ("error", rank, traceback) if
    anything raises, ("done", rank) when `stop` is set.
    """
    parent = multiprocessing.parent_process()
    die_with_parent(parent.pid if parent is not None else None)  # even a `kill -9`'d trainer takes its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process owns Ctrl-C and sets `stop`
    # terminate() must still close the env: the VizDoom engine is a separate process that ignores SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    torch.set_num_threads(1)  # one core per worker; more threads only fight each other
    keep_freed_memory()  # as the trainer's process does: each update reuses the last one's memory
    learner = None
    try:
        learner = RolloutLearner(config, env_config, seed)
        global_params = list(global_net.parameters())
        while not stop.is_set() and (step_budget is None or step_budget.value > 0):
            learner.net.load_state_dict(global_net.state_dict())
            rollout = learner.rollout()
            stats = learner.compute_gradients(rollout)
            for global_param, local_param in zip(global_params, learner.net.parameters(), strict=True):
                global_param.grad = local_param.grad  # this process's view only; storage stays shared
            optimizer.step()
            if step_budget is not None:
                with step_budget.get_lock():
                    step_budget.value -= len(rollout.actions)
            queue.put(("update", rank, len(rollout.actions), rollout.episodes, stats))
        queue.put(("done", rank))
    except SystemExit:
        pass
    except BaseException:
        queue.put(("error", rank, traceback.format_exc()))
    finally:
        if learner is not None:
            learner.close()
