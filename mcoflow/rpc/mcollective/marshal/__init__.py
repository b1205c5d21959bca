"""A restricted Ruby ``Marshal`` (format 4.8) reader and writer for MCollective's psk bodies.

Only plain data is ever built: nil, true, false, Integer, Float, String, Symbol, Array and
Hash. Anything else a stream may hold (objects, classes, modules, user types, extended
objects, regexps, structs, data) is refused with a :class:`MarshalError` naming the type
and its offset; nothing is looked up or instantiated by name.

Python shapes: nil ``None``; a String with an encoding (``:E``) ``str``; a binary String, or
one in an encoding Python does not decode the same way, ``bytes``; a Symbol :class:`Symbol`
(a ``str`` subclass); Array ``list``; Hash ``dict`` (a Hash's default value is read and
dropped). Invalid UTF-8 in a UTF-8 String is replaced (U+FFFD): replies are data for people,
not keys.
"""

from __future__ import annotations

from mcoflow.rpc.mcollective.marshal.reader import MAX_DEPTH, MAX_NODES, loads
from mcoflow.rpc.mcollective.marshal.values import MarshalError, RubyKey, RubyValue, Symbol
from mcoflow.rpc.mcollective.marshal.writer import dumps, float_text

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MarshalError",
    "RubyKey",
    "RubyValue",
    "Symbol",
    "dumps",
    "float_text",
    "loads",
]
