"""The root config.yaml's commented ``tls:`` and ``auth:`` options are a valid example.

tests/rules/test_config.py loads the file as it is (pass-through, no cert);
here every commented-out TLS and auth option is switched on, with
``auth.mode: terminate``, so a DBA who uncomments them gets a loadable file.
"""

from __future__ import annotations

import re
from pathlib import Path

from rules.config import DEFAULT_AUTH_QUERY, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTION = re.compile(
    r"^(  )# (cert|key|client|direct|upstream_ca|auth_file|auth_query|upstream_user|"
    r"upstream_password): (.+?)(\s+#.*)?$"
)


def test_uncommented_tls_and_auth_options_load(tmp_path: Path) -> None:
    lines = []
    switched = set()
    for line in (REPO_ROOT / "config.yaml").read_text().splitlines():
        if match := OPTION.match(line):
            indent, key, value, _comment = match.groups()
            line = f"{indent}{key}: {value}"
            switched.add(key)
        elif line == "  mode: passthrough":
            line = "  mode: terminate"
        elif line == "  upstream: prefer":
            line = "  upstream: verify-full"
        lines.append(line)
    assert switched == {
        "cert", "key", "client", "direct", "upstream_ca", "auth_file", "auth_query",
        "upstream_user", "upstream_password",
    }  # fmt: skip
    for name in ("server.crt", "server.key", "root.crt", "userlist.txt"):
        (tmp_path / name).write_text("placeholder\n")
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    config = load_config(path)
    tls, auth = config.tls, config.auth
    assert (tls.cert, tls.key) == (tmp_path / "server.crt", tmp_path / "server.key")
    assert (tls.client, tls.direct, tls.upstream) == ("allow", True, "verify-full")
    assert tls.upstream_ca == tmp_path / "root.crt"
    assert auth.mode == "terminate"
    assert auth.auth_file == tmp_path / "userlist.txt"
    assert auth.auth_query == DEFAULT_AUTH_QUERY
    assert auth.upstream_user == "app"
    assert auth.upstream_password == "..."
    assert "'...'" not in repr(auth)  # the password is masked in reprs
