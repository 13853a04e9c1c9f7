"""User-facing errors: each one is printed as a single line by the jobs, never a traceback."""


class FakefaceError(Exception):
    """An error the user can fix; its message says what is wrong and what to do."""

    exit_code = 1


class ConfigError(FakefaceError):
    """A bad config file, key, value or flag."""


class InputError(FakefaceError):
    """Missing or unusable input data."""


class TrackingError(FakefaceError):
    """The MLflow tracking store or registry cannot be used."""


class ModelError(FakefaceError):
    """A model that cannot be loaded or must not be used for scoring."""
