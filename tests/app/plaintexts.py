"""Every plaintext the app's tests sent to the database, and a scan for them.

``PlaintextLedger`` is an asyncpg query logger (``Connection.add_query_logger``):
attached to every connection the tests' pool opens, it records each string
parameter (and the text form of each numeric one) the app sent, in ``execute``,
``fetch*`` and ``executemany`` alike, without the app's cooperation. That is a
superset of the values written into encrypted columns, which is what a leak
scan wants: nothing the app ever sent may appear in an encrypted column.

``scan_for_plaintext`` is the auditor's side: over a direct connection it reads
every column listed in the root config.yaml, of every row, as raw bytes, and
reports each cell that equals a recorded value, or contains one of at least
``MIN_SUBSTRING`` bytes (shorter needles would match random ciphertext by
chance). Through pgseal it must find nothing; on the plaintext baseline schema
it finds everything, which is how its own test proves it can fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from asyncpg.connection import LoggedQuery

__all__ = [
    "MIN_SUBSTRING",
    "RULES_PATH",
    "SESSION_LEDGER",
    "Leak",
    "PlaintextLedger",
    "encrypted_columns",
    "scan_for_plaintext",
    "written_plaintexts",
]

RULES_PATH = Path(__file__).resolve().parents[2] / "config.yaml"
MIN_SUBSTRING = 8


def _flatten(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


@dataclass
class PlaintextLedger:
    """The plaintexts sent by the app during one test (and, via ``parent``, the session)."""

    values: set[str] = field(default_factory=set)
    parent: PlaintextLedger | None = None

    def add(self, value: str) -> None:
        if value:
            self.values.add(value)
            if self.parent is not None:
                self.parent.add(value)

    def record(self, query: LoggedQuery) -> None:
        """asyncpg query-logger callback."""
        for value in _flatten(query.args):
            if isinstance(value, str):
                self.add(value)
            elif isinstance(value, Decimal):
                self.add(str(value))

    async def attach(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """``init=`` callback for ``asyncpg.create_pool``."""
        conn.add_query_logger(self.record)


#: Everything every app test sent, for a session-wide scan.
SESSION_LEDGER = PlaintextLedger()


def written_plaintexts() -> frozenset[str]:
    """Every plaintext value the app's tests have sent so far in this session."""
    return frozenset(SESSION_LEDGER.values)


def encrypted_columns(path: Path = RULES_PATH) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"public.customers": {"email": {"type": "text", ...}, ...}, ...}`` from the YAML."""
    document = yaml.safe_load(path.read_text())
    return {table: dict(spec["columns"]) for table, spec in document["tables"].items()}


@dataclass(frozen=True)
class Leak:
    table: str
    column: str
    row_id: int
    value: str


def _raw(cell: object) -> bytes:
    if isinstance(cell, bytes):
        return cell
    return str(cell).encode()


def _leaks_in(cell: bytes, needles: Iterable[tuple[str, bytes]]) -> Iterator[str]:
    for text, needle in needles:
        if cell == needle or (len(needle) >= MIN_SUBSTRING and needle in cell):
            yield text


async def scan_for_plaintext(
    direct_dsn: str, values: Iterable[str], rules: Path = RULES_PATH
) -> list[Leak]:
    """Every encrypted-column cell (read directly, raw) that holds one of ``values``."""
    needles = [(v, v.encode()) for v in set(values)]
    leaks: list[Leak] = []
    conn = await asyncpg.connect(direct_dsn)
    try:
        for table, columns in encrypted_columns(rules).items():
            names = list(columns)
            # ::text is not used: a bytea cell must be compared as its raw bytes.
            rows = await conn.fetch(f"SELECT id, {', '.join(names)} FROM {table}")
            for row in rows:
                for name in names:
                    if row[name] is None:
                        continue
                    for text in _leaks_in(_raw(row[name]), needles):
                        leaks.append(Leak(table, name, row["id"], text))
    finally:
        await conn.close()
    return leaks
