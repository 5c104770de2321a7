"""The one environment factory: every agent builds its training and evaluation envs here.

Wrapper order matters and is the same for every family:
`gym.make` -> `RecordEpisodeStatistics` (real game score, before any clipping) -> [`RecordVideo`]
-> family preprocessing -> training-only changes (episodic life, reward clipping) -> frame stack.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
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
from core.resources import children_ignore_ctrl_c, die_with_parent, usable_cores
from envs.atari import (
    AtariTrainingBatch,
    EpisodicLife,
    FireOnReset,
    KarpathyPong,
    KarpathyPongBatch,
    PartialBatchEpisodeStatistics,
    ale_dqn_vector_env,
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
    # render_mode only when asked for: a user's env function need not take it.
    kwargs: dict = {**config.env_kwargs, **({"render_mode": render_mode} if render_mode else {})}
    preprocessing = config.resolved_preprocessing()
    if config.family == "atari":
        # AtariPreprocessing does its own frame skipping (with a max over the last two frames).
        kwargs["frameskip"] = 1 if preprocessing == "dqn" else config.frame_skip
        kwargs["repeat_action_probability"] = config.resolved_repeat_action_probability()
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
    video_name: str = "rl-video",
    video_episodes: int | None = None,
    base: gym.Env | None = None,
) -> gym.Env:
    """Build one env. Observations: classic envs as Gymnasium defines them; Atari `dqn`
    (frame_stack, 84, 84) uint8; Atari `karpathy` (80, 80) int8; VizDoom `doom` (frame_stack, 84, 84)
    uint8, or (84, 84) with frame_stack=1.

    `mode="eval"` never clips rewards nor ends episodes at a lost life. `video_dir` records the first
    `video_episodes` episodes (default: every one) to `<video_name>-episode-<k>.mp4` with gymnasium's
    `RecordVideo` (implies `render_mode="rgb_array"`), at the game's real speed (`video_fps`).
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

        def record(episode: int) -> bool:
            return video_episodes is None or episode < video_episodes

        fps = video_fps(config, env)
        with warnings.catch_warnings():  # a run's videos/ folder fills up by design
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
            env = RecordVideo(env, str(video_dir), episode_trigger=record, name_prefix=video_name, fps=fps)
    env = _preprocess(env, config, mode)
    if seed is not None:
        env.action_space.seed(seed)
    return env


ATARI_FRAME_RATE = 60.0
"""The Atari 2600's frames per second (NTSC); ALE's metadata says 30, which plays its games at half speed."""


def video_fps(config: EnvConfig, env: gym.Env) -> float:
    """Frames per second of a video that plays at the game's real speed: the emulator's frame rate divided
    by the frames each recorded step covers (the frame skip of the env being recorded; with the `dqn`
    preprocessing the recorder sits below it and sees every emulator frame)."""
    if config.family == "atari":
        frameskip = env.unwrapped._frameskip if hasattr(env.unwrapped, "_frameskip") else config.frame_skip
        skip = frameskip if isinstance(frameskip, int) else sum(frameskip) / 2  # a (low, high) random skip
        return ATARI_FRAME_RATE / skip
    real = float(env.metadata.get("render_fps") or 30)
    return real / config.frame_skip if config.family == "vizdoom" else real


def env_thunk(config: EnvConfig, seed: int, mode: Mode = "train", child: bool = False) -> Callable[[], gym.Env]:
    """A picklable-enough constructor for vector envs (each worker preprocesses its own frames). With
    `child`, it runs in a worker process of its own, which then dies with the process that made it."""
    parent = os.getpid()

    def thunk() -> gym.Env:
        # gymnasium also calls one thunk in this process, to read the spaces: only a child dies with us.
        if child and os.getpid() != parent:
            die_with_parent(parent)
        return make_env(config, seed=seed, mode=mode)

    return thunk


