"""The benchmarks still run: each one's --quick mode, shrunk further by its own options, as a user runs it
(a subprocess), ending on its table. No timing is asserted: speed is what the benches print, not a test."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.resources import native_bf16

ROOT = Path(__file__).resolve().parents[1]
needs_peers = pytest.mark.skipif(
    importlib.util.find_spec("stable_baselines3") is None or importlib.util.find_spec("neat") is None,
    reason="the benches compare with stable-baselines3 and neat-python: pip install -e '.[bench]'",
)


def bench(*args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
@needs_peers
def test_bench_dqn_quick():
    out = bench(
        "bench/bench_dqn.py", "--quick", "--cartpole-steps", "1500", "--eval-every", "1000",
        "--eval-episodes", "1", "--pong-warmup", "64", "--pong-window", "64", "--cartpole-envs", "1", "4",
        "--race-minutes", "0.15", "--race-report-minutes", "0.03",
    )  # fmt: skip
    prec = re.search(r"precision=auto takes (fp32|bf16) here", out).group(1)  # the preset's, as resolved here
    batch16 = "bf16 (vs fp32)" if native_bf16("cpu") else "fp32"  # both where bf16 is native, else float32
    rows = ("replay 1M Atari (GiB)", "CartPole s1 train s total", "CartPole s1 4 envs train s total",
            "Pong train steps/s, RL Zoo settings", "Pong train steps/s, Pong preset", "Pong ceiling",
            f"update ms, batch 16: {batch16}", "update ms, batch 32: bf16", f"batch 32: {prec} compiled",
            f"{prec} cnn_scale 0.5",
            "preset with 8 envs", "memory kept (vs returned)",
            "preset compiled",
            "steps to -15", "min to 0", "at the end: episodes")  # fmt: skip
    for row in rows:
        assert row in out
    # The race shows its progress while it runs (here every 2 s; 5 min by default).
    assert re.search(r"step [\d,]+, [\d.]+ min: mean \S+ over the last \d+ of \d+ games", out)
    # Mean scores change sign, so the race's last-100 means get no ratio.
    assert re.search(r"at the end: last\s+\S+\s+\S+\s+(\S+)", out).group(1) == "-"


@pytest.mark.slow
def test_bench_pg_quick():
    out = bench("bench/bench_pg.py", "--quick", "--window", "1.5")
    assert "reference numpy (1 env)" in out and "pg batch (16 envs on 8)" in out and "pg async (2 envs)" in out


@pytest.mark.slow
@needs_peers
def test_bench_a3c_quick(tmp_path):
    bench(
        "bench/bench_a3c.py", "--quick", "--sps-steps", "200", "--doom-cap", "3", "--cartpole-cap", "3",
        "--out", str(tmp_path / "a3c.json"),
    )  # fmt: skip
    import json

    results = json.loads((tmp_path / "a3c.json").read_text())
    assert {"throughput", "cartpole", "vizdoom", "sb3_a2c_cartpole"} <= set(results)
    assert [row["workers"] for row in results["throughput"]] == [1, 2]


@pytest.mark.slow
@needs_peers
def test_bench_neat_quick():
    out = bench("bench/bench_neat.py", "--quick", "--seeds", "1", "--generations", "2")
    assert "XOR generations to 3.9" in out and "CartPole genome evaluations/s" in out


@pytest.mark.slow
def test_make_results_writes_its_table_and_picture(tmp_path):
    bench(
        "bench/make_results.py", "--agents", "qtable", "--steps", "3000", "--seeds", "1", "--episodes", "2",
        "--smooth", "5", "--out-dir", str(tmp_path / "docs"), "--runs-dir", str(tmp_path / "runs"),
    )  # fmt: skip
    table = (tmp_path / "docs" / "results.md").read_text()
    assert "| `qtable` | FrozenLake-v1 | 3,000 | 1 |" in table
    assert (tmp_path / "docs" / "compare.png").stat().st_size > 1000
