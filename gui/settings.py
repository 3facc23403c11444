"""Persistent user settings (QSettings under organisation/app "CHITA Studio")."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings

ORGANIZATION = "CHITA Studio"
APPLICATION = "CHITA Studio"
MAX_RECENT = 8


def make_settings() -> QSettings:
    """Return the app's QSettings in the default format (tests switch it to INI in a tmp dir)."""
    return QSettings(QSettings.defaultFormat(), QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def read(settings: QSettings, key: str, default: Any, kind: type | None = None) -> Any:
    """Read ``key`` converted to the type of ``default`` (INI stores strings); fall back on errors."""
    kind = kind or type(default)
    value = settings.value(key, None)
    if value is None:
        return default
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is list:
            if isinstance(value, str):
                return [value] if value else []
            return [str(v) for v in value]
        return kind(value)
    except (TypeError, ValueError):
        return default


def recent_files(settings: QSettings) -> list[str]:
    """Recently opened model files, newest first."""
    return read(settings, "recent/models", [], list)[:MAX_RECENT]


def add_recent_file(settings: QSettings, path: str) -> list[str]:
    """Put ``path`` first in the recent list and return the new list."""
    files = [p for p in recent_files(settings) if p != path]
    files.insert(0, path)
    files = files[:MAX_RECENT]
    settings.setValue("recent/models", files)
    return files