VectorMode = Literal["auto", "sync", "async", "batch"]
"""How a vector env runs its copies: `sync` one after another in this process; `async` a process per
copy (preprocessing there, only the small observation sent back); `batch` a library's implementation of
the whole batch (ale-py's threaded `AtariVectorEnv` for Atari with the `karpathy` or `dqn`
preprocessing: every core emulates, in this process); `auto` the batch where there is one, else `sync`."""


def resolve_vector_mode(config: EnvConfig, mode: VectorMode = "auto") -> VectorMode:
    """`auto` made concrete for this env; `batch` where the env has none is refused in one line."""
    available = _ale_batch_available(config)
    if mode == "batch" and not available:
        raise SuiteError(
            f"a library batch needs ale-py's (an Atari id with the karpathy or dqn preprocessing); "
            f"{config.env_id} has none"
        )
    if mode == "auto":
        return "batch" if available else "sync"
    if mode not in ("sync", "async", "batch"):
        raise SuiteError(f"vector mode must be auto, sync, async or batch, not {mode!r}")
    return mode


def make_vector_env(
    config: EnvConfig | str,
    num_envs: int,
    *,
    seed: int,
    mode: VectorMode = "auto",
    envs_per_step: int = 0,
    env_mode: Mode = "train",
) -> gym.vector.VectorEnv:
    """`num_envs` copies seeded `seed, seed+1, ...`, run as `mode` says (see `VectorMode`).

    Whatever the mode, the vector env autoresets in the SAME_STEP mode (a finished episode's last
    observation in `infos["final_obs"]`, the next episode's first in the batch), records each episode's
    real return and length (`finished_episodes`), and names the env of each row in `infos["env_id"]`.

    `envs_per_step` (1..num_envs-1; 0 = all) lets a batch that can (ale-py's) answer only the first envs to
    finish each step, while the others emulate: the caller works on one part meanwhile. Rows then come
    from different envs each step, which `infos["env_id"]` tells; a row whose env had no action pending
    is a reset frame arriving late. Where the resolved mode cannot answer partially every env answers,
    and an explicit `mode="batch"` that cannot is refused.
    """
    if isinstance(config, str):
        config = EnvConfig(config)
    check_env_id(config.env_id, config.entry_point)
    if envs_per_step < 0 or envs_per_step > num_envs:
        raise SuiteError(f"envs_per_step must be between 0 (all) and num_envs ({num_envs}), not {envs_per_step}")
    partial = 0 < envs_per_step < num_envs
    if partial and mode not in ("auto", "batch"):
        raise SuiteError(f"envs_per_step < num_envs needs ale-py's batch, not the {mode} mode")
    if partial and mode == "batch" and not _ale_batch_available(config):
        raise SuiteError(
            f"envs_per_step < num_envs needs ale-py's batch (an Atari id, karpathy or dqn preprocessing); "
            f"{config.env_id} here is not one"
        )
    resolved = resolve_vector_mode(config, mode)
    if resolved == "batch":
        envs = _ale_batch(config, num_envs, envs_per_step if partial else 0)
        envs.action_space.seed(seed)
        statistics = PartialBatchEpisodeStatistics if partial else gym.wrappers.vector.RecordEpisodeStatistics
        # The statistics wrapper sees raw rewards and whole games; the rest comes after it, as in `make_env`.
        if config.resolved_preprocessing() == "dqn":
            training = env_mode == "train"
            return EnvIds(AtariTrainingBatch(statistics(envs), episodic_life=training and config.episodic_life,
                                             clip_rewards=training and config.clip_rewards))  # fmt: skip
        return EnvIds(KarpathyPongBatch(statistics(envs)))
    fns = [env_thunk(config, seed + i, env_mode, child=resolved == "async") for i in range(num_envs)]
    if resolved == "async":
        with children_ignore_ctrl_c():
            envs = gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    else:
        envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return EnvIds(envs)


