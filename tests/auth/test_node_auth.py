"""node-postgres logging in through pgseal: its own SCRAM client (and -PLUS over
TLS, bound to pgseal's certificate when pgseal terminates), md5 and cleartext
relayed, the refusals docs/AUTH.md lists. One node process per pgseal."""

from __future__ import annotations

import json

from tests.auth.conftest import PASSWORDS, AuthServer
from tests.node.conftest import run_node_script
from tests.pgseal_process import PgsealProcess


def login_cases(
    server: AuthServer, proxy: PgsealProcess, cases: dict[str, tuple[str, str, bool, bool]]
) -> dict[str, object]:
    """``cases``: name -> (user, password, tls, channel binding)."""
    spec = [
        {"name": name, "port": proxy.port, "user": user, "password": password, "tls": tls,
         "channelBinding": binding}
        for name, (user, password, tls, binding) in cases.items()
    ]  # fmt: skip
    return run_node_script("auth.js", [json.dumps(spec)], {"NODE_CA": str(server.ca)})


def ok(user: str, upstream_tls: bool) -> dict[str, object]:
    return {"user": user, "upstream_tls": upstream_tls, "answer": 42}


def test_passthrough_relays_each_method(
    auth_server: AuthServer, pt_plain_upstream: PgsealProcess, pt_tls_upstream: PgsealProcess
) -> None:
    scram = PASSWORDS["scram_user"]
    plain = login_cases(
        auth_server,
        pt_plain_upstream,
        {
            "scram": ("scram_user", scram, False, False),
            "scram_tls": ("scram_user", scram, True, False),
            # pg sends 'y' (could bind, server offered no -PLUS): relayed, the
            # plain upstream leg never offered -PLUS
            "scram_tls_binding": ("scram_user", scram, True, True),
            "md5": ("md5_user", PASSWORDS["md5_user"], True, False),
            "cleartext": ("password_user", PASSWORDS["password_user"], False, False),
            "trust": ("trust_user", "", False, False),
            "wrong": ("scram_user", "wrong", True, False),
        },
    )
    assert plain["scram"] == ok("scram_user", False)
    assert plain["scram_tls"] == ok("scram_user", False)
    assert plain["scram_tls_binding"] == ok("scram_user", False)
    assert plain["md5"] == ok("md5_user", False)
    assert plain["cleartext"] == ok("password_user", False)
    assert plain["trust"] == ok("trust_user", False)
    assert plain["wrong"] == {
        "code": "28P01",
        "message": 'password authentication failed for user "scram_user"',
    }
    tls = login_cases(
        auth_server,
        pt_tls_upstream,
        {
            "scram_tls": ("scram_user", scram, True, False),
            "scram_plain_client": ("scram_user", scram, False, False),
            "scram_tls_binding": ("scram_user", scram, True, True),
        },
    )
    assert tls["scram_tls"] == ok("scram_user", True)
    assert tls["scram_plain_client"] == ok("scram_user", True)
    refused = tls["scram_tls_binding"]
    assert isinstance(refused, dict)
    assert refused["code"] == "28000"
    assert "channel binding cannot pass through pgseal" in refused["message"]


def test_terminate_binds_to_pgseals_certificate(
    auth_server: AuthServer, term_query: PgsealProcess
) -> None:
    scram = PASSWORDS["scram_user"]
    before = term_query.log_text().count("authenticated the client with SCRAM-SHA-256-PLUS")
    got = login_cases(
        auth_server,
        term_query,
        {
            "plus": ("scram_user", scram, True, True),
            "no_binding": ("scram_user", scram, True, False),
            "wrong": ("scram_user", "wrong", True, True),
            "unknown": ("nobody", "x", True, False),
            "plain_client": ("scram_user", scram, False, False),
        },
    )
    assert got["plus"] == ok("scram_user", True)
    assert got["no_binding"] == ok("scram_user", True)
    after = term_query.log_text().count("authenticated the client with SCRAM-SHA-256-PLUS")
    assert after - before == 1
    for name in ("wrong", "unknown"):
        failed = got[name]
        assert isinstance(failed, dict)
        assert failed["code"] == "28P01", name
    plain = got["plain_client"]
    assert isinstance(plain, dict)
    assert plain["code"] == "28000"
    assert "requires TLS" in plain["message"]
