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
