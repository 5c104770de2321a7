"""The HPARAMS tab: each run's hyperparameters and final metrics, served by a real TensorBoard on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from agents import Evaluate, make

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_real_tensorboard_serves_hyperparameters_and_final_metrics(tmp_path):
    runs = tmp_path / "runs"
    first = make("qtable", seed=1, gamma=0.99)
    first.learn(4_000, run_dir=runs / "g099", callbacks=[Evaluate(2_000, episodes=10)])
    second = make("qtable", seed=1, gamma=0.9)
    second.learn(4_000, run_dir=runs / "g090")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast=false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def post(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/data/plugin/hparams/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return json.loads(urllib.request.urlopen(request, timeout=5).read())

    try:
        deadline, experiment = time.monotonic() + 60, {}
        while time.monotonic() < deadline and len(experiment.get("hparamInfos", [])) == 0:
            try:
                experiment = post("experiment", {"experimentName": ""})
            except OSError:
                time.sleep(0.3)
        names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"agent", "env", "seed", "agent_config.gamma", "env_config.env_id"} <= names
        metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert metrics == {"hparams/mean_return_last100", "hparams/best_eval_return"}
        body = {"experimentName": "", "allowedStatuses": STATUSES, "colParams": [], "startIndex": 0, "sliceSize": 10}
        groups = {g["name"]: g for g in post("session_groups", body)["sessionGroups"]}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert set(groups) == {"g099", "g090"}
    assert groups["g099"]["hparams"]["agent_config.gamma"] == pytest.approx(0.99)
    assert groups["g090"]["hparams"]["agent_config.gamma"] == pytest.approx(0.9)
    values = {m["name"]["tag"]: m["value"] for m in groups["g099"]["metricValues"]}
    assert values["hparams/best_eval_return"] == pytest.approx(first.run.best_return, abs=1e-6)
    returns = {m["name"]["tag"]: m["value"] for m in groups["g090"]["metricValues"]}
    assert "hparams/best_eval_return" not in returns  # never evaluated
    assert 0.0 <= returns["hparams/mean_return_last100"] <= 1.0
