"""The plain Ruby values the restricted Marshal reader builds, and its error."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["MarshalError", "RubyKey", "RubyValue", "Symbol"]


class Symbol(str):
    """A Ruby Symbol. It equals (and hashes like) the ``str`` of the same text, so the reader
    refuses a Hash holding both ``:a`` and ``"a"`` as keys rather than merge them."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f":{str.__str__(self)}"


RubyKey: TypeAlias = bool | int | float | str | bytes | None
RubyValue: TypeAlias = RubyKey | list["RubyValue"] | dict[RubyKey, "RubyValue"]


class MarshalError(ValueError):
    """The bytes are not a Marshal stream of plain data (or exceed a limit)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} at offset {offset}")
        self.offset = offset
