"""Train any agent of the suite from the command line (`gym-agents-train`, or `python train.py`).

python train.py qtable                      # FrozenLake, the agent's defaults
python train.py dqn --env ALE/Pong-v5 --steps 2000000 --set buffer_size=500000 --set env.frame_stack=2
python train.py dqn --env my_pkg.envs:MyEnv-v0 --env-kwargs size=8 --max-minutes 30 --stop-at-return 475
python train.py qtable --help               # the agent's hyperparameters, env settings, presets and budgets
python train.py qtable --resume runs/FrozenLake-v1__qtable__1__20260101-120000
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated

import typer

from agents import agent_names, get_agent_class
from core.config import describe_config, parse_overrides
from gym_agents.cli import fail, main_exit

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _agent_help(agent: str) -> str:
    from envs import EnvConfig  # noqa: PLC0415
    from envs.spec import IDENTITY_FIELDS  # noqa: PLC0415

    cls = get_agent_class(agent)
    budgets = ", ".join(f"{env} {steps:,}" for env, steps in cls.step_budgets.items())
    return (
        f"\nAgent '{agent}': default env {cls.default_env}, default steps {cls.default_steps:,}"
        + (f"\nStep budgets per env (--steps overrides): {budgets}" if budgets else "")
        + f"\nHyperparameters (override with --set NAME=VALUE):\n{describe_config(cls.Config, cls.presets)}"
        + f"\nOn --resume, --set may change: {', '.join(sorted(cls.resume_settings)) or 'none of them'}"
        + "\nEnv settings (override with --set env.NAME=VALUE; None picks the env id's or its family's default):\n"
        + describe_config(EnvConfig, exclude=IDENTITY_FIELDS, prefix="env.")
    )


@app.command(context_settings={"help_option_names": [], "allow_extra_args": True})
def train(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Argument(help=f"Agent: {', '.join(agent_names())}.")] = None,
    env: Annotated[
        str | None, typer.Option(help="Gymnasium env id, or pkg.module:EnvId-v0 (default: the agent's).")
    ] = None,
    env_kwargs: Annotated[
        list[str] | None, typer.Option("--env-kwargs", help="Env constructor argument KEY=VALUE (repeat).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Total environment steps (default: the agent's budget for the env).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random source (0 to 2**32-1).")] = 1,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Several seeds, one run each: --seeds 1 2 3 (at once where cores are free).", show_default=False
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run directory name (default: env__agent__seed__time).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories are made.")] = Path("runs"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Hyperparameter NAME=VALUE, or env setting env.NAME=VALUE (repeat); on --resume, those AGENT --help "
            "lists as changeable.",
        ),
    ] = None,
    resume: Annotated[Path | None, typer.Option(help="Run directory (or checkpoint) to continue.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints (default: a tenth).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop (with a checkpoint) after this many minutes.")] = None,
    stop_at_return: Annotated[
        float | None,
        typer.Option(help="Stop once the mean return of the last 100 episodes reaches this (kept on --resume)."),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Evaluate the greedy policy every N env steps; keeps checkpoints/best.pt.")
    ] = None,
    eval_episodes: Annotated[
        int | None, typer.Option(help="Episodes of each evaluation (default 5, or a resumed run's).")
    ] = None,
    stop_at_eval_return: Annotated[
        float | None,
        typer.Option(help="Stop at the first evaluation whose mean return reaches this (kept on --resume)."),
    ] = None,
    video_every: Annotated[
        int | None, typer.Option(help="Record one evaluation episode to <run>/videos every N env steps.")
    ] = None,
    optimize: Annotated[
        bool, typer.Option("--optimize", help="Search hyperparameters with Optuna (pip install -e '.[optuna]').")
    ] = False,
    trials: Annotated[int, typer.Option(help="Trials of the --optimize study (a resumed study counts its own).")] = 20,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="--optimize on this Ray cluster with Ray Tune ('local': a local Ray; default $RAY_ADDRESS).",
            show_default=False,
        ),  # fmt: skip
    ] = None,
    preset: Annotated[
        Path | None, typer.Option(help="Hyperparameters from a preset file (best.json of --optimize), before --set.")
    ] = None,
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
    seed_list = _seed_list(seeds, ctx.args)
    from trainer.runner import RunOptions, run, run_seeds  # torch loads here, after argument checks

    options = RunOptions(
        agent=agent,
        env_id=env,
        env_kwargs=parse_overrides(env_kwargs or [], option="--env-kwargs", literal=True),
        steps=steps,
        seed=seed,
        name=name,
        runs_dir=runs_dir,
        device=device,
        overrides={**_preset(preset, agent), **parse_overrides(set_ or [])},
        resume=resume,
        checkpoint_every=checkpoint_every,
        max_minutes=max_minutes,
        stop_at_return=stop_at_return,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        stop_at_eval_return=stop_at_eval_return,
        video_every=video_every,
        progress=progress,
    )
    if optimize:
        if resume is not None or seed_list is not None:
            raise fail("--optimize runs its own trials; it takes neither --resume nor --seeds")
        for flag, value in (("--max-minutes", max_minutes), ("--stop-at-return", stop_at_return),
                            ("--stop-at-eval-return", stop_at_eval_return)):  # fmt: skip
            if value is not None:  # each trial runs its --steps, so that trials compare
                raise fail(f"--optimize runs every trial for --steps; it takes no {flag}")
        from trainer.optimize import optimize as search  # noqa: PLC0415

        address = ray_address or os.environ.get("RAY_ADDRESS")
        found = search(
            options, trials, say=typer.echo, ray_address=None if address is None else address.replace("local", "")
        )
        typer.echo(f"best of {found.trials} trials ({found.pruned} pruned): {found.best_value:.4g}")
        typer.echo(f"Train with it: {found.set_line(agent)}")
        typer.echo(f"or: python train.py {agent} --preset {found.preset_file}")
        typer.echo(str(found.study_dir))
        return
    if seed_list is not None:
        if resume is not None:
            raise fail("--seeds starts new runs; resume each run with --resume")
        _report_seeds(run_seeds(options, seed_list))
        return
    result = run(options)
    returns = "n/a" if math.isnan(result.mean_return) else f"{result.mean_return:.3f}"
    typer.echo(
        f"{result.agent} on {result.env_id}: {result.global_step:,} steps, {result.episodes:,} episodes, "
        f"mean return (last 100) {returns}, {result.wall_time:.1f} s"
    )
    if result.interrupted:
        typer.echo(f"Interrupted; checkpoint written. Resume with: python train.py {agent} --resume {result.run_dir}")
    elif result.stop_reason:
        typer.echo(f"Stopped early: {result.stop_reason}")
    typer.echo(f"Evaluate: python evaluate.py {result.run_dir}   Curves: tensorboard --logdir {result.run_dir.parent}")
    typer.echo(str(result.run_dir))


def _preset(path: Path | None, agent: str) -> dict:
    if path is None:
        return {}
    from trainer.optimize import read_preset  # noqa: PLC0415

    return read_preset(path, agent)


def _seed_list(seeds: str | None, extra: list[str]) -> list[int] | None:
    """`--seeds 1 2 3` (the values after the first come as extra arguments) or `--seeds 1,2,3`."""
    if seeds is None:
        if extra:
            raise fail(f"unexpected extra arguments: {' '.join(extra)}")
        return None
    words = [w for text in [seeds, *extra] for w in text.replace(",", " ").split()]
    try:
        return [int(w) for w in words]
    except ValueError:
        raise fail(f"--seeds takes integers, not {' '.join(words)}") from None


def _report_seeds(results: list) -> None:
    from reports import format_text, select, summarize, table_rows  # noqa: PLC0415

    for result in results:
        typer.echo(f"{result.run_dir}: {result.global_step:,} steps, mean return (last 100) {result.mean_return:.3f}")
    if any(r.interrupted for r in results):
        typer.echo("Interrupted; checkpoints written. Resume each run with: python train.py AGENT --resume RUN_DIR")
    selection = select([str(r.run_dir) for r in results])
    typer.echo(format_text(*table_rows([summarize(g) for g in selection.groups])))
    typer.echo(f"Compare: python compare.py {' '.join(str(r.run_dir) for r in results)}")


def main() -> None:
    main_exit(app)


if __name__ == "__main__":
    main()
