"""A3C: asynchronous advantage actor-critic (network, shared optimizer, workers, local and Ray backends)."""

from agents.a3c.agent import A3CAgent, A3CConfig

__all__ = ["A3CAgent", "A3CConfig"]
