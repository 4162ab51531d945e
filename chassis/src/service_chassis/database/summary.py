"""What a statement is, in a few words: the ``db.query.summary`` and ``db.operation.name`` of
the stable database conventions (semantic conventions 1.33 and later), and its text without
literal values.

A summary is the operation followed by the tables it touches (``SELECT items``,
``INSERT outbox``), low in cardinality, so it names the span. The chassis sends parameters
separately ($1, $2, ...); a literal written into the text is replaced by ``?`` all the same, so
no value of a request reaches a span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STRING = re.compile(r"'(?:[^']|'')*'|\$\w*\$.*?\$\w*\$", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w$.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\b")
_WORD = re.compile(r"[A-Za-z_]+")
_TABLES = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+((?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
MAX_SUMMARY = 255


@dataclass(frozen=True)
class Statement:
    operation: str  # SELECT, INSERT, ... ("" when unknown)
    collection: str  # the one table it touches, "" when none or several
    summary: str
    text: str  # sanitised


def sanitise(sql: str) -> str:
    return _NUMBER.sub("?", _STRING.sub("?", sql))


def describe(sql: str) -> Statement:
    text = sanitise(sql)
    bare = _COMMENT.sub(" ", text)
    first = _WORD.search(bare)
    operation = first.group(0).upper() if first else ""
    if operation == "WITH":  # a CTE: a writing verb is what it does, else it reads
        writes = re.search(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", bare, re.IGNORECASE)
        operation = writes.group(1).upper() if writes else "SELECT"
    tables: list[str] = []
    for match in _TABLES.finditer(bare):
        name = match.group(1).replace('"', "")
        if name.upper() not in {"SELECT", "LATERAL"} and name not in tables:
            tables.append(name)
    summary = " ".join([operation, *tables]).strip()[:MAX_SUMMARY]
    return Statement(
        operation=operation,
        collection=tables[0] if len(tables) == 1 else "",
        summary=summary or "postgresql",
        text=text,
    )
