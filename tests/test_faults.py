"""Faults for real: `kill -9` of the trainer and of its workers, SIGTERM and Ctrl-C at awkward moments,
the run lock, damaged checkpoints and a table of bad inputs. Subprocesses run the command lines as a user
would; waits are bounded."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import load, make
from core import reaper
from core.checkpoint import Checkpoint, save_checkpoint
from core.errors import CheckpointError, SuiteError
from gym_agents import compare, evaluate, train
from gym_agents.cli import run_app
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[1]


# Processes --------------------------------------------------------------------------------------
def descendants(pid: int) -> set[int]:
    """Live descendants of `pid` (the reaper's own walk over /proc; a zombie counts as gone)."""
    return set(reaper.descendants(pid))


def all_gone(pids: set[int]) -> bool:
    return not pids & set(reaper.processes())


class Trainer:
    """`python train.py ...` in its own process group, killed with its group at the end whatever happens."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "train.py", *args, "--no-progress"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)


def workers_of(trainer: Trainer, count: int, timeout: float = 60, marker: bytes = b"multiprocessing") -> list[int]:
    """Wait for `count` worker processes of the trainer (spawned Python children, or with `marker` in their
    command line: b"ray::" for Ray's actors) and return their pids."""

    def spawned() -> list[int]:
        pids = []
        for pid in descendants(trainer.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and b"resource_tracker" not in cmdline:
                pids.append(pid)
        return sorted(pids)

    assert wait_until(lambda: len(spawned()) >= count, timeout), (trainer.proc.poll(), spawned())
    return spawned()


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# kill -9 of the trainer ---------------------------------------------------------------------------
def episodes_in_events(run: Path) -> int:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return len(events.Scalars("charts/episodic_return"))


def episodes_so_far(run: Path) -> int:
    """Episodes a live run has logged to TensorBoard (0 before its directory or first episode exists)."""
    try:
        return episodes_in_events(run) if run.is_dir() else 0
    except KeyError:  # no episode logged yet
        return 0


@pytest.mark.slow
def test_kill_9_of_the_trainer_at_random_moments_then_resume(tmp_path):
    """Killed three times at random moments, resumed each time: the checkpoint always loads, the run
    ends at its step budget, and TensorBoard holds exactly the episodes the checkpoint counted."""
    rng = random.Random(17)
    run = tmp_path / "runs" / "r"
    steps = "150000"
    first = ["qtable", "--steps", steps, "--runs-dir", str(tmp_path / "runs"), "--name", "r",
             "--checkpoint-every", "3000"]  # fmt: skip
    args = first
    for _ in range(3):
        with Trainer(*args) as trainer:
            assert wait_until(lambda: (run / "checkpoints" / "latest.pt").exists(), 60)
            time.sleep(rng.uniform(0.0, 1.5))
            os.killpg(trainer.proc.pid, signal.SIGKILL)
            trainer.proc.wait(timeout=30)
        resumed = load(run)  # the last good checkpoint survived
        assert 0 <= resumed.run.global_step < 150_000
        args = ["qtable", "--resume", str(run), "--steps", steps]
    with Trainer(*args) as trainer:
        code, out, err = trainer.finish()
    assert code == 0, err
    final = load(run)
    assert final.run.global_step == 150_000
    assert episodes_in_events(run) == final.run.episodes
    assert not list((run / "checkpoints").glob(".*tmp*"))


# Dead workers --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_of_one_a3c_worker_is_one_line_within_5_s(tmp_path):
    runs = tmp_path / "runs"
    args = ["a3c", "--env", "CartPole-v1", "--set", "num_workers=2", "--steps", "100000000", "--runs-dir", str(runs),
            "--name", "a"]  # fmt: skip
    with Trainer(*args) as trainer:
        workers = workers_of(trainer, 2)
        # Training, not still starting (a slow machine takes seconds to import torch in each worker): a
        # worker that dies before anything was learned is a failed start, whose run directory goes.
        assert wait_until(lambda: episodes_so_far(runs / "a") >= 5, 60), trainer.proc.poll()
        everyone = descendants(trainer.proc.pid)
        killed = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        code, out, err = trainer.finish(timeout=60)
        noticed = time.monotonic() - killed
    assert code == 2 and noticed < 5 + 3  # noticed within 5 s; the rest is the checkpoint and shutdown
    assert re.fullmatch(r"error: a3c worker [01] died with exit code -9", one_error_line(err))
    saved = load(runs / "a").run  # the global network was checkpointed when the worker died
    assert saved.global_step > 0 and saved.episodes >= 5
    assert wait_until(lambda: all_gone(everyone), 10)


@pytest.mark.slow
def test_kill_9_of_one_neat_evaluator_is_one_line(tmp_path):
    args = ["neat", "--env", "Acrobot-v1", "--set", "num_workers=2", "--steps", "100000000",
            "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    with Trainer(*args) as trainer:
        evaluators = workers_of(trainer, 2)
        everyone = descendants(trainer.proc.pid)
        killed = time.monotonic()
        os.kill(evaluators[0], signal.SIGKILL)
        code, out, err = trainer.finish(timeout=60)
        noticed = time.monotonic() - killed
    assert code == 2 and noticed < 5 + 3
    assert "error: a neat evaluator process died" in one_error_line(err)
    assert wait_until(lambda: all_gone(everyone), 10)


RAY_NEAT = ["neat", "--env", "Acrobot-v1", "--set", "backend=ray", "--set", "num_workers=2",
            "--set", "fitness_threshold=1e9"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "workers", "marker"),
    [
        (["a3c", "--env", "CartPole-v1", "--set", "num_workers=2"], 2, b"multiprocessing"),
        (["neat", "--env", "Acrobot-v1", "--set", "num_workers=2"], 2, b"multiprocessing"),
        (["pg", "--env", "CartPole-v1", "--set", "vector_mode=async", "--set", "num_envs=2"], 2, b"multiprocessing"),
        pytest.param(
            RAY_NEAT,
            2,
            b"ray::ShareActor",
            marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the [ray] extra"),
        ),
    ],
    ids=["a3c-workers", "neat-evaluators", "async-env-workers", "local-ray-instance"],
)
def test_kill_9_of_the_trainer_leaves_no_process(args, workers, marker, tmp_path):
    trainer = subprocess.Popen(
        [sys.executable, "train.py", *args, "--steps", "100000000", "--runs-dir", str(tmp_path), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Not a process group of its own kill: only the trainer gets the SIGKILL, as from `kill -9 PID`.
    )
    try:
        wrapped = Trainer.__new__(Trainer)
        wrapped.proc = trainer
        workers_of(wrapped, workers, marker=marker)
        time.sleep(1.0)
        everyone = descendants(trainer.pid)
        trainer.kill()
        trainer.wait(timeout=30)
        assert wait_until(lambda: all_gone(everyone), 10), everyone & set(reaper.processes())
    finally:
        for pid in descendants(trainer.pid) if trainer.poll() is None else set():
            os.kill(pid, signal.SIGKILL)
        if trainer.poll() is None:
            trainer.kill()


# Signals at awkward moments -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_workers_start_stops_cleanly_with_a_checkpoint(sig, tmp_path):
    runs = tmp_path / "runs"
    args = ["a3c", "--env", "CartPole-v1", "--set", "num_workers=2", "--steps", "100000000", "--runs-dir", str(runs),
            "--name", "s"]  # fmt: skip
    with Trainer(*args) as trainer:
        workers_of(trainer, 1, timeout=60)  # the first worker is starting (importing torch)
        everyone = descendants(trainer.proc.pid)
        # SIGINT as a terminal's Ctrl-C sends it, to the whole process group; SIGTERM as a scheduler does.
        if sig == signal.SIGINT:
            os.killpg(trainer.proc.pid, sig)
        else:
            trainer.proc.send_signal(sig)
        code, out, err = trainer.finish(timeout=60)
    assert code == 0, err
    assert f"Resume with: python train.py a3c --resume {runs / 's'}" in out
    assert "Traceback" not in err
    assert load(runs / "s").run.seed == 1
    assert wait_until(lambda: all_gone(everyone), 10)


@pytest.mark.slow
def test_sigterm_mid_run_checkpoints_at_the_step_it_stopped(tmp_path):
    runs = tmp_path / "runs"
    with Trainer("dqn", "--steps", "1000000", "--runs-dir", str(runs), "--name", "d") as trainer:
        assert wait_until(lambda: (runs / "d" / "checkpoints" / "latest.pt").exists(), 60)
        time.sleep(3.0)
        trainer.proc.send_signal(signal.SIGTERM)
        code, out, err = trainer.finish(timeout=60)
    assert code == 0 and "Interrupted; checkpoint written" in out
    steps = int(re.search(r"dqn on CartPole-v1: ([\d,]+) steps", out).group(1).replace(",", ""))
    assert load(runs / "d").run.global_step == steps > 0


# The run lock and --resume ------------------------------------------------------------------------
@pytest.mark.slow
def test_one_process_per_run_directory_and_a_killed_holder_frees_it(tmp_path):
    runs = tmp_path / "runs"
    run = runs / "locked"
    with Trainer("qtable", "--steps", "100000000", "--runs-dir", str(runs), "--name", "locked") as holder:
        assert wait_until(lambda: (run / "checkpoints" / "latest.pt").exists(), 60)
        second = subprocess.run(
            [sys.executable, "train.py", "qtable", "--resume", str(run), "--steps", "200000000", "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert f"is in use by process {holder.proc.pid}" in one_error_line(second.stderr)
        same_name = subprocess.run(
            [sys.executable, "train.py", "qtable", "--runs-dir", str(runs), "--name", "locked", "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert same_name.returncode == 2 and "already exists" in one_error_line(same_name.stderr)
        os.killpg(holder.proc.pid, signal.SIGKILL)
        holder.proc.wait(timeout=30)
    stopped_at = load(run).run.global_step
    # A stale temp file of the killed writer is removed by the next owner.
    (run / "checkpoints" / ".latest.pt.tmp99999").write_bytes(b"half a checkpoint")
    with Trainer("qtable", "--resume", str(run), "--steps", str(stopped_at + 5000)) as again:
        code, out, err = again.finish()
    assert code == 0, err
    assert not (run / "checkpoints" / ".latest.pt.tmp99999").exists()


def test_resume_of_a_file_outside_a_run_is_refused_and_writes_nothing(tmp_path, capsys):
    agent = make("qtable")
    agent.learn(200)
    models = tmp_path / "models"
    agent.save(models / "x.pt")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = run_app(train.app, ["qtable", "--resume", str(models / "x.pt"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a run directory nor a checkpoint in one" in one_error_line(err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # A checkpoint moved into another run's checkpoints/ does not agree with its config.json either.
    other = tmp_path / "runs" / "other"
    make("qtable", seed=2).learn(200, run_dir=other)
    (other / "checkpoints" / "stray.pt").write_bytes((models / "x.pt").read_bytes())
    config_before = (other / "config.json").read_text()
    code = run_app(train.app, ["qtable", "--resume", str(other / "checkpoints" / "stray.pt"), "--no-progress"])
    assert code == 2 and (other / "config.json").read_text() == config_before


def test_a_failed_start_leaves_no_run_directory(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = run_app(train.app, ["qtable", "--runs-dir", str(runs), "--name", "x", "--set", "decay_steps=-1.5"])
    assert code == 2 and not (runs / "x").exists()
    # A failure once the directory exists but before the first step: the directory goes again.
    agent = make("qtable", env="tests.custom_env:BrokenReset-v0")
    with pytest.raises(RuntimeError, match="cannot reset"):
        agent.learn(100, run_dir=runs / "y")
    assert not (runs / "y").exists()


# Damaged checkpoints ---------------------------------------------------------------------------------
def test_mutated_checkpoints_load_identically_or_are_refused_in_one_line(tmp_path):
    agent = make("dqn", learning_starts=10, train_freq=10, batch_size=8, buffer_size=500, hidden_sizes=(8,))
    agent.learn(300)
    good = agent.save(tmp_path / "good.pt").read_bytes()
    observations = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    expected = agent.predict(observations)[0]
    reference = load(tmp_path / "good.pt").state_dict()
    rng = random.Random(5)
    outcomes = {"identical": 0, "refused": 0}
    for trial in range(120):
        data = bytearray(good)
        kind = trial % 3
        if kind == 0:  # truncated
            data = data[: rng.randrange(len(data))]
        elif kind == 1:  # bytes flipped
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        else:  # random bytes of a similar length
            data = bytearray(rng.randbytes(rng.randint(1, len(good))))
        path = tmp_path / f"m{trial}.pt"
        path.write_bytes(bytes(data))
        try:
            loaded = load(path)
        except SuiteError as exc:
            assert isinstance(exc, CheckpointError) and "\n" not in str(exc), exc
            outcomes["refused"] += 1
            continue
        np.testing.assert_array_equal(loaded.predict(observations)[0], expected)
        for key, value in reference["q_network"].items():
            assert torch.equal(loaded.state_dict()["q_network"][key], value)
        outcomes["identical"] += 1
    assert outcomes["refused"] > 80, outcomes


def test_a_full_disk_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    agent = make("qtable")
    agent.learn(100)
    path = agent.save(tmp_path / "checkpoints" / "latest.pt")
    good = path.read_bytes()

    def full_disk(payload, handle):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("core.checkpoint.torch.save", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device") as info:
        agent.save(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == good and sorted(p.name for p in path.parent.iterdir()) == ["latest.pt"]


# Bad input is one line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad")
    agent = make("qtable")
    agent.learn(200)
    good = agent.save(base / "good.pt")
    files = {"good": good, "dir": base}
    (base / "random.pt").write_bytes(random.Random(1).randbytes(4096))
    files["random"] = base / "random.pt"
    os.mkfifo(base / "fifo.pt")
    files["fifo"] = base / "fifo.pt"
    data = Checkpoint.read(good)
    missing = {k: v for k, v in vars(data).items() if k != "agent_state"}
    missing["run"] = vars(data.run)
    files["missing"] = save_checkpoint(missing, base / "missing.pt")
    # The table of FrozenLake 4x4 in a checkpoint that says FrozenLake 8x8 (64 states).
    misfit = {**vars(data), "run": vars(data.run), "env_config": {**data.env_config, "env_kwargs": {"map_name": "8x8"}}}
    files["misfit"] = save_checkpoint(misfit, base / "misfit.pt")
    (base / "a_file").write_text("not a directory")
    files["file"] = base / "a_file"
    return files


BAD_INPUTS = [
    (train, ["qtable", "--seed", "-1"], "seed must be an integer from 0"),
    (train, ["qtable", "--seed", str(2**32)], "seed must be an integer from 0"),
    (train, ["qtable", "--set", "learning_rate=nan"], "learning_rate must be a finite number"),
    (train, ["qtable", "--set", "gamma=inf"], "gamma must be a finite number"),
    (train, ["dqn", "--set", "buffer_size=100000000000"], "buffer_size=100,000,000,000 does not fit this machine"),
    (train, ["a3c", "--env", "CartPole-v1", "--set", "num_workers=100000"], "num_workers=100,000 does not fit"),
    (train, ["neat", "--set", "population_size=1000000000"], "population_size=1,000,000,000 does not fit"),
    (train, ["qtable", "--runs-dir", "{file}"], "cannot make the run directory"),
    (train, ["qtable", "--runs-dir", "/proc/no/runs"], "cannot make the run directory"),
    (train, ["qtable", "--name", "../x"], "--name must be one directory name inside --runs-dir"),
    (train, ["qtable", "--name", "/tmp/x"], "--name must be one directory name inside --runs-dir"),
    (train, ["qtable", "--resume", "{random}"], "is not a readable checkpoint"),
    (train, ["qtable", "--resume", "{fifo}"], "is not a regular file"),
    (train, ["qtable", "--resume", "{missing}"], "missing agent_state"),
    (train, ["qtable", "--max-minutes", "nan"], "StopAfter needs a positive, finite time"),
    (evaluate, ["{random}"], "is not a readable checkpoint"),
    (evaluate, ["{fifo}"], "is not a regular file"),
    (evaluate, ["{missing}"], "missing agent_state"),
    (evaluate, ["{misfit}"], "does not hold a usable agent"),
    (evaluate, ["{good}", "--video", "{file}"], "is not a directory"),
    (evaluate, ["{good}", "--video", "/proc/no/videos"], "cannot write into --video"),
    (compare, ["{dir}", "--out", "/proc/no/compare.png"], "cannot write into the directory of --out"),
    (compare, ["{dir}", "--csv", "{dir}"], "--csv"),
    (compare, ["{dir}", "--threshold", "nan"], "--threshold must be a finite number"),
]


@pytest.mark.parametrize(("app", "argv", "message"), BAD_INPUTS, ids=[" ".join(a[1])[:60] for a in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_code_2(app, argv, message, bad_files, tmp_path, capsys):
    argv = [a.format(**{k: str(v) for k, v in bad_files.items()}) for a in argv]
    if app is train and "--runs-dir" not in argv:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    code = run_app(app.app, [*argv, "--no-progress"] if app is train else argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in one_error_line(err)
    if app is train:
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_config_json_and_the_checkpoint_of_a_run_agree(tmp_path):
    result = make("qtable", seed=4).learn(300, run_dir=tmp_path / "r")
    described = json.loads((result.run_dir / "config.json").read_text())
    checkpoint = Checkpoint.read(result.run_dir)
    assert (described["agent"], described["env"], described["seed"]) == ("qtable", "FrozenLake-v1", 4)
    assert (checkpoint.agent, checkpoint.env_config["env_id"], checkpoint.run.seed) == ("qtable", "FrozenLake-v1", 4)


def test_a_ctrl_c_while_children_start_is_deferred_not_lost():
    """While workers start, SIGINT is blocked in the starting thread (children inherit the block and never
    see it); a Ctrl-C aimed at that thread is delivered as soon as the start is over. (A Ctrl-C to the
    process may also come through another of its threads at once: not lost either.)"""
    from core.resources import children_ignore_ctrl_c

    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append("SIGINT"))
    try:
        with children_ignore_ctrl_c():
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.05)
            assert seen == []  # held back while the children start
        time.sleep(0.05)
        assert seen == ["SIGINT"]  # then delivered, not lost
    finally:
        signal.signal(signal.SIGINT, previous)
