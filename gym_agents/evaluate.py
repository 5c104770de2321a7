"""Evaluate a saved policy greedily: mean ± std return, a window to watch it, or mp4 videos.

python evaluate.py runs/FrozenLake-v1__qtable__1__20260101-120000 --episodes 1000
python evaluate.py runs/... --video videos/      # headless machine: mp4 files
python evaluate.py runs/... --render             # a window
python evaluate.py runs/... --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gym_agents.cli import fail, main_exit

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(help="Run directory or checkpoint file.")],
    episodes: Annotated[int, typer.Option(help="Episodes to play.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the first evaluation episode.")] = 0,
    render: Annotated[bool, typer.Option(help="Watch in a window (needs a display).")] = False,
    video: Annotated[Path | None, typer.Option(help="Write one mp4 per episode into this directory.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    best: Annotated[
        bool, typer.Option(help="Play the run's best evaluated policy (checkpoints/best.pt, from --eval-every).")
    ] = False,
) -> None:
    """Play the greedy policy of a trained agent."""
    if episodes < 1:
        raise fail(f"--episodes must be at least 1, not {episodes}")
    from agents import load
    from agents.evaluation import evaluate_agent, has_display

    if render and not has_display():
        raise fail("--render needs a display and none was found; use --video DIR to write mp4 files instead")
    if render and video is not None:
        raise fail("choose one of --render and --video")
    if video is not None:
        from core.files import writable_dir

        writable_dir(video, "--video")
    if best:
        if not target.is_dir():
            raise fail(f"--best takes a run directory, not {target}")
        target = target / "checkpoints" / "best.pt"
        if not target.exists():
            raise fail(f"{target} does not exist: the run was not trained with --eval-every")
    agent = load(target, device=device)
    returns = evaluate_agent(agent, episodes=episodes, seed=seed, render=render, video_dir=video)
    result = {
        "agent": agent.name,
        "env": agent.env_config.env_id,
        "episodes": episodes,
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "min_return": float(returns.min()),
        "max_return": float(returns.max()),
        "returns": [float(r) for r in returns],
        "trained_steps": agent.run.global_step,
    }
    if video is not None:
        result["video_dir"] = str(video)
    if json_:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"{result['agent']} on {result['env']}: mean return {result['mean_return']:.3f} ± {result['std_return']:.3f} "
        f"over {episodes} episodes (min {result['min_return']:.3f}, max {result['max_return']:.3f})"
    )
    if video is not None:
        typer.echo(f"videos written to {video}")


def main() -> None:
    main_exit(app)


if __name__ == "__main__":
    main()
