"""Reading the settings' environment: `.env` files, typed values, and one clear error per bad setting.

A `.env` file in the working directory, then one in the data dir, fill in variables the
environment does not set (the environment always wins). A value that cannot be used raises
`SettingError` naming the variable; the command-line entry points print it as one line and
exit with status 2.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

DATA_DIR_VARIABLE = "LLM_MANAGER_DATA_DIR"
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class SettingError(Exception):
    """A setting that cannot be used. Deliberately not ImproperlyConfigured: Django's command runner would
    swallow that one and fail later with a traceback."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def load_env_files(default_data_dir: Path) -> Path:
    """Fill os.environ from `./.env` and `{data dir}/.env` (never over a variable already set); the data dir."""
    _fill_from(Path.cwd() / ".env")
    data_dir = Path(os.environ.get(DATA_DIR_VARIABLE, "").strip() or default_data_dir).expanduser().resolve()
    _fill_from(data_dir / ".env")
    return data_dir


def _fill_from(path: Path) -> None:
    if not path.is_file():
        return
    for name, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(name, value)


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    value = env(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingError(name, f"{value!r} is not a whole number") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise SettingError(name, f"{number} is outside {minimum}..{maximum if maximum is not None else '∞'}")
    return number


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    value = env(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingError(name, f"{value!r} is not a number") from None
    if minimum is not None and number < minimum:
        raise SettingError(name, f"{number} is below {minimum}")
    return number


def env_bool(name: str, default: bool = False) -> bool:
    value = env(name).lower()
    if not value:
        return default
    if value not in TRUE | FALSE:
        raise SettingError(name, f"{value!r} is not true or false")
    return value in TRUE


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default)
    if value not in choices:
        raise SettingError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def env_port_range(name: str, default: str) -> tuple[int, int]:
    value = env(name, default)
    try:
        low, high = (int(part) for part in value.split("-", 1))
    except ValueError:
        raise SettingError(name, f"{value!r} is not a range of ports such as 8000-8999") from None
    if not 1 <= low <= high <= 65535:
        raise SettingError(name, f"{value!r} is not a range of ports within 1-65535")
    return low, high


def writable_dir(name: str, path: Path) -> Path:
    """`path`, created if missing, after checking the service can write there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SettingError(name, f"{path} cannot be written ({exc.strerror or exc})") from None
    return path
