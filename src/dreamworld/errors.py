"""Errors a user can act on.

Every error raised for bad input derives from :class:`DreamworldError`; the command line prints it as
one line (``error: ...``) and exits with status 2 instead of showing a traceback. The message says what
is wrong and what to do.
"""


class DreamworldError(Exception):
    """Base class of errors caused by input the user can fix."""


class ConfigError(DreamworldError):
    """An unknown configuration key, a value of the wrong type, or an unreadable config file."""


class EnvError(DreamworldError):
    """An unknown environment id or an option the environment does not accept."""


class MissingDependencyError(DreamworldError):
    """An optional package is missing; the message names the extra that installs it."""


class CheckpointError(DreamworldError):
    """A checkpoint is truncated, foreign (not written by dreamworld) or incompatible."""


class StorageError(DreamworldError):
    """Writing to the run directory failed (for example a full disk); nothing already there is lost."""


def missing_dependency(package: str, extra: str, what: str) -> MissingDependencyError:
    """Builds the error for an optional package that is not installed.

    Args:
        package: The import name that failed, e.g. ``"dm_control"``.
        extra: The dreamworld extra that installs it, e.g. ``"dmc"``.
        what: What needed it, e.g. ``"environment 'dmc/walker-walk'"``.

    Returns:
        An error whose message names the install command.
    """
    return MissingDependencyError(
        f"{what} needs the optional package '{package}', which is not installed: "
        f"run pip install 'dreamworld[{extra}]'"
    )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after it saved its checkpoint.

    A ``KeyboardInterrupt``, so that a notebook cell or script stops as for any Ctrl-C; the command
    line prints :attr:`message` and exits with :attr:`exit_code` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
