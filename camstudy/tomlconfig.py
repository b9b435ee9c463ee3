"""Reading TOML configs with one clear line per problem (torch-free: the study server uses it)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from camstudy.errors import UserError


def load_toml(path: Path) -> dict:
    """Parse a TOML file; a missing file or a syntax error is a :class:`UserError`."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None


class Fields:
    """Pops typed fields from one TOML table and rejects what is left over."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise UserError(f"{where or 'config'}: must be a table, got {show(table)}")
        self.table = dict(table)
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple, default: Any = ..., check=None, problem: str = "") -> Any:
        if key not in self.table:
            if default is ...:
                raise UserError(f"{self._name(key)}: missing (required)")
            return default
        value = self.table.pop(key)
        bad_bool = (
            isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,))
        )
        if bad_bool or not isinstance(value, kind) or (check is not None and not check(value)):
            raise UserError(f"{self._name(key)}: {problem or 'must be ' + kind_name(kind)}, got {show(value)}")
        return value

    def table_of(self, key: str, default: Any = ...) -> Any:
        return self.get(key, dict, default)

    def done(self) -> None:
        if self.table:
            key = sorted(self.table)[0]
            raise UserError(f"{self._name(key)}: unknown key")


def kind_name(kind) -> str:
    names = {
        int: "an integer",
        str: "a string",
        bool: "true or false",
        float: "a number",
        list: "a list",
        dict: "a table",
    }
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def show(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "a table"
