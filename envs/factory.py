"""The one environment factory: every agent builds its training and evaluation envs here.

Wrapper order matters and is the same for every family:
`gym.make` -> `RecordEpisodeStatistics` (real game score, before any clipping) -> [`RecordVideo`]
-> family preprocessing -> training-only changes (episodic life, reward clipping) -> frame stack.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    FrameStackObservation,
    RecordEpisodeStatistics,
    RecordVideo,
    TransformReward,
)

from core.errors import SuiteError
from envs.atari import (
    EpisodicLife,
    FireOnReset,
    KarpathyPong,
    KarpathyPongBatch,
    PartialBatchEpisodeStatistics,
    ale_vector_env,
    has_fire_action,
)
from envs.spec import EnvConfig, check_env_id
from envs.vizdoom import DoomScreen

# Where the VizDoom engine keeps its temporary files, relative to the working directory (its choice).
VIZDOOM_TEMP_DIR = "_vizdoom"

Mode = Literal["train", "eval"]


def _make_base(config: EnvConfig, render_mode: str | None) -> gym.Env:
    check_env_id(config.env_id, config.entry_point)
    kwargs: dict = {**config.env_kwargs, "render_mode": render_mode}
    preprocessing = config.resolved_preprocessing()
    if config.family == "atari":
        # AtariPreprocessing does its own frame skipping (with a max over the last two frames).
        kwargs["frameskip"] = 1 if preprocessing == "dqn" else config.frame_skip
        kwargs["repeat_action_probability"] = config.repeat_action_probability
    elif config.family == "vizdoom":
        kwargs["frame_skip"] = config.frame_skip
        # The engine checks for, then creates, ./_vizdoom; two workers starting at once raced there and
        # one died with SIGSEGV ("Failed to create ./_vizdoom/ directory: File exists"). Made first, it
        # exists before any engine looks.
        os.makedirs(VIZDOOM_TEMP_DIR, exist_ok=True)
    try:
        return gym.make(config.name, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        if importlib.util.find_spec("Box2D") is None and "box2d" in str(exc).lower():
            raise SuiteError(f"{config.env_id} needs Box2D: pip install '.[box2d]'") from exc
        raise SuiteError(f"{config.env_id}: {exc}") from exc
    except TypeError as exc:  # a constructor argument the env does not take (--env-kwargs)
        raise SuiteError(f"{config.env_id} cannot be built with {config.env_kwargs}: {exc}") from exc


def _preprocess(env: gym.Env, config: EnvConfig, mode: Mode) -> gym.Env:
    preprocessing = config.resolved_preprocessing()
    training = mode == "train"
    if preprocessing == "dqn":
        if config.family != "atari":
            raise SuiteError(f"the 'dqn' preprocessing is for Atari ids, not {config.env_id}")
        env = AtariPreprocessing(
            env,
            noop_max=config.noop_max,
            frame_skip=config.frame_skip,
            screen_size=config.screen_size,
            terminal_on_life_loss=False,
            grayscale_obs=True,
            scale_obs=False,
        )
        if training and config.episodic_life:
            env = EpisodicLife(env)
        if has_fire_action(env):
            env = FireOnReset(env)
        if training and config.clip_rewards:
            env = TransformReward(env, lambda r: float(np.sign(r)))
    elif preprocessing == "karpathy":
        if config.family != "atari":
            raise SuiteError(f"the 'karpathy' preprocessing is for Atari ids, not {config.env_id}")
        env = KarpathyPong(env)
    elif preprocessing == "doom":
        if config.family != "vizdoom":
            raise SuiteError(f"the 'doom' preprocessing is for VizDoom ids, not {config.env_id}")
        env = DoomScreen(env, size=config.screen_size)
    if preprocessing in ("dqn", "doom") and config.frame_stack > 1:
        env = FrameStackObservation(env, config.frame_stack)
    return env


def make_env(
    config: EnvConfig | str,
    *,
    seed: int | None = None,
    mode: Mode = "train",
    render_mode: str | None = None,
    video_dir: str | Path | None = None,
    base: gym.Env | None = None,
) -> gym.Env:
    """Build one env. Observations: classic envs as Gymnasium defines them; Atari `dqn`
    (frame_stack, 84, 84) uint8; Atari `karpathy` (80, 80) int8; VizDoom `doom` (frame_stack, 84, 84)
    uint8, or (84, 84) with frame_stack=1.

    `mode="eval"` never clips rewards nor ends episodes at a lost life. `video_dir` records every
    episode to mp4 with gymnasium's `RecordVideo` (implies `render_mode="rgb_array"`).
    `seed` seeds the action space; pass the seed to the first `reset` as well (recording and
    statistics wrappers count every reset, so the factory does not reset for you).
    `base`: an env object the user built (`agents.make(env=...)`), wrapped here instead of a new one.
    """
    if isinstance(config, str):
        config = EnvConfig(config)
    if video_dir is not None:
        render_mode = "rgb_array"
    if render_mode == "rgb_array" and not os.environ.get("DISPLAY"):
        # pygame-drawn envs otherwise complain about a missing display while drawing off-screen.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = base if base is not None else _make_base(config, render_mode)
    env = RecordEpisodeStatistics(env)
    if video_dir is not None:
        env = RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, disable_logger=True)
    env = _preprocess(env, config, mode)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def env_thunk(config: EnvConfig, seed: int, mode: Mode = "train") -> Callable[[], gym.Env]:
    """A picklable-enough constructor for vector envs (each worker preprocesses its own frames)."""

    def thunk() -> gym.Env:
        return make_env(config, seed=seed, mode=mode)

    return thunk


def make_vector_env(
    config: EnvConfig | str,
    num_envs: int,
    *,
    seed: int,
    mode: Mode = "train",
    asynchronous: bool = False,
    batched: bool = False,
    record_statistics: bool = True,
    envs_per_step: int = 0,
) -> gym.vector.VectorEnv:
    """`num_envs` copies seeded `seed, seed+1, ...`; asynchronous puts each in its own process so
    that preprocessing runs there and only the small observation is sent back.

    `batched` uses the library's own implementation of the whole batch where the id has one (see
    `has_batched_implementation`): gymnasium's numpy CartPole & co. (one array step for every copy)
    or ale-py's threaded `AtariVectorEnv` for Atari with the `karpathy` preprocessing (every core
    emulates, no frames cross between processes; `asynchronous` is then moot). Both autoreset in the
    SAME_STEP or NEXT_STEP mode of their library; `finished_episodes` reads either.
    `record_statistics=False` leaves the episode statistics out, for callers that sum rewards
    themselves (the wrapper costs about as much as a numpy CartPole step).

    `envs_per_step` (1..num_envs-1; 0 = all) makes ale-py's batch answer only the first envs to
    finish each step, `infos["env_id"]` naming them (see `answered_env_ids`): the caller works on
    one part while the rest emulate. Only ale-py's batch can, so it needs `batched` and an Atari id
    with the `karpathy` preprocessing.
    """
    if isinstance(config, str):
        config = EnvConfig(config)
    check_env_id(config.env_id, config.entry_point)
    partial = 0 < envs_per_step < num_envs
    if envs_per_step < 0 or envs_per_step > num_envs:
        raise SuiteError(f"envs_per_step must be between 0 (all) and num_envs ({num_envs}), not {envs_per_step}")
    if partial and not (batched and config.family == "atari" and has_batched_implementation(config)):
        raise SuiteError(
            f"envs_per_step < num_envs needs ale-py's batch (an Atari id, karpathy preprocessing, batched); "
            f"{config.env_id} here is not one"
        )
    if batched and has_batched_implementation(config):
        envs = _library_batch(config, num_envs, envs_per_step if partial else 0)
        envs.action_space.seed(seed)
        if record_statistics:
            statistics = PartialBatchEpisodeStatistics if partial else gym.wrappers.vector.RecordEpisodeStatistics
            envs = statistics(envs)
        # The statistics wrapper sees raw rewards; Karpathy's frames come after it, as in `make_env`.
        return KarpathyPongBatch(envs) if config.family == "atari" else envs
    fns = [env_thunk(config, seed + i, mode) for i in range(num_envs)]
    if asynchronous:
        with _workers_ignore_ctrl_c():
            return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def has_batched_implementation(config: EnvConfig) -> bool:
    """Does a library implement this id for a whole batch? gymnasium's vector entry points (plain
    classic envs only: preprocessing wrappers exist per env, not per batch) and ale-py's vector env
    for Atari ids with the `karpathy` preprocessing and a fixed frame skip."""
    check_env_id(config.env_id, config.entry_point)
    preprocessing = config.resolved_preprocessing()
    if config.family == "classic":
        return preprocessing == "none" and gym.spec(config.name).vector_entry_point is not None
    if config.family == "atari" and preprocessing == "karpathy":
        kwargs = gym.spec(config.name).kwargs
        return "game" in kwargs and kwargs.get("obs_type", "rgb") == "rgb" and not kwargs.get("full_action_space")
    return False


def _library_batch(config: EnvConfig, num_envs: int, envs_per_step: int) -> gym.vector.VectorEnv:
    if config.family == "atari":
        from core.resources import usable_cores  # noqa: PLC0415  (keeps torch out of plain env imports)

        spec_kwargs = gym.spec(config.name).kwargs
        return ale_vector_env(
            spec_kwargs["game"],
            num_envs,
            frame_skip=config.frame_skip,
            repeat_action_probability=config.repeat_action_probability,
            max_num_frames_per_episode=spec_kwargs.get("max_num_frames_per_episode", 108_000),
            num_threads=min(num_envs, usable_cores()),
            batch_size=envs_per_step,
        )
    return gym.make_vec(config.name, num_envs=num_envs, vectorization_mode="vector_entry_point", **config.env_kwargs)


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Processes spawned inside inherit "ignore SIGINT": a Ctrl-C then only asks the trainer to stop
    gracefully, and the agent closes its workers, instead of killing them mid-step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def spaces_of(config: EnvConfig, base: gym.Env | None = None) -> tuple[gym.Space, gym.Space]:
    """Observation and action spaces after preprocessing, without keeping the env open (a `base` env
    object of the user's is wrapped to read them, and left open)."""
    env = make_env(config, mode="eval", base=base)
    if base is not None:
        return env.observation_space, env.action_space
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """(return, length) of each episode that ended in this vector-env step.

    gymnasium's SAME_STEP vector envs keep a finished episode's statistics in `infos["final_info"]`;
    NEXT_STEP envs, and the vector statistics wrapper over a library batch, put them in `infos`
    itself. Both are read here so agents need not care.
    """
    source = infos if "episode" in infos else infos.get("final_info", {})
    if "episode" not in source:
        return []
    episode = source["episode"]
    mask = source.get("_episode", np.ones(len(episode["r"]), bool))
    return [(float(episode["r"][i]), int(episode["l"][i])) for i in np.flatnonzero(mask)]
