"""Errors a user can cause: the CLI prints their message as one line and exits 2."""


class UserError(ValueError):
    """A mistake in the user's input (file, name, option), not a bug.

    A ``ValueError`` so library callers can catch it like the engine's own errors.
    """
