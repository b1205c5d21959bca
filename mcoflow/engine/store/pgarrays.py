"""A faster text dumper for the array parameters of the PostgreSQL write path.

The engine's bulk statements pass one list per column (``unnest``, ``= ANY``), up to
hundreds of elements each, many of them JSON text. psycopg's own text dumper looks up
a dumper and runs a regular expression for every element, and escapes every JSON
string with ``re.sub``: about 5 % of a busy executor's CPU. The elements the engine
sends are only ``str``, ``int``, ``float`` and ``None``; this dumper writes those as
the array literal directly and hands anything else (nested lists, other types, NUL
characters) to psycopg's dumper, which also raises its usual errors.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.array import ListDumper

__all__ = ["FastListDumper", "array_literal", "use_fast_arrays"]


class _Unsupported(Exception):
    pass


def _element(item: Any) -> str:
    kind = type(item)
    if kind is str:
        if "\x00" in item:
            raise _Unsupported
        # quoted, so spaces, commas, braces and the word NULL stay text
        text: str = item
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if kind is int or kind is float:  # bool is neither: psycopg decides how to spell it
        return repr(item)
    if item is None:
        return "NULL"
    raise _Unsupported


def array_literal(items: list[Any]) -> str | None:
    """The PostgreSQL array literal of a flat list of str/int/float/None, or None when
    the list holds anything else."""
    try:
        return "{" + ",".join(map(_element, items)) + "}"
    except _Unsupported:
        return None


class FastListDumper(ListDumper):
    def dump(self, obj: list[Any]) -> Any:
        literal = array_literal(obj)
        if literal is None:
            return super().dump(obj)
        return literal.encode(self._tx.encoding)


def use_fast_arrays(driver_connection: Any) -> None:
    """Register the dumper on one psycopg connection (last registered wins for ``list``)."""
    driver_connection.adapters.register_dumper(list, FastListDumper)