class EnvIds(gym.vector.VectorWrapper):
    """Puts `infos["env_id"]`, the env of each row, into every reset and step where the env does not
    already (ale-py's batch does): all envs in order."""

    def reset(self, **kwargs):
        observations, infos = self.env.reset(**kwargs)
        return observations, self._named(infos, len(observations))

    def step(self, actions):
        observations, rewards, terminated, truncated, infos = self.env.step(actions)
        return observations, rewards, terminated, truncated, self._named(infos, len(observations))

    @staticmethod
    def _named(infos: dict, rows: int) -> dict:
        return infos if "env_id" in infos else {**infos, "env_id": np.arange(rows)}


def numpy_batch_available(config: EnvConfig) -> bool:
    """Does gymnasium implement this id for a whole batch in numpy (its `vector_entry_point`: CartPole)?
    Only for plain classic envs: preprocessing wrappers exist per env, not per batch."""
    check_env_id(config.env_id, config.entry_point)
    if config.family != "classic" or config.resolved_preprocessing() != "none":
        return False
    return gym.spec(config.name).vector_entry_point is not None


def _ale_batch_available(config: EnvConfig) -> bool:
    """ale-py's vector env plays Atari ids with the `karpathy` preprocessing (raw RGB frames, fixed skip)
    and with the `dqn` one (its own grayscale, resize, max-pool, no-ops, FIRE and frame stack)."""
    preprocessing = config.resolved_preprocessing()
    if config.family != "atari" or preprocessing not in ("karpathy", "dqn"):
        return False
    if preprocessing == "dqn" and config.frame_stack < 2:  # ale-py's frames always have a stack axis
        return False
    check_env_id(config.env_id, config.entry_point)
    kwargs = gym.spec(config.name).kwargs
    return "game" in kwargs and kwargs.get("obs_type", "rgb") == "rgb" and not kwargs.get("full_action_space")


def _ale_batch(config: EnvConfig, num_envs: int, envs_per_step: int) -> gym.vector.VectorEnv:
    spec_kwargs = gym.spec(config.name).kwargs
    common = {
        "frame_skip": config.frame_skip,
        "repeat_action_probability": config.resolved_repeat_action_probability(),
        "max_num_frames_per_episode": config.env_kwargs.get(
            "max_num_frames_per_episode", spec_kwargs.get("max_num_frames_per_episode", 108_000)
        ),
        "num_threads": min(num_envs, usable_cores()),
        "batch_size": envs_per_step,
    }
    if config.resolved_preprocessing() == "dqn":
        size, stack, noops = config.screen_size, config.frame_stack, config.noop_max
        return ale_dqn_vector_env(spec_kwargs["game"], num_envs, screen_size=size, frame_stack=stack,
                                  noop_max=noops, **common)  # fmt: skip
    return ale_vector_env(spec_kwargs["game"], num_envs, **common)


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
    """(return, length) of each episode that ended in this step of a `make_vector_env` env.

    gymnasium's vector envs keep a finished episode's statistics in `infos["final_info"]`; the vector
    statistics wrapper over a library batch puts them in `infos` itself. Both are read here so agents
    need not care.
    """
    source = infos if "episode" in infos else infos.get("final_info", {})
    if "episode" not in source:
        return []
    episode = source["episode"]
    mask = source.get("_episode", np.ones(len(episode["r"]), bool))
    return [(float(episode["r"][i]), int(episode["l"][i])) for i in np.flatnonzero(mask)]


def final_observations(observations: np.ndarray, infos: dict, done: np.ndarray) -> np.ndarray:
    """The observation each row's step led to: `observations` where the episode goes on, the finished
    episode's last observation (`infos["final_obs"]`, SAME_STEP autoreset) where it ended. A row that ended
    without a reset (a lost life under episodic life in ale-py's batch) keeps its observation."""
    if not done.any() or "final_obs" not in infos:
        return observations
    result = observations.copy()
    final, mask = infos["final_obs"], infos.get("_final_obs", done)
    for row in np.flatnonzero(done & mask):
        result[row] = final[row]
    return result
