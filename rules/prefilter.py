"""Text-level checks that need no parse: the pass-through test and statement splitting.

Most statements a proxy sees touch no protected table, so the planner first asks a
single compiled regular expression whether the SQL text *names* any configured
table (bare name, case-insensitive, on word boundaries, so ``"customers"``,
``public.customers`` and ``Customers`` all match) or the ``pgseal`` settings
namespace (``SET pgseal.tenant``), or resets settings wholesale (``RESET ALL``,
``DISCARD ALL``). No match means pass-through without parsing. The test is
deliberately conservative: a match only means "parse and look properly"
(``"Customers"`` with quotes is a different table, but the planner finds that
out, not this module).

``split_statements`` cuts a simple-Query string into statements on top-level
semicolons, honouring quotes, dollar quotes and comments, and keeps each
statement's exact span so that statements which need no rewrite are forwarded
byte for byte. ``leading_words`` reads the first keywords of a statement, which
decide whether it may ever be regenerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Prefilter", "StatementSpan", "leading_words", "split_statements"]


class Prefilter:
    """Compiled "may this text concern pgseal?" test for one set of table names.

    >>> pf = Prefilter(frozenset({"customers"}))
    >>> pf.may_concern("SELECT abalance FROM pgbench_accounts WHERE aid = $1")
    False
    >>> pf.may_concern('select * from "Customers"'), pf.may_concern("SET pgseal.tenant = '1'")
    (True, True)
    """

    __slots__ = ("_needles", "_search", "table_names")

    def __init__(self, table_names: frozenset[str]) -> None:
        self.table_names = table_names
        # \b works for quoted identifiers as well: '"' is not a word character.
        # Longest names first so that the alternation never stops at a prefix.
        names = sorted(table_names, key=len, reverse=True)
        alternatives = [re.escape(n) for n in names]
        alternatives += [r"pgseal", r"reset\s+all", r"discard\s+all"]
        pattern = r"\b(?:" + "|".join(alternatives) + r")\b"
        self._search = re.compile(pattern, re.IGNORECASE).search
        # Substring tests on the lower-cased text run at C speed and reject the
        # common case before the (slower) word-boundary regex runs at all.
        self._needles = (*{n.lower() for n in names}, "pgseal", "reset", "discard")

    def may_concern(self, sql: str) -> bool:
        """True when ``sql`` must be planned; False means forward it untouched."""
        low = sql.lower()
        for needle in self._needles:
            if needle in low:
                return self._search(sql) is not None
        return False


@dataclass(frozen=True, slots=True)
class StatementSpan:
    """One statement of a simple Query: ``sql[start:end]`` without its ``;``."""

    start: int
    end: int
    text: str


def split_statements(sql: str) -> list[StatementSpan]:
    """Split on top-level semicolons; empty statements (``;;``) are dropped.

    >>> [s.text for s in split_statements("SELECT ';'; SELECT $$a;b$$ ; -- x;\\n")]
    ["SELECT ';'", ' SELECT $$a;b$$ ']
    """
    spans: list[StatementSpan] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == ";":
            _append_span(spans, sql, start, i)
            start = i + 1
            i += 1
        elif c in "'\"":
            i = _skip_quoted(sql, i, c)
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c == "$":
            i = _skip_dollar(sql, i)
        else:
            i += 1
    _append_span(spans, sql, start, n)
    return spans


def space_parameters(sql: str) -> str:
    """Put a blank after every ``$n`` parameter that another token follows directly.

    sqlglot's tokenizer reads ``$1,$2`` (or ``$1+$2``) as the start of a
    dollar-quoted string; Postgres does not (a dollar-quote tag cannot start
    with a digit). Quoted text and comments are left alone, so the statement
    means exactly what it meant.

    >>> space_parameters("VALUES ($1,$2,'$3,$4')")
    "VALUES ($1 ,$2 ,'$3,$4')"
    """
    if "$" not in sql:
        return sql
    out: list[str] = []
    i = 0
    last = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            i = _skip_quoted(sql, i, c)
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c == "$":
            param = _PARAM.match(sql, i)
            if param is not None and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                end = param.end()
                if end < n and not sql[end].isspace():
                    out.append(sql[last:end])
                    out.append(" ")
                    last = end
                i = end
            else:
                i = _skip_dollar(sql, i)
        else:
            i += 1
    if not out:
        return sql
    out.append(sql[last:])
    return "".join(out)


_PARAM = re.compile(r"\$\d+")


def _append_span(spans: list[StatementSpan], sql: str, start: int, end: int) -> None:
    text = sql[start:end]
    if strip_comments(text).strip():
        spans.append(StatementSpan(start, end, text))


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    # E'..' strings may escape the quote with a backslash; standard strings double it.
    escape = (
        quote == "'"
        and i > 0
        and sql[i - 1] in "eE"
        and (i == 1 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
    )
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if escape and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _skip_block_comment(sql: str, i: int) -> int:
    depth = 0
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def _skip_dollar(sql: str, i: int) -> int:
    # "$1" is a parameter, "x$y" part of an identifier; only "$tag$" opens a string.
    if i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"):
        return i + 1
    m = _DOLLAR_TAG.match(sql, i)
    if m is None:
        return i + 1
    tag = m.group(0)
    end = sql.find(tag, m.end())
    return len(sql) if end < 0 else end + len(tag)


_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def strip_comments(text: str) -> str:
    """Remove comments outside of strings (good enough for keyword reading)."""
    if "--" not in text and "/*" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = _skip_quoted(text, i, c)
            out.append(text[i:j])
            i = j
        elif c == "$":
            j = _skip_dollar(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def leading_words(text: str, count: int = 4) -> list[str]:
    """The first ``count`` bare words of a statement, upper-cased.

    Stops at the first token that is not a bare word (a parenthesis, a quote).

    >>> leading_words("  /* hi */ set LOCAL pgseal.tenant = '1'")
    ['SET', 'LOCAL', 'PGSEAL']
    """
    words: list[str] = []
    body = strip_comments(text)
    i = 0
    n = len(body)
    while len(words) < count:
        while i < n and body[i].isspace():
            i += 1
        m = _WORD.match(body, i)
        if m is None:
            break
        words.append(m.group(0).upper())
        i = m.end()
    return words
