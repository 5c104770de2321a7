"""Train any agent of the suite from the command line.

python train.py qtable                      # FrozenLake, the agent's defaults
python train.py dqn --env ALE/Pong-v5 --steps 2000000 --set buffer_size=500000
python train.py qtable --help               # the agent's hyperparameters and presets
python train.py qtable --resume runs/FrozenLake-v1__qtable__1__20260101-120000
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agents import agent_names, get_agent_class
from trainer.cli import fail, main_exit
from trainer.config import describe_config, parse_overrides
from trainer.errors import SuiteError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _agent_help(agent: str) -> str:
    cls = get_agent_class(agent)
    return (
        f"\nAgent '{agent}': default env {cls.default_env}, default steps {cls.default_steps:,}\n"
        f"Hyperparameters (override with --set NAME=VALUE):\n{describe_config(cls.Config, cls.presets)}"
    )


@app.command(context_settings={"help_option_names": []})
def train(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Argument(help=f"Agent: {', '.join(agent_names())}.")] = None,
    env: Annotated[str | None, typer.Option(help="Gymnasium env id (default: the agent's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Total environment steps (default: the agent's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random source.")] = 1,
    name: Annotated[str | None, typer.Option(help="Run directory name (default: env__agent__seed__time).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories are made.")] = Path("runs"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Hyperparameter override NAME=VALUE (repeat).")
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Run directory (or checkpoint) to continue.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (default: a tenth).")] = None,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    help_: Annotated[
        bool, typer.Option("--help", "-h", help="Show this message (and AGENT's hyperparameters).")
    ] = False,
) -> None:
    """Train AGENT; the last line printed is the run directory."""
    if help_:
        typer.echo(ctx.get_help())
        if agent:
            typer.echo(_agent_help(agent))
        raise typer.Exit(0)
    if agent is None:
        raise fail(f"missing AGENT: one of {', '.join(agent_names())}")
    from trainer.runner import RunOptions, Trainer  # torch loads here, after argument checks

    if steps is not None and steps <= 0:
        raise fail(f"--steps must be a positive number, not {steps}")
    if checkpoint_every is not None and checkpoint_every <= 0:
        raise fail(f"--checkpoint-every must be positive, not {checkpoint_every}")
    options = RunOptions(
        agent=agent,
        env_id=env,
        steps=steps,
        seed=seed,
        name=name,
        runs_dir=runs_dir,
        device=device,
        overrides=parse_overrides(set_ or []),
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
    )
    if resume is not None and env is not None:
        raise SuiteError("--env cannot change on --resume; the run's env is in its checkpoint")
    trainer = Trainer(options)
    result = trainer.run()
    returns = f"{result.mean_return:.3f}" if result.episodes else "n/a"
    typer.echo(
        f"{result.agent} on {result.env_id}: {result.global_step:,} steps, {result.episodes:,} episodes, "
        f"mean return (last 100) {returns}, {result.wall_time:.1f} s"
    )
    if result.interrupted:
        typer.echo(f"Interrupted; checkpoint written. Resume with: python train.py {agent} --resume {result.run_dir}")
    typer.echo(f"Evaluate: python evaluate.py {result.run_dir}   Curves: tensorboard --logdir {result.run_dir.parent}")
    typer.echo(str(result.run_dir))


if __name__ == "__main__":
    main_exit(app)
