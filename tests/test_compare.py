"""compare.py and reports/: hand-computed table values from synthetic event files, curve alignment across
seeds, the picture's pixel size, and one-line errors for missing, non-run, empty and mixed-env inputs."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gym_agents.cli import run_app
from gym_agents.compare import app
from reports import CompareError, load_run, picture_size, select, summarize
from reports.curves import RunCurve, mean_curve, smooth


def write_run(
    run_dir: Path,
    returns: list[float],
    *,
    agent: str = "qtable",
    env: str = "FrozenLake-v1",
    seed: int = 1,
    step_every: int = 10,
    seconds_per_step: float = 0.1,
    close: bool = True,
) -> Path:
    """A run directory as the trainer writes it: config.json plus episode `i` ending at step
    `(i + 1) * step_every`, `step * seconds_per_step` seconds after the writer opened."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"agent": agent, "env": env, "seed": seed}))
    start = time.time()
    writer = SummaryWriter(str(run_dir))
    for i, value in enumerate(returns):
        step = (i + 1) * step_every
        writer.add_scalar("charts/episodic_return", value, step, walltime=start + step * seconds_per_step)
        writer.add_scalar("charts/episodic_length", 5, step, walltime=start + step * seconds_per_step)
    writer.flush()
    if close:
        writer.close()
    return run_dir


