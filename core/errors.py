"""User-facing errors: every failure names the file, the field and what to do."""

from __future__ import annotations


class StudioError(Exception):
    """An error the user can act on.

    ``str(err)`` is one paragraph: what happened, in which file and field, and the fix.
    Front ends (CLI, GUI) show it as is, without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.field = field
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}:")
        text = self.message
        if self.field:
            text = f"{text} [field: {self.field}]"
        parts.append(text)
        if self.fix:
            parts.append(f"What to do: {self.fix}")
        return " ".join(parts)


class Cancelled(Exception):
    """Raised inside long work when its :class:`core.progress.CancelToken` is cancelled."""
