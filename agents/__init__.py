"""The agents and their Python interface.

    from agents import make, load, StopAtReturn
    agent = make("dqn", env="CartPole-v1", seed=1, learning_rate=1e-3)
    result = agent.learn(50_000, run_dir="runs/cp", callbacks=[StopAtReturn(475)])
    actions, state = agent.predict(observations)
    agent.save("cartpole.pt"); again = load("cartpole.pt")

The registry maps command-line names to the modules that define them; a module is imported only when
its agent is used, so `train.py qtable` never loads CNNs, VizDoom or Ray.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any

from core.errors import UnknownAgentError

if TYPE_CHECKING:
    from agents.api import load as load
    from agents.api import make as make
    from agents.base import Agent as Agent
    from agents.base import TrainResult as TrainResult
    from agents.callbacks import Callback as Callback
    from agents.callbacks import CheckpointEvery as CheckpointEvery
    from agents.callbacks import StopAfter as StopAfter
    from agents.callbacks import StopAtReturn as StopAtReturn
    from agents.evaluation import Evaluate as Evaluate

AGENTS: dict[str, str] = {
    "qtable": "agents.qtable:QTableAgent",
    "qnet": "agents.qnet:QNetworkAgent",
    "dqn": "agents.dqn:DQNAgent",
    "pg": "agents.pg:PolicyGradientAgent",
    "a3c": "agents.a3c:A3CAgent",
    "neat": "agents.neat.agent:NeatAgent",
}

# The interface, imported on first use (it brings torch and gymnasium).
_LAZY = {
    "make": "agents.api",
    "load": "agents.api",
    "Agent": "agents.base",
    "TrainResult": "agents.base",
    "Callback": "agents.callbacks",
    "CheckpointEvery": "agents.callbacks",
    "StopAfter": "agents.callbacks",
    "StopAtReturn": "agents.callbacks",
    "Evaluate": "agents.evaluation",
}

__all__ = ["AGENTS", "agent_names", "get_agent_class", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def agent_names() -> list[str]:
    return list(AGENTS)


def get_agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        close = difflib.get_close_matches(name, AGENTS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownAgentError(f"unknown agent '{name}'{hint} (available: {', '.join(AGENTS)})")
    module_name, class_name = AGENTS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