def invoke(args: list[str]) -> tuple[int, str, str]:
    """compare.py in-process, through the same `run_app` that turns SuiteErrors into `error: ...`, exit 2."""
    with CliRunner().isolation() as (stdout, stderr, _):
        code = run_app(app, [str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return code, stdout.getvalue().decode(), stderr.getvalue().decode()


@pytest.fixture
def two_groups(runs_dir: Path) -> Path:
    """qtable: seeds with returns 0..9 and 0,2,..,18; qnet: one seed that never scores."""
    write_run(runs_dir / "a1", [float(i) for i in range(10)], seed=1)
    write_run(runs_dir / "a2", [2.0 * i for i in range(10)], seed=2)
    write_run(runs_dir / "b1", [0.0] * 10, agent="qnet", seed=1)
    return runs_dir


def test_smooth_is_a_trailing_moving_average():
    assert smooth(np.array([1.0, 2.0, 3.0, 4.0]), 2) == pytest.approx([1.0, 1.5, 2.5, 3.5])
    assert smooth(np.array([1.0, 2.0, 3.0]), 1) == pytest.approx([1.0, 2.0, 3.0])
    assert smooth(np.array([3.0, 6.0]), 10) == pytest.approx([3.0, 4.5])
    with pytest.raises(CompareError):
        smooth(np.array([1.0]), 0)


def test_load_run_reads_steps_returns_and_wall_time(runs_dir: Path):
    run = load_run(write_run(runs_dir / "r", [1.0, 2.0, 3.0], seed=7))
    assert (run.agent, run.env, run.seed, run.episodes) == ("qtable", "FrozenLake-v1", 7, 3)
    assert run.steps.tolist() == [10, 20, 30]
    assert run.returns.tolist() == [1.0, 2.0, 3.0]
    # Seconds since the writer opened (the file-version event), written as step * 0.1.
    assert run.wall == pytest.approx([1.0, 2.0, 3.0], abs=0.5)


def test_table_values_match_hand_computation(two_groups: Path):
    groups = select([str(two_groups)]).groups
    assert [(g.label, g.env, len(g.runs)) for g in groups] == [
        ("qtable", "FrozenLake-v1", 2),
        ("qnet", "FrozenLake-v1", 1),
    ]
    qtable = summarize(groups[0], last=3, threshold=5.0, window=1)
    # Last 3 episodes: (7+8+9)/3 = 8 and (14+16+18)/3 = 16 -> mean 12, population std 4.
    assert (qtable.final_mean, qtable.final_std, qtable.episodes) == (pytest.approx(12.0), pytest.approx(4.0), 20)
    # Return 5 first reached at episode 6 (step 60) and at episode 4 (value 6, step 40): mean 50 steps, 5 s.
    assert (qtable.reached, qtable.steps_to_threshold) == (2, pytest.approx(50.0))
    assert qtable.seconds_to_threshold == pytest.approx(5.0, abs=0.5)
    # 3-episode average: seed 1 first reaches 5 on returns 4,5,6 (step 70), seed 2 on 4,6,8 (step 50).
    smoothed = summarize(groups[0], last=3, threshold=5.0, window=3)
    assert smoothed.steps_to_threshold == pytest.approx((70 + 50) / 2)
    qnet = summarize(groups[1], last=3, threshold=5.0)
    assert (qnet.reached, qnet.steps_to_threshold, qnet.final_std) == (0, None, 0.0)


def test_mean_curve_interpolates_seeds_onto_a_common_grid(runs_dir: Path):
    def line(slope: float, steps: list[int]) -> RunCurve:
        steps_array = np.array(steps)
        return RunCurve(runs_dir, "a", "E", 0, steps_array, steps_array * 0.01, slope * steps_array.astype(float))

    # y = 0.1 x logged every 100 steps, y = 0.3 x logged every 40 steps; overlap 100..400.
    curve = mean_curve([line(0.1, [100, 200, 300, 400, 500]), line(0.3, list(range(40, 401, 40)))], points=7)
    assert curve.x == pytest.approx(np.linspace(100, 400, 7))
    assert curve.mean == pytest.approx(0.2 * curve.x)
    assert curve.std == pytest.approx(0.1 * curve.x)


def test_cli_prints_table_writes_png_and_csv(two_groups: Path, tmp_path: Path):
    out, table = tmp_path / "pics" / "cmp.png", tmp_path / "cmp.csv"
    code, stdout, stderr = invoke(
        [two_groups, "--out", out, "--threshold", 5, "--last", 3, "--smooth", 1, "--csv", table]
    )
    assert code == 0, stderr
    assert "12.000 ± 4.000" in stdout and "0.000 ± 0.000" in stdout
    qnet_line = next(line for line in stdout.splitlines() if line.startswith("qnet"))
    assert qnet_line.split()[-2:] == ["-", "-"]
    with Image.open(out) as image:
        assert image.size == picture_size(1) == (700, 450)
    rows = {row["group"]: row for row in csv.DictReader(table.open())}
    assert float(rows["qtable"]["steps_to_threshold"]) == 50.0
    assert float(rows["qtable"]["final_mean"]) == 12.0 and rows["qnet"]["steps_to_threshold"] == ""


def test_labels_name_groups_and_partial_reach_is_reported(two_groups: Path, tmp_path: Path):
    code, stdout, stderr = invoke(
        ["--label", f"all-qtable={two_groups}/a*", "--label", f"b={two_groups}/b1", "--threshold", 17,
         "--smooth", 1, "--x", "time", "--out", tmp_path / "c.png"]
    )  # fmt: skip
    assert code == 0, stderr
    assert "all-qtable" in stdout and "(1/2 runs)" in stdout  # only seed 2 reaches 17 (value 18, step 100)
    assert "100 (1/2 runs)" in stdout


def test_each_env_gets_its_own_panel(runs_dir: Path, tmp_path: Path):
    write_run(runs_dir / "lake", [1.0, 0.0, 1.0])
    write_run(runs_dir / "taxi", [-10.0, -5.0], env="Taxi-v3")
    out = tmp_path / "two.png"
    code, stdout, stderr = invoke([runs_dir / "lake", runs_dir / "taxi", "--out", out])
    assert code == 0, stderr
    assert "FrozenLake-v1" in stdout and "Taxi-v3" in stdout
    with Image.open(out) as image:
        assert image.size == picture_size(2) == (1400, 450)


def test_a_label_mixing_envs_is_refused(runs_dir: Path, tmp_path: Path):
    write_run(runs_dir / "lake", [1.0])
    write_run(runs_dir / "taxi", [-10.0], env="Taxi-v3")
    code, stdout, stderr = invoke(["--label", f"mine={runs_dir}/*", "--out", tmp_path / "x.png"])
    assert code == 2
    assert stderr.startswith("error: label 'mine' mixes envs FrozenLake-v1 and Taxi-v3") and stderr.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


def test_empty_runs_are_an_error_alone_and_skipped_beside_others(runs_dir: Path, tmp_path: Path):
    empty = write_run(runs_dir / "empty", [])
    code, _, stderr = invoke([empty, "--out", tmp_path / "x.png"])
    assert (code, stderr.strip()) == (2, f"error: no episode logged yet in {empty} (charts/episodic_return is empty); "
                                      "wait for the first episodes")  # fmt: skip
    (runs_dir / "no-events").mkdir()
    (runs_dir / "no-events" / "config.json").write_text('{"agent": "qnet", "env": "FrozenLake-v1", "seed": 1}')
    write_run(runs_dir / "full", [1.0, 2.0])
    code, stdout, stderr = invoke([runs_dir, "--out", tmp_path / "y.png"])
    assert code == 0, stderr
    assert stderr.count("warning: skipping") == 2 and "qtable" in stdout


def test_a_run_still_training_is_read_up_to_its_last_record(runs_dir: Path):
    run_dir = write_run(runs_dir / "live", [1.0, 2.0, 3.0], close=False)
    event_file = next(run_dir.glob("events.out.tfevents.*"))
    with event_file.open("ab") as handle:  # a record cut short mid-write
        handle.write(b"\x20\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    assert load_run(run_dir).returns.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: [d / "nope"], "no such run directory"),
        (lambda d: [d / "plain"], "is not a run directory (no config.json) and holds no runs"),
        (lambda d: [f"{d}/zz*"], "no path matches"),
        (lambda d: ["--label", "nameonly"], "--label wants NAME=GLOB"),
        (lambda d: [], "no runs given"),
        (lambda d: [d / "bad"], "lacks 'agent'"),
        (lambda d: [d / "ok", "--out", d / "x.jpg"], "--out must end in"),
        (lambda d: [d / "ok", "--smooth", 0], "--smooth must be at least 1"),
        (lambda d: [d / "ok", "--x", "epochs"], "Invalid value for '--x'"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path: Path, make_args, message: str):
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"env": "Taxi-v3"}')
    write_run(tmp_path / "ok", [1.0])
    code, stdout, stderr = invoke(make_args(tmp_path))
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1
    assert "Traceback" not in stdout + stderr


def test_plain_files_among_runs_are_skipped(runs_dir: Path, tmp_path: Path):
    write_run(runs_dir / "r", [1.0])
    (runs_dir / "README.md").write_text("runs land here")
    code, _, stderr = invoke([runs_dir / "r", runs_dir / "README.md", "--out", tmp_path / "x.png"])
    assert code == 0 and "warning: skipping" in stderr and "README.md: a file" in stderr
    with pytest.raises(CompareError, match="matches no run directory"):
        select([f"{runs_dir}/*.md"])


def test_a_resumed_run_drops_the_episodes_logged_past_its_checkpoint(runs_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    run_dir = write_run(runs_dir / "resumed", [1.0, 2.0, 3.0, 4.0, 5.0])  # steps 10..50; checkpoint at 30
    time.sleep(1.1)  # event file names carry the second they were opened; the resumed file must sort after
    writer = SummaryWriter(str(run_dir), purge_step=30)  # as RunLogger does on --resume
    for step, value in [(30, 30.0), (40, 40.0)]:
        writer.add_scalar("charts/episodic_return", value, step)
    writer.close()
    run = load_run(run_dir)
    assert run.steps.tolist() == [10, 20, 30, 40]
    assert run.returns.tolist() == [1.0, 2.0, 30.0, 40.0]
