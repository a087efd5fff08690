"""The SOQL subset the Salesforce emulator understands: ``SELECT`` fields and parent-child subqueries,
``FROM``, ``WHERE`` (``=``, ``!=``, ``AND``, ``OR``, parentheses) and ``LIMIT``. Anything else is a
``MALFORMED_QUERY``, as it would be for a query the relay should not send. Pure parsing: running a
query against the org's records is :mod:`emulators.salesforce.queries`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class SoqlError(ValueError):
    """A query outside the subset, or wrong: carries Salesforce's error code."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Query:
    """A parsed ``SELECT … FROM … [WHERE …] [LIMIT n]`` (subqueries are Query too)."""

    fields: list[str]
    subqueries: list[Query]
    sobject: str
    where: Any = None
    limit: int | None = None


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|=|\(|\)|,)"
                    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))")
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "LIMIT", "NULL", "TRUE", "FALSE", "ORDER", "BY", "GROUP",
             "HAVING", "LIKE", "IN", "NOT", "OFFSET", "WITH", "FOR", "TYPEOF", "USING", "ASC", "DESC", "NULLS"}
_UNSUPPORTED = {"ORDER", "GROUP", "HAVING", "LIKE", "IN", "NOT", "OFFSET", "WITH", "FOR", "TYPEOF", "USING"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if not found or found.end() == pos:
            raise SoqlError(f"unexpected token: '{text[pos:pos + 20].strip()}'")
        kind = found.lastgroup or ""
        value = found.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = found.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (value is not None and got[1] != value):
            raise SoqlError(f"unexpected token: '{got[1] or 'end of query'}' (expected {value or kind})")
        self.i += 1
        return got[1]

    def query(self, sub: bool = False) -> Query:
        self.take("kw", "SELECT")
        fields: list[str] = []
        subs: list[Query] = []
        while True:
            if self.peek() == ("op", "("):
                self.take("op", "(")
                subs.append(self.query(sub=True))
                self.take("op", ")")
            else:
                fields.append(self.take("word"))
            if self.peek() == ("op", ","):
                self.take("op", ",")
                continue
            break
        self.take("kw", "FROM")
        sobject = self.take("word")
        where = None
        limit = None
        if self.peek() == ("kw", "WHERE"):
            self.take("kw", "WHERE")
            where = self.disjunction()
        if self.peek() == ("kw", "LIMIT"):
            self.take("kw", "LIMIT")
            limit = int(self.take("num"))
        if self.peek()[0] == "kw" and self.peek()[1] in _UNSUPPORTED:
            raise SoqlError(f"{self.peek()[1]} is not supported by this org's emulator")
        if not sub and self.peek()[0] != "end":
            raise SoqlError(f"unexpected token: '{self.peek()[1]}'")
        return Query(fields, subs, sobject, where, limit)

    def disjunction(self) -> Any:
        terms = [self.conjunction()]
        while self.peek() == ("kw", "OR"):
            self.take("kw", "OR")
            terms.append(self.conjunction())
        return ("or", terms) if len(terms) > 1 else terms[0]

    def conjunction(self) -> Any:
        terms = [self.factor()]
        while self.peek() == ("kw", "AND"):
            self.take("kw", "AND")
            terms.append(self.factor())
        return ("and", terms) if len(terms) > 1 else terms[0]

    def factor(self) -> Any:
        if self.peek() == ("op", "("):
            self.take("op", "(")
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        name = self.take("word")
        kind, op = self.peek()
        if kind == "kw" and op in _UNSUPPORTED:
            raise SoqlError(f"{op} is not supported by this org's emulator")
        op = self.take("op")
        if op not in ("=", "!="):
            raise SoqlError(f"unexpected token: '{op}'")
        kind, raw = self.peek()
        self.i += 1
        value: Any
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "num":
            value = raw
        elif kind == "kw" and raw in ("NULL", "TRUE", "FALSE"):
            value = {"NULL": None, "TRUE": True, "FALSE": False}[raw]
        else:
            raise SoqlError(f"unexpected token: '{raw}'")
        return ("cmp", name, op, value)


def parse_soql(text: str) -> Query:
    """Parse the SOQL subset: SELECT fields and parent-child subqueries, FROM, WHERE (=, !=, AND, OR,
    parentheses), LIMIT.

    Raises:
        SoqlError: ``MALFORMED_QUERY`` for anything else.
    """
    if not text or not text.strip():
        raise SoqlError("empty query")
    return _Parser(text).query()


def soql_quote(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
