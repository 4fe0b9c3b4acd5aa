"""A run of remembered rows: each row's key is checked, not just the first one's.

``SessionCrypto.data_rows`` checks the key of a remembered row (the session's
tenant's, still cached) once per run and key; a row remembered under another
key in the same run must still be checked, and is not served when it fails.
"""

from __future__ import annotations

import os

from crypto.blind_index import IndexKey
from crypto.envelope import DataKey, seal
from proxy import codec
from proxy.encryption import SessionCrypto
from tests.proxy.test_encryption_rows import NAME, TENANT, both, crypt, portal

__all__ = ["crypt"]  # the fixture, shared with test_encryption_rows


async def test_a_remembered_row_of_another_tenant_ends_the_run(
    crypt: tuple[SessionCrypto, DataKey],
) -> None:
    session, key = crypt
    other = DataKey(0x2122334455667788, "43", 1, os.urandom(32))
    session.enc.crypto.cache._put_tenant(
        other, IndexKey(0x0202030405060708, "43", 1, os.urandom(32))
    )
    mine = codec.encode_data_row([seal(key, NAME.qualified, b"mine")])
    theirs = codec.encode_data_row([seal(other, NAME.qualified, b"theirs")])
    state = portal({0: NAME}, 1, (1,))
    session.session_tenant = None  # a session without a tenant may read both
    parts, _ = session.data_rows(mine + theirs, 0, 1 << 20, state)
    assert parts == [codec.encode_data_row([b"mine"]), codec.encode_data_row([b"theirs"])]
    remembered = sum(len(t) for t in session.enc.opened_rows.by_fields.values())
    assert remembered == 2

    session.session_tenant = TENANT
    buf = mine + mine + theirs + mine
    parts, stop = session.data_rows(buf, 0, 1 << 20, portal({0: NAME}, 1, (1,)))
    assert parts == [codec.encode_data_row([b"mine"])] * 2
    assert stop == 2 * len(mine)  # the session frames the other tenant's row itself
    refused = both(session, theirs[5:], state)
    assert isinstance(refused, tuple)
    assert refused[0] == "refused"
    # Remembered rows of the session's own key keep being served after it.
    parts, stop = session.data_rows(buf, stop + len(theirs), 1 << 20, state)
    assert parts == [codec.encode_data_row([b"mine"])]
    assert stop == len(buf)


async def test_a_remembered_row_whose_key_expired_is_not_served(
    crypt: tuple[SessionCrypto, DataKey],
) -> None:
    session, key = crypt
    rows = codec.encode_data_row([seal(key, NAME.qualified, b"kept")]) * 3
    state = portal({0: NAME}, 1, (1,))
    parts, stop = session.data_rows(rows, 0, 1 << 20, state)
    assert parts == [codec.encode_data_row([b"kept"])] * 3
    assert stop == len(rows)
    # The key's TTL runs out: its plaintext must not outlive it in opened rows.
    session.enc.crypto.cache._expire_hot(key)
    parts, stop = session.data_rows(rows, 0, 1 << 20, portal({0: NAME}, 1, (1,)))
    assert parts == []
    assert stop == 0  # the session frames the row itself and loads the key
    # Loaded again, the rows are served again.
    session.enc.crypto.cache._put_data_key(key)
    parts, stop = session.data_rows(rows, 0, 1 << 20, portal({0: NAME}, 1, (1,)))
    assert parts == [codec.encode_data_row([b"kept"])] * 3
    assert stop == len(rows)
