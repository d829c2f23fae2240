"""User-facing errors and the click plumbing that turns them into one-line messages."""
from __future__ import annotations

import click


class ArtefactError(Exception):
    """An error caused by the user's input (bad file, wrong option, mismatched bundle).

    CLIs print its message on one line and exit non-zero, never a traceback.
    """


class _FriendlyErrors:
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ArtefactError as err:
            raise click.ClickException(str(err)) from None
        except PermissionError as err:
            raise click.ClickException(f"permission denied: {err.filename or err}") from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None


class Command(_FriendlyErrors, click.Command):
    """click.Command whose ArtefactErrors become clean one-line errors."""


class Group(_FriendlyErrors, click.Group):
    """click.Group whose ArtefactErrors become clean one-line errors."""

    command_class = Command
