"""`Session`: the `TrainContext` of one `learn` call. It counts steps and episodes, feeds the callbacks,
turns Ctrl-C and SIGTERM into a clean stop, and, when the run has a directory, owns its TensorBoard log
and writes its checkpoints through the agent. Agents only see the `TrainContext` protocol."""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch

from agents.callbacks import Callback
from core.checkpoint import CHECKPOINT_DIR, RECENT_EPISODES, remove_stale_temp_files
from core.errors import SuiteError
from core.runlock import LOCK_NAME, RunLock
from core.tblog import RunLogger
from envs import EnvConfig, finished_episodes, make_env, make_vector_env

if TYPE_CHECKING:
    from agents.base import Agent


class Session:
    """Implements `agents.context.TrainContext`; see there for what each member means."""

    def __init__(
        self,
        *,
        env_config: EnvConfig,
        seed: int,
        device: torch.device,
        total_steps: int,
        global_step: int,
        episodes: int,
        recent_returns: Iterable[float] = (),
        run_dir: Path | None,
        logger: RunLogger | None,
        save_checkpoint: Callable[..., Path | None],
        callbacks: Sequence[Callback] = (),
        user_env: gym.Env | None = None,
        agent: Agent | None = None,
    ):
        self.env_config = env_config
        self.seed = seed
        self.device = device
        self.total_steps = total_steps
        self.global_step = global_step
        self.episodes = episodes
        self.episode_returns: list[float] = []
        self.recent_returns: deque[float] = deque(recent_returns, maxlen=RECENT_EPISODES)
        self.run_dir = run_dir
        self.interrupted = False
        self.stop_reason: str | None = None
        self._logger = logger
        self._save_checkpoint = save_checkpoint
        self._callbacks = list(callbacks)
        self._stepped = [c for c in self._callbacks if c.step_interval > 0]
        # Each hook's first call: the first multiple of its interval past the start (a resumed run's too).
        self._due = [(global_step // c.step_interval + 1) * c.step_interval for c in self._stepped]
        self._next_due = min(self._due, default=None)
        self._checkpoint_requested = False
        self._user_env = user_env
        self._start_step = global_step
        self.agent = agent
        """The agent being trained, for callbacks (an evaluation plays its `snapshot()`)."""

    # Environments -----------------------------------------------------------------------------
    def env_seed(self, offset: int = 0) -> int:
        return self.seed + offset + 1_000_003 * self.episodes

    def make_env(self, *, offset: int = 0) -> gym.Env:
        base = None
        if offset == 0:  # the user's own env object, if there is one, is used once: as the first env
            base, self._user_env = self._user_env, None
        return make_env(self.env_config, seed=self.env_seed(offset), mode="train", base=base)

    def make_vector_env(self, num_envs: int, **options: Any) -> gym.vector.VectorEnv:
        return make_vector_env(self.env_config, num_envs, seed=self.env_seed(), **options)

    # Reporting --------------------------------------------------------------------------------
    def add_steps(self, n: int = 1) -> None:
        self.global_step += n
        if self._logger is not None:
            self._logger.maybe_flush(self.global_step)
        if self._next_due is not None and self.global_step >= self._next_due:
            self._step_callbacks()

    def _step_callbacks(self) -> None:
        for i, callback in enumerate(self._stepped):
            if self.global_step >= self._due[i]:
                callback.on_step(self)
                # The next multiple after this step: a chunk of steps calls a hook once, not once per multiple.
                interval = callback.step_interval
                self._due[i] = (self.global_step // interval + 1) * interval
        self._next_due = min(self._due)

    def record_episode(self, episodic_return: float, length: int) -> None:
        self.episodes += 1
        self.episode_returns.append(float(episodic_return))
        self.recent_returns.append(float(episodic_return))
        if self._logger is not None:
            self._logger.episode(self.global_step, float(episodic_return), int(length))
        for callback in self._callbacks:
            callback.on_episode(self, float(episodic_return), int(length))

    def record_info(self, info: dict[str, Any]) -> None:
        episode = info.get("episode")
        if episode is not None:
            self.record_episode(float(episode["r"]), int(episode["l"]))

    def record_vector_info(self, infos: dict[str, Any]) -> list[tuple[float, int]]:
        episodes = finished_episodes(infos)
        for episodic_return, length in episodes:
            self.record_episode(episodic_return, length)
        return episodes

    def log(self, metrics: dict[str, float]) -> None:
        if self._logger is not None:
            self._logger.scalars(metrics)

    def log_now(self, metrics: dict[str, float]) -> None:
        if self._logger is not None:
            self._logger.scalars_now(self.global_step, metrics)

    def artifact_path(self, name: str) -> Path | None:
        return None if self.run_dir is None else self.run_dir / name

    def checkpoint_as(self, name: str, policy: Agent | None = None, *, policy_only: bool = False) -> Path | None:
        """Write `<run>/checkpoints/<name>` now, of `policy` (a snapshot of the agent; default the agent),
        with the run's counters as they stand; for a callback's own checkpoint (`best.pt`). `policy_only`
        leaves out what only resumed training needs and is large (`Agent.policy_state_dict`: DQN's saved
        replay). None without a run directory."""
        return self._save_checkpoint(name, policy, policy_only)

    @property
    def recent_mean_return(self) -> float:
        """Mean return of the run's last 100 episodes, earlier calls and sittings included (nan before the
        first)."""
        window = self.recent_returns
        return sum(window) / len(window) if window else float("nan")

    # Control ----------------------------------------------------------------------------------
    def should_stop(self) -> bool:
        return self.interrupted or self.stop_reason is not None or self.global_step >= self.total_steps

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def request_checkpoint(self) -> None:
        self._checkpoint_requested = True

    def maybe_checkpoint(self) -> None:
        if self._checkpoint_requested:
            self.checkpoint()

    def checkpoint(self, notify: bool = True) -> Path | None:
        """Write a checkpoint now (where there is a run directory); `notify` tells the callbacks."""
        self._checkpoint_requested = False
        path = self._save_checkpoint()
        if path is not None and notify:
            for callback in self._callbacks:
                callback.on_checkpoint(self, path)
        return path

    @property
    def stepped(self) -> bool:
        """Did this call step an env? (If not, a failure was a failed start.)"""
        return self.global_step > self._start_step

    # The session's life -----------------------------------------------------------------------
    def start(self) -> None:
        for callback in self._callbacks:
            callback.on_start(self)

    def end(self) -> None:
        for callback in self._callbacks:
            callback.on_end(self)
        if self._logger is not None:
            self._logger.maybe_flush(self.global_step, force=True)

    def close(self) -> None:
        if self._user_env is not None:  # the agent never asked for its first env
            self._user_env.close()
            self._user_env = None
        if self._logger is not None:
            best = None if self.agent is None else self.agent.run.best_return
            recent = self.recent_mean_return if self.recent_returns else None
            metrics = {"hparams/mean_return_last100": recent, "hparams/best_eval_return": best}
            self._logger.close(self.global_step, metrics)

    @contextmanager
    def stop_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM (how Slurm, Kubernetes and systemd stop a job) ask the agent to stop at its
        next step; a second one aborts at once (still keeping the last checkpoint). Outside the main
        thread signals cannot be caught, and are left alone."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            if self.interrupted:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                raise KeyboardInterrupt
            self.interrupted = True
            self.request_stop(f"stopped by {signal.Signals(signum).name}")

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class RunDirectory:
    """A run directory that one `learn` call owns: made (or continued), locked against other processes,
    cleaned of the temp files a crashed writer left, and removed again when the start fails before
    anything was learned in a directory this call made."""

    def __init__(self, path: Path, continuing: bool):
        self.path, self.continuing = path, continuing
        self.lock = RunLock(path)
        self.created = self.locked = False

    def open(self, description: dict[str, Any]) -> RunDirectory:
        try:
            self.path.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise SuiteError(f"cannot make the run directory {self.path}: {exc.strerror or exc}") from exc
        try:
            self.lock.acquire()
            self.locked = True
            if not self.continuing and any(p.name != LOCK_NAME for p in self.path.iterdir()):
                raise SuiteError(f"run directory {self.path} already exists; pick another name or resume it")
            remove_stale_temp_files(self.path / CHECKPOINT_DIR)
            (self.path / "config.json").write_text(json.dumps(description, indent=2) + "\n")
        except OSError as exc:
            self.close(failed_start=True)
            raise SuiteError(f"cannot write the run directory {self.path}: {exc.strerror or exc}") from exc
        except BaseException:
            self.close(failed_start=True)
            raise
        return self

    def close(self, failed_start: bool = False) -> None:
        # Only a directory this call made and held is removed: never one another process may own.
        if failed_start and self.created and self.locked:
            shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release()
