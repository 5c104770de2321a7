"""`make` and `load`: the two ways to get an agent in Python. `train.py` and `evaluate.py` use them too."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from agents import get_agent_class
from agents.base import Agent
from core.checkpoint import CHECKPOINT_DIR, Checkpoint
from core.config import build_config, config_to_dict
from core.errors import CheckpointError, ConfigError, SuiteError
from core.seeding import check_seed, resolve_device, seed_everything, set_rng_state
from envs import EnvConfig, check_env_id, spaces_of
from envs.spec import IDENTITY_FIELDS

EnvLike = str | gym.Env | Callable[[], gym.Env]


def make(
    agent: str,
    env: EnvLike | None = None,
    *,
    seed: int = 1,
    device: str = "auto",
    env_kwargs: dict[str, Any] | None = None,
    env_settings: dict[str, Any] | None = None,
    **hyperparameters: Any,
) -> Agent:
    """A new agent of family `agent` for `env`, with the env's preset and then `hyperparameters` applied.

    `env`: a registered id, `"pkg.module:EnvId-v0"` (the module is imported and registers the id), a
    `gym.Env`, or a callable returning one (default: the agent's env). `env_kwargs` go to the env's
    constructor; `env_settings` change the preprocessing (`{"frame_stack": 2}`; `EnvConfig`'s fields).
    """
    cls = get_agent_class(agent)
    seed = check_seed(seed)
    env_config, user_env = resolve_env(cls.default_env if env is None else env, env_kwargs)
    try:
        config = build_config(cls.Config, cls.preset_for(env_config.env_id), hyperparameters)
        env_config = with_settings(cls.env_config_for(env_config, config), env_settings or {})
        torch_device = resolve_device(device)
        observation_space, action_space = spaces_of(env_config, base=user_env)
        cls.check_spaces(observation_space, action_space)
    except BaseException:
        if user_env is not None:
            user_env.close()
        raise
    seed_everything(seed)
    built = cls(config, observation_space, action_space, device=torch_device, seed=seed, env_config=env_config)
    built.user_env = user_env
    return built


def load(
    target: str | Path,
    *,
    device: str = "cpu",
    env: EnvLike | None = None,
    settings: dict[str, Any] | None = None,
    agent: str | None = None,
) -> Agent:
    """The agent saved in `target`: a checkpoint file (`agent.save`, or any `train.py` wrote) or a run
    directory (its latest checkpoint). Training continues with `learn`; a run directory stays the run's
    own, so `learn(run_dir=...)` into it appends to its curves. `env` replaces the stored env (same spaces).
    `settings` change hyperparameters for the training to come, those of the family's `resume_settings`
    only (`{"final_learning_rate": 0.0}`); the checkpoints written from then on hold the new values.
    `agent`: the family `target` must hold, refused before anything else if it holds another."""
    checkpoint = Checkpoint.read(target)
    if agent is not None and checkpoint.agent != agent:
        raise SuiteError(f"{target} holds a '{checkpoint.agent}' run, not '{agent}'")
    cls = get_agent_class(checkpoint.agent)
    stored = build_config(cls.Config, cls.upgrade_config(checkpoint.agent_config))
    config = with_resume_settings(cls, stored, settings or {})
    try:
        env_config = EnvConfig(**checkpoint.env_config)
    except TypeError as exc:
        raise CheckpointError(f"{target} does not hold a usable agent (env_config: {exc})") from exc
    user_env = None
    if env is not None:
        stored = env_config
        env_config, user_env = resolve_env(env, None)
        env_config = dataclasses.replace(stored, **{k: getattr(env_config, k) for k in IDENTITY_FIELDS})
    torch_device = resolve_device(device)
    try:
        observation_space, action_space = spaces_of(env_config, base=user_env)
        agent = cls(config, observation_space, action_space, device=torch_device, seed=checkpoint.run.seed,
                    env_config=env_config)  # fmt: skip
        agent.load_state_dict(checkpoint.agent_state)
    except SuiteError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{target} does not hold a usable agent ({type(exc).__name__}: {exc})") from exc
    if checkpoint.rng:
        set_rng_state(checkpoint.rng)
    agent.run = checkpoint.run
    agent.run_dir = _run_dir_of(Path(target), checkpoint)
    agent.user_env = user_env
    return agent


def with_resume_settings(cls: type[Agent], config: Any, settings: dict[str, Any]) -> Any:
    """`config` with `settings` applied (unknown names and bad values refused as on a new run); a change to a
    hyperparameter outside the family's `resume_settings` is refused, as it would not fit the saved state."""
    if not settings:
        return config
    changed = build_config(cls.Config, config_to_dict(config), settings)
    refused = sorted(k for k in settings if k not in cls.resume_settings and getattr(changed, k) != getattr(config, k))
    if refused:
        allowed = ", ".join(sorted(cls.resume_settings)) or "none"
        raise ConfigError(
            f"{', '.join(refused)} cannot change on a resumed {cls.name} run: its saved state was built or learned "
            f"with it (a resume may change {allowed})"
        )
    return changed


def _run_dir_of(target: Path, checkpoint: Checkpoint) -> Path | None:
    """The run directory a checkpoint belongs to: `target` itself, or `<run>` for `<run>/checkpoints/x.pt`,
    when its `config.json` names the checkpoint's agent, env and seed. None otherwise (a loose file):
    then `learn(run_dir=...)` into it would be refused, not write over another run's files."""
    run = target if target.is_dir() else target.resolve().parent.parent
    if not target.is_dir() and target.resolve().parent.name != CHECKPOINT_DIR:
        return None
    try:
        described = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return None
    stored = (checkpoint.agent, checkpoint.env_config.get("env_id"), checkpoint.run.seed)
    if (
        not isinstance(described, dict)
        or (described.get("agent"), described.get("env"), described.get("seed")) != stored
    ):
        return None
    return target if target.is_dir() else target.parent.parent


def resolve_env(env: EnvLike, env_kwargs: dict[str, Any] | None) -> tuple[EnvConfig, gym.Env | None]:
    """The env's `EnvConfig` (what a checkpoint stores) and, for an env object of the user's, the object
    itself, which becomes the first training env (copies, for agents with several, are built from the
    config). Atari and VizDoom objects are rebuilt from their id, with the suite's preprocessing."""
    kwargs = dict(env_kwargs or {})
    if isinstance(env, str):
        check_env_id(env)
        return EnvConfig(env, env_kwargs=kwargs), None
    if isinstance(env, gym.Env):
        instance, entry_point = env, ""
    elif callable(env):
        instance = env()
        if not isinstance(instance, gym.Env):
            raise ConfigError(f"the env function {env!r} returned {type(instance).__name__}, not a gym.Env")
        entry_point = _importable_name(env)
    else:
        raise ConfigError(f"env must be an id, a gym.Env or a function returning one, not {type(env).__name__}")
    if kwargs:
        raise ConfigError("env_kwargs go with an env id; an env object is already built")
    spec = instance.spec
    if spec is not None:
        spec_entry = spec.entry_point if isinstance(spec.entry_point, str) else _importable_name(spec.entry_point)
        stored_kwargs = {k: v for k, v in spec.kwargs.items() if k != "render_mode"}
        config = EnvConfig(spec.id, entry_point=spec_entry or entry_point, env_kwargs=stored_kwargs)
    else:
        # No registered id: one made from what builds it, so that it names nothing else in the registry.
        entry_point = entry_point or _importable_name(type(instance.unwrapped))
        name = entry_point.replace(":", ".") if entry_point else type(instance.unwrapped).__qualname__
        config = EnvConfig(f"python/{name}-v0", entry_point=entry_point)
    if config.entry_point:
        check_env_id(config.env_id, config.entry_point)  # registered, so copies and `gym.spec` find it
    if config.family != "classic":
        instance.close()
        return config, None
    return config, instance


def _importable_name(obj: Any) -> str:
    """`module:qualname` of a function or class that another process can import; empty otherwise."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return ""
    return f"{module}:{qualname}"


def with_settings(env_config: EnvConfig, settings: dict[str, Any]) -> EnvConfig:
    """`env_config` with preprocessing settings changed (`{"frame_stack": 2}`), each type-checked."""
    if not settings:
        return env_config
    bad = [k for k in settings if k in IDENTITY_FIELDS]
    if bad:
        raise ConfigError(f"env.{bad[0]} is not a setting: choose the env with --env and --env-kwargs")
    current = {f.name: getattr(env_config, f.name) for f in dataclasses.fields(EnvConfig)}
    return build_config(EnvConfig, current, settings)
