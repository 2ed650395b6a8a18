"""The exceptions a user may see. The CLI turns them into one line and an exit code, never a traceback."""


class FacskitError(Exception):
    """A problem with the user's input or environment that facskit can explain in one line (exit code 1)."""

    exit_code = 1


class UsageError(FacskitError):
    """The command line itself is wrong: a missing path, a bad option value (exit code 2)."""

    exit_code = 2


class MediaError(FacskitError):
    """A media file cannot be read: unreadable, truncated, empty, too small or too large."""


class CheckpointError(FacskitError):
    """A checkpoint is corrupt, of another format, or incompatible with the requested model."""


class DatasetError(FacskitError):
    """A dataset root or a prepared cache is missing, malformed or inconsistent."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when empty): what a one-line error quotes from a
    library's multi-line report."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
