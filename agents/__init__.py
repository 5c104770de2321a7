"""The agent registry: command-line name -> the module that defines it (imported only when used)."""

from __future__ import annotations

import difflib
import importlib

from trainer.errors import UnknownAgentError

# name -> "module:Class"; modules are imported lazily so `train.py qtable` never loads torch CNNs,
# VizDoom or Ray.
AGENTS: dict[str, str] = {
    "qtable": "agents.qtable:QTableAgent",
    "qnet": "agents.qnet:QNetworkAgent",
    "dqn": "agents.dqn:DQNAgent",
    "pg": "agents.pg:PolicyGradientAgent",
    "a3c": "agents.a3c:A3CAgent",
    "neat": "agents.neat.agent:NeatAgent",
}


def agent_names() -> list[str]:
    return list(AGENTS)


def get_agent_class(name: str):
    if name not in AGENTS:
        close = difflib.get_close_matches(name, AGENTS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownAgentError(f"unknown agent '{name}'{hint} (available: {', '.join(AGENTS)})")
    module_name, class_name = AGENTS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
