"""Which env family an id belongs to, how it is preprocessed, and id validation with suggestions.

`EnvConfig` is plain data: it is stored in every checkpoint so that `evaluate.py` rebuilds exactly
the env an agent was trained on.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import gymnasium as gym

from core.errors import ConfigError, UnknownEnvError

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


def split_env_id(env_id: str) -> tuple[str, str]:
    """`"pkg.module:EnvId-v0"` -> `("pkg.module", "EnvId-v0")`; a plain id -> `("", id)` (gymnasium's syntax)."""
    module, sep, name = env_id.rpartition(":")
    return (module, name) if sep else ("", env_id)


def import_env_module(env_id: str) -> None:
    """Import the module named before the colon of `pkg.module:EnvId-v0`, which registers the id."""
    module, _ = split_env_id(env_id)
    if not module:
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # any error while importing the user's module is their env's problem
        raise UnknownEnvError(f"cannot import {module!r} for env '{env_id}': {type(exc).__name__}: {exc}") from exc


def env_family(env_id: str) -> Family:
    env_id = split_env_id(env_id)[1]
    if env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4"):
        return "atari"
    if env_id.startswith("Vizdoom"):
        return "vizdoom"
    return "classic"


def check_env_id(env_id: str, entry_point: str = "") -> None:
    """Raise `UnknownEnvError` naming the closest registered ids when `env_id` is not known.

    `pkg.module:EnvId-v0` imports `pkg.module` first (it registers the id); an id that is still
    unknown but comes with an `entry_point` (`module:callable` returning an env) is registered here.
    """
    ensure_registered()
    import_env_module(env_id)
    name = split_env_id(env_id)[1]
    if name in gym.registry:
        return
    if entry_point:
        gym.register(name, entry_point=entry_point)
        return
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvError(f"unknown env id '{env_id}'{hint}")


@dataclass(frozen=True)
class EnvConfig:
    """How to build one env. Defaults give the usual preprocessing for the id's family."""

    env_id: str
    """A registered id, or `pkg.module:EnvId-v0` whose module registers it when imported."""
    entry_point: str = ""
    """`module:callable` that builds the env, registered under `env_id` where the id is unknown (an env
    passed to `agents.make` as an object or a function); empty for registered ids."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the env's constructor (`gym.make(env_id, **env_kwargs)`)."""
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
    repeat_action_probability: float | None = None
    """Sticky actions (Machado et al. 2018): the chance that an Atari env repeats the last action instead
    of the one given. None takes the id's own: 0.25 for `ALE/...-v5`, 0 for `...NoFrameskip-v4` (the
    deterministic Atari of Mnih et al. and of CleanRL's and Tianshou's Pong figures)."""

    @property
    def name(self) -> str:
        """The id without its module prefix."""
        return split_env_id(self.env_id)[1]

    @property
    def family(self) -> Family:
        return env_family(self.env_id)

    def validate(self) -> None:
        if self.frame_stack < 1 or self.screen_size < 1 or self.frame_skip < 1:
            raise ConfigError("env.frame_stack, env.screen_size and env.frame_skip must be at least 1")
        if self.noop_max < 0:
            raise ConfigError(f"env.noop_max must be 0 or more, not {self.noop_max}")
        p = self.repeat_action_probability
        if p is not None and not 0.0 <= p <= 1.0:
            raise ConfigError(f"env.repeat_action_probability must be between 0 and 1, not {p}")

    def resolved_repeat_action_probability(self) -> float:
        """The sticky-action probability the env is built with: the setting, else the registered id's own."""
        if self.repeat_action_probability is not None:
            return self.repeat_action_probability
        check_env_id(self.env_id, self.entry_point)
        return float(gym.spec(self.name).kwargs.get("repeat_action_probability", 0.25))

    def resolved_preprocessing(self) -> Preprocessing:
        if self.preprocessing is not None:
            return self.preprocessing
        return {"atari": "dqn", "vizdoom": "doom", "classic": "none"}[self.family]


IDENTITY_FIELDS = ("env_id", "entry_point", "env_kwargs")
"""`EnvConfig` fields that say which env; the others are settings (`--set env.frame_stack=2`)."""


def env_settings_fields() -> list[str]:
    return [f.name for f in fields(EnvConfig) if f.name not in IDENTITY_FIELDS]
