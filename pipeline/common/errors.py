"""Errors a user can cause. Stages turn them into one `error:` line and exit code 2."""


class PipelineError(Exception):
    """A problem the user can fix (bad path, missing credentials, bad data); say what to do."""


class ConfigError(PipelineError):
    """A params problem: unknown, missing or mistyped key."""
