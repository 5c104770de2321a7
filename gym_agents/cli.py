"""What the command lines share: running a typer app so that every bad input is one line on stderr."""

from __future__ import annotations

import os
import signal
import sys

import typer

try:  # typer >= 0.25 vendors its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

from core.errors import SuiteError

EXIT_USAGE = 2
# typer >= 0.25 keeps Abort and Exit in typer.exceptions only; older click-based typer has both kinds.
_ABORTS = tuple({typer.Abort, getattr(click_exceptions, "Abort", typer.Abort)})
_EXITS = tuple({typer.Exit, getattr(click_exceptions, "Exit", typer.Exit)})


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run `app` on `argv`; usage errors and `SuiteError`s become `error: ...` and exit code 2."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name=None, standalone_mode=False)
    except click_exceptions.UsageError as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except (*_ABORTS, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        return 130
    except _EXITS as exc:
        code = exc.exit_code
    except SuiteError as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    else:
        code = result if isinstance(result, int) else 0
    # A Ctrl-C before the command's own handlers are in place (a slow start-up): typer turns it into a
    # silent Exit(130), which in this (non-standalone) mode comes back as the return value 130. No command
    # of the suite returns 130 itself.
    if code == 130:
        typer.echo("error: interrupted", err=True)
    return code


def main_exit(app: typer.Typer) -> None:
    # `--env my_pkg:MyEnv-v0` imports my_pkg from where the command is run, as `python -m` would.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    code = run_app(app)
    # The command's work is done and saved: a Ctrl-C or SIGTERM landing while the interpreter shuts down
    # (after Python has put back the default handlers) would otherwise kill it and hide the exit code.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
