"""The one exception type the library raises for problems a user can fix."""


class CnnfruitError(ValueError):
    """Bad input, a bad file or a failed run; the CLI shows its message as `Error: ...`."""
