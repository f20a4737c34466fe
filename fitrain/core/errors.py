"""The one exception type users see: a message that says what is wrong and where, never a bare traceback."""


class FitrainError(Exception):
    """A user-facing error. The CLI prints its message (no traceback) and exits with status 2."""


class ConfigError(FitrainError):
    """A recipe or command-line override that does not fit the schema."""
