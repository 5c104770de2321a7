"""User-facing errors: anything the command lines report as one line instead of a traceback."""


class SuiteError(Exception):
    """A problem with the user's input (agent, env, option or checkpoint), reported in one line."""


class UnknownAgentError(SuiteError):
    pass


class UnknownEnvError(SuiteError):
    pass


class IncompatibleEnvError(SuiteError):
    """The agent cannot run on this env (for example a Q-table on continuous observations)."""


class ConfigError(SuiteError):
    """An unknown hyperparameter name or a value of the wrong type."""


class CheckpointError(SuiteError):
    """A missing, truncated or foreign checkpoint."""


class WorkerError(SuiteError):
    """A worker process or actor failed; the message names it and its last error line, the note holds
    the full report (a traceback, Ray's error text)."""


def worker_error(what: str, report: str, kind: str = "") -> WorkerError:
    """One line, `"<what>: [<kind>: ]<last line of report>"` (what: "a3c worker 1 failed"), with the
    whole report attached as a note."""
    text = report.strip()
    last = text.splitlines()[-1] if text else "no report"
    error = WorkerError(f"{what}: {kind + ': ' if kind else ''}{last}")
    error.add_note(text)
    return error
