"""The cheap pre-check in front of the SQL statement-registry search never hides a keyword."""

from __future__ import annotations

import itertools

from proxy.session import _SQL_REGISTRY, _SQL_REGISTRY_HINT


def test_every_spelling_of_every_keyword_passes_the_hint() -> None:
    for word in (b"prepare", b"deallocate", b"discard"):
        head = word[:3]
        for upper in itertools.product((False, True), repeat=len(head)):
            spelled = (
                bytes(c - 32 if up else c for c, up in zip(head, upper, strict=True)) + word[3:]
            )
            sql = b"SELECT 1; " + spelled + b" x"
            assert _SQL_REGISTRY.search(sql)
            assert _SQL_REGISTRY_HINT.search(sql), spelled


def test_an_ordinary_query_fails_the_hint() -> None:
    assert not _SQL_REGISTRY_HINT.search(b"SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
