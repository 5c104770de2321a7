"""Which env family an id belongs to, how it is preprocessed, and id validation with suggestions.

`EnvConfig` is plain data: it is stored in every checkpoint so that `evaluate.py` rebuilds exactly
the env an agent was trained on.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym

from trainer.errors import UnknownEnvError

Family = Literal["classic", "atari", "vizdoom"]
Preprocessing = Literal["none", "dqn", "karpathy", "doom"]

_registered = False


def ensure_registered() -> None:
    """Register ale-py's, vizdoom's and the suite's own (XOR-v0) Gymnasium ids once, so users never have to."""
    global _registered
    if _registered:
        return
    import ale_py

    gym.register_envs(ale_py)
    from envs import xor

    xor.register()  # the suite's own toy task for neuroevolution (NEAT)
    if importlib.util.find_spec("vizdoom") is not None:
        import vizdoom.gymnasium_wrapper  # noqa: F401  (registers Vizdoom* ids on import)
    _registered = True


def env_family(env_id: str) -> Family:
    if env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4"):
        return "atari"
    if env_id.startswith("Vizdoom"):
        return "vizdoom"
    return "classic"


def check_env_id(env_id: str) -> None:
    """Raise `UnknownEnvError` naming the closest registered ids when `env_id` is not known."""
    ensure_registered()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(f"unknown env id '{env_id}'{hint}")


@dataclass(frozen=True)
class EnvConfig:
    """How to build one env. Defaults give the usual preprocessing for the id's family."""

    env_id: str
    preprocessing: Preprocessing | None = None
    """`dqn` (Atari stack), `karpathy` (Pong difference frames), `doom` (screen to grayscale) or `none`;
    None picks the family's default."""
    frame_stack: int = 4
    """Frames stacked by the `dqn` and `doom` preprocessing (1 = no stacking)."""
    screen_size: int = 84
    """Side of the square grayscale frame for `dqn` and `doom`."""
    frame_skip: int = 4
    """Frames each action repeats for (Atari max-pools the last two; VizDoom passes it to the engine)."""
    noop_max: int = 30
    """Most random no-ops at an Atari reset (Mnih et al. 2015)."""
    clip_rewards: bool = True
    """Sign-clip rewards in training (Atari `dqn` preprocessing only); evaluation never clips."""
    episodic_life: bool = True
    """End a training episode at each life lost (Atari `dqn` preprocessing only); evaluation never does."""
    repeat_action_probability: float = 0.25
    """Sticky actions of ALE v5 (Machado et al. 2018); 0 for the deterministic v4 behaviour."""

    @property
    def family(self) -> Family:
        return env_family(self.env_id)

    def resolved_preprocessing(self) -> Preprocessing:
        if self.preprocessing is not None:
            return self.preprocessing
        return {"atari": "dqn", "vizdoom": "doom", "classic": "none"}[self.family]
