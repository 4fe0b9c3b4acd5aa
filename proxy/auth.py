"""Authentication terminated by pgseal (``auth.mode: terminate``).

In pass-through mode Postgres checks the client's password and pgseal only
relays; channel binding cannot cross it (see docs/AUTH.md). In terminate mode
pgseal is the SCRAM server the client talks to, so SCRAM-SHA-256-PLUS binds to
pgseal's own certificate, and pgseal then logs in to Postgres on its own:

- ``ClientScram`` (sans-IO) runs the server side of SCRAM-SHA-256[-PLUS] with
  ``scramp`` against a secret ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey``
  from ``auth_file`` (PgBouncer's userlist.txt) or ``auth_query``. An unknown
  user gets a made-up secret and fails at the proof exactly like a wrong
  password, so the error never tells which user names exist.
- A successful proof reveals the ClientKey (ClientProof XOR
  HMAC(StoredKey, AuthMessage)), which is all a SCRAM client needs when the
  server holds the same verifier (same salt and iterations). ``UpstreamLogin`` (sans-IO) answers the
  server's authentication requests with ``upstream_password``, a plaintext
  password from ``auth_file``, or that ClientKey, as PgBouncer does; when none
  fits it fails with an error that says what to configure.
- ``AuthStore`` (asyncio) finds secrets: the file, re-read when it changes, or
  the query on pgseal's own small asyncpg pool.

Nothing here logs or reprs a secret, a key or a proof.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scramp import ScramClient, ScramException, ScramMechanism
from scramp.core import CBindData, ServerFinal, ServerFirst
from scramp.utils import ServerError

from proxy import codec

if TYPE_CHECKING:
    import asyncpg

    from rules.config import AuthConfig

__all__ = [
    "AuthError",
    "AuthFileError",
    "AuthStore",
    "ClientScram",
    "ScramSecret",
    "TerminateConfig",
    "UpstreamLogin",
    "UserSecret",
    "auth_request",
    "parse_auth_file",
    "peer_end_point_hash",
    "server_end_point_hash",
]

log = logging.getLogger("pgseal.auth")

SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"
_CB_TYPE = "tls-server-end-point"

# Authentication request codes (the int32 after 'R').
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_SECRET = re.compile(
    r"^SCRAM-SHA-256\$(?P<iter>[1-9][0-9]*):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored>[A-Za-z0-9+/=]+):(?P<server>[A-Za-z0-9+/=]+)$"
)
_USERLIST_LINE = re.compile(r'^"((?:[^"]|"")*)"\s+"((?:[^"]|"")*)"')


class AuthError(Exception):
    """Authentication cannot go on: sent to the client as a FATAL ErrorResponse.

    The message is what the client sees; it never holds a secret.
    """

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint

    def error_response(self) -> bytes:
        return codec.encode_error(self.sqlstate, self.message, severity="FATAL", hint=self.hint)


def password_failed(user: str) -> AuthError:
    """Postgres's own wording, for a wrong password and an unknown user alike."""
    return AuthError("28P01", f'password authentication failed for user "{user}"')


class AuthFileError(ValueError):
    """auth_file cannot be used: ``path:line: what is wrong`` (never the secret)."""


# -- secrets ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class ScramSecret:
    """A SCRAM-SHA-256 verifier as Postgres stores it in pg_authid."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, text: str) -> ScramSecret | None:
        """The verifier in ``text``, or None when it is not one (md5, plaintext).

        >>> ScramSecret.parse("md5abc") is None
        True
        """
        match = _SECRET.match(text)
        if match is None:
            return None
        try:
            salt = base64.b64decode(match["salt"], validate=True)
            stored = base64.b64decode(match["stored"], validate=True)
            server = base64.b64decode(match["server"], validate=True)
        except binascii.Error:
            return None
        if len(stored) != 32 or len(server) != 32 or len(salt) < 12:
            return None
        return cls(int(match["iter"]), salt, stored, server)

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None) -> ScramSecret:
        salt_out, stored, server, iterations = ScramMechanism(SCRAM).make_auth_info(
            password, salt=salt
        )
        return cls(iterations, salt_out, stored, server)

    def __repr__(self) -> str:
        return f"ScramSecret(iterations={self.iterations}, ...)"


@dataclass(frozen=True, slots=True, repr=False)
class UserSecret:
    """What pgseal knows about one user: the verifier, and the password if the file had it."""

    scram: ScramSecret
    password: str | None = field(default=None)

    def __repr__(self) -> str:
        return f"UserSecret(password={'***' if self.password else None})"


def parse_auth_file(text: str, path: str = "auth_file") -> dict[str, UserSecret]:
    """Parse PgBouncer's userlist.txt: ``"user" "SCRAM-SHA-256$..."`` or ``"user" "password"``.

    md5 entries are refused: pgseal authenticates clients with SCRAM only.

    >>> users = parse_auth_file('"alice" "s3cret"\\n; comment\\n')
    >>> sorted(users), users["alice"].password is not None
    (['alice'], True)
    """
    users: dict[str, UserSecret] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        match = _USERLIST_LINE.match(stripped)
        if match is None:
            raise AuthFileError(f'{path}:{number}: expected "user" "secret"')
        user, value = match[1].replace('""', '"'), match[2].replace('""', '"')
        if value.startswith("SCRAM-SHA-256$"):
            scram = ScramSecret.parse(value)
            if scram is None:
                raise AuthFileError(f"{path}:{number}: malformed SCRAM-SHA-256 secret for {user!r}")
            users[user] = UserSecret(scram)
        elif re.fullmatch(r"md5[0-9a-f]{32}", value):
            raise AuthFileError(
                f"{path}:{number}: user {user!r} has an md5 secret; pgseal authenticates "
                "clients with SCRAM-SHA-256 only: give a SCRAM-SHA-256 secret or the password"
            )
        elif not value:
            raise AuthFileError(f"{path}:{number}: empty password for {user!r}")
        else:
            users[user] = UserSecret(ScramSecret.from_password(value), password=value)
    return users


def server_end_point_hash(cert_pem: str) -> bytes:
    """tls-server-end-point channel-binding data (RFC 5929) of the first cert in a PEM file."""
    start = cert_pem.index("-----BEGIN CERTIFICATE-----")
    end = cert_pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    der = ssl.PEM_cert_to_DER_cert(cert_pem[start:end])
    return bytes(CBindData.from_der(der))


def peer_end_point_hash(ssl_object: ssl.SSLObject | None) -> bytes | None:
    """tls-server-end-point data of the database server's certificate, if there is one."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(CBindData.from_der(der)) if der else None


# -- protocol messages ---------------------------------------------------------------


def auth_request(code: int, data: bytes = b"") -> bytes:
    """An Authentication* message ('R')."""
    return codec.message(b"R", _U32.pack(code) + data)


def _password_message(data: bytes) -> bytes:
    return codec.message(b"p", data)


def _sasl_initial(mechanism: str, data: bytes) -> bytes:
    return codec.message(b"p", mechanism.encode() + b"\x00" + _I32.pack(len(data)) + data)


# -- pgseal as the client's SCRAM server ----------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class TerminateConfig:
    """What a session needs to terminate authentication (built once per proxy)."""

    #: tls-server-end-point data of pgseal's certificate (None: no client TLS).
    channel_binding: bytes | None
    #: Per-process random seed for made-up verifiers of unknown users.
    mock_seed: bytes
    upstream_user: str | None = None
    upstream_password: str | None = None

    def __repr__(self) -> str:
        return f"TerminateConfig(upstream_user={self.upstream_user!r}, ...)"

    def upstream_credentials(
        self, secret: UserSecret | None, client_key: bytes | None
    ) -> tuple[str | None, bytes | None]:
        """(password, client key) to log in upstream with, in order of preference.

        A configured ``upstream_password`` wins; with a configured
        ``upstream_user`` the client's own key is never used (it is another
        user's); else the password from auth_file, else the recovered ClientKey.
        """
        if self.upstream_password is not None:
            return self.upstream_password, None
        if self.upstream_user is not None:
            return None, None
        return (secret.password if secret else None), client_key


class ClientScram:
    """The server side of SCRAM-SHA-256[-PLUS] towards one client (sans-IO).

    ``channel_binding`` is pgseal's certificate hash when the client leg uses
    TLS (then -PLUS is offered first), else None.
    """

    def __init__(
        self,
        user: str,
        secret: UserSecret | None,
        channel_binding: bytes | None,
        mock_seed: bytes,
    ) -> None:
        self.user = user
        self.secret = secret
        self.channel_binding = channel_binding
        self.client_key: bytes | None = None
        self.mechanism: str | None = None  # the one the client chose
        if secret is not None:
            self._scram = secret.scram
        else:
            # A made-up verifier that no password matches; the salt is stable
            # per user so probing twice does not tell a real user from a fake.
            salt = hmac.new(mock_seed, user.encode(), hashlib.sha256).digest()[:16]
            self._scram = ScramSecret(4096, salt, secrets.token_bytes(32), secrets.token_bytes(32))
        self._server: Any = None

    @property
    def mechanisms(self) -> list[str]:
        return [SCRAM_PLUS, SCRAM] if self.channel_binding else [SCRAM]

    def initial(self, mechanism: str, data: bytes | None) -> bytes:
        """SASLInitialResponse in, AuthenticationSASLContinue out."""
        if mechanism not in self.mechanisms:
            raise AuthError(
                "08P01",
                f"pgseal: the client selected an invalid SASL authentication mechanism "
                f"{mechanism!r}; offered: {', '.join(self.mechanisms)}",
            )
        if data is None:
            raise AuthError("08P01", "pgseal: SASLInitialResponse without a client-first-message")
        text = _decode(data)
        self.mechanism = mechanism
        scram = self._scram
        binding = (_CB_TYPE, self.channel_binding) if mechanism == SCRAM_PLUS else None
        # A client that could bind but saw no -PLUS sends 'y': a downgrade when
        # we did offer it. scramp checks that only when given the binding.
        if mechanism == SCRAM and self.channel_binding and text.startswith("y"):
            raise AuthError(
                "08P01",
                "SCRAM channel binding negotiation error",
                "The client supports SCRAM channel binding but thinks the server does not. "
                "However, this server does support channel binding.",
            )
        self._server = ScramMechanism(mechanism).make_server(
            lambda _name: (scram.salt, scram.stored_key, scram.server_key, scram.iterations),
            channel_binding=binding,
        )
        # libpq sends an empty user name ("n=,") - Postgres takes the user from
        # the startup packet - which scramp rejects. It parses a stand-in, and
        # the AuthMessage keeps the bytes the client really signed.
        first_comma = text.find(",")
        second_comma = text.find(",", first_comma + 1)
        bare = text[second_comma + 1 :] if second_comma > 0 else text
        parsed = text
        if second_comma > 0 and bare.startswith("n=,"):
            parsed = text[: second_comma + 1] + "n=*" + bare[2:]
        try:
            self._server.set_client_first(parsed)
            self._server.client_first_bare = bare
            return self._server.get_server_first().encode()  # type: ignore[no-any-return]
        except ScramException as exc:
            raise self._error(exc) from None

    def final(self, data: bytes) -> bytes:
        """SASLResponse in, AuthenticationSASLFinal out; sets ``client_key``."""
        if self._server is None:
            raise AuthError("08P01", "pgseal: SASLResponse before SASLInitialResponse")
        text = _decode(data)
        try:
            self._server.set_client_final(text)
        except ScramException as exc:
            raise self._error(exc) from None
        if self.secret is None:  # cannot happen: no proof matches a mock verifier
            raise password_failed(self.user)
        without_proof, _, proof_b64 = text.rpartition(",p=")
        auth_message = ",".join(
            (self._server.client_first_bare, self._server.server_first, without_proof)
        ).encode()
        signature = hmac.new(self._scram.stored_key, auth_message, hashlib.sha256).digest()
        proof = base64.b64decode(proof_b64)
        self.client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        try:
            return self._server.get_server_final().encode()  # type: ignore[no-any-return]
        except ScramException as exc:
            raise self._error(exc) from None

    def _error(self, exc: ScramException) -> AuthError:
        kind = exc.server_error
        if kind is ServerError.INVALID_PROOF or (kind is None and self.secret is None):
            return password_failed(self.user)
        if kind is ServerError.CHANNEL_BINDINGS_DONT_MATCH:
            return AuthError(
                "28000",
                "SCRAM channel binding check failed",
                "The client bound to a certificate other than pgseal's: is a proxy or "
                "load balancer terminating TLS in front of pgseal?",
            )
        if kind in (
            ServerError.SERVER_DOES_SUPPORT_CHANNEL_BINDING,
            ServerError.CHANNEL_BINDING_NOT_SUPPORTED,
            ServerError.UNSUPPORTED_CHANNEL_BINDING_TYPE,
        ):
            return AuthError(
                "08P01",
                "SCRAM channel binding negotiation error",
                f"pgseal supports channel binding type {_CB_TYPE} over TLS only.",
            )
        # scramp's message describes the syntax problem, never a secret.
        return AuthError("08P01", f"pgseal: malformed SCRAM message: {exc}")


def _decode(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise AuthError("08P01", "pgseal: malformed SCRAM message: not UTF-8") from None


# -- pgseal as Postgres's client ---------------------------------------------------------


class _ClientKeyScram:
    """The client side of SCRAM from a recovered ClientKey instead of a password.

    Mirrors ``scramp.ScramClient``'s four steps; the one thing scramp cannot do
    is start from the ClientKey, so the proof is computed here from it with
    scramp's message parsers.
    """

    def __init__(
        self, user: str, client_key: bytes, secret: ScramSecret, cert_hash: bytes | None
    ) -> None:
        self.mechanism_name = SCRAM_PLUS if cert_hash else SCRAM
        self._gs2 = f"p={_CB_TYPE},," if cert_hash else "n,,"
        self._cbind = self._gs2.encode() + (cert_hash or b"")
        self._client_key = client_key
        self._secret = secret
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._first_bare = ""
        self._server_first = ""
        self._server_signature = b""

    def get_client_first(self) -> str:
        self._first_bare = f"n=,r={self._nonce}"
        return self._gs2 + self._first_bare

    def set_server_first(self, message: str) -> None:
        parsed = ServerFirst(message)
        if "e" in parsed:
            raise ScramException("The server returned an error", parsed["e"])
        nonce = str(parsed["r"])
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise ScramException("Client nonce doesn't match.", ServerError.OTHER_ERROR)
        if bytes(parsed["s"]) != self._secret.salt or int(parsed["i"]) != self._secret.iterations:
            raise _SecretMismatch
        self._server_first = message
        self._full_nonce = nonce

    def get_client_final(self) -> str:
        cbind = base64.b64encode(self._cbind).decode()
        without_proof = f"c={cbind},r={self._full_nonce}"
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        stored_key = hashlib.sha256(self._client_key).digest()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(self._client_key, signature, strict=True))
        self._server_signature = hmac.new(
            self._secret.server_key, auth_message, hashlib.sha256
        ).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def set_server_final(self, message: str) -> None:
        parsed = ServerFinal(message)
        if "e" in parsed or not hmac.compare_digest(bytes(parsed["v"]), self._server_signature):
            raise ScramException("The server signature doesn't match.", ServerError.OTHER_ERROR)


class _SecretMismatch(Exception):
    """The server's salt or iteration count differs from the secret pgseal checked."""


class UpstreamLogin:
    """Answers the database server's authentication requests for one connection (sans-IO).

    ``password``: ``auth.upstream_password`` or a plaintext password from
    auth_file. Else ``client_key`` + ``secret`` (a SCRAM exchange only, and only
    with the server's own verifier). ``server_cert_hash``: the server's
    certificate hash when the upstream leg uses TLS, for SCRAM-SHA-256-PLUS.
    """

    def __init__(
        self,
        user: str,
        *,
        password: str | None,
        client_key: bytes | None,
        secret: UserSecret | None,
        server_cert_hash: bytes | None,
    ) -> None:
        self.user = user
        self._password = password
        self._client_key = client_key
        self._secret = secret
        self._cert_hash = server_cert_hash
        self._scram: Any = None

    def answer(self, code: int, payload: bytes) -> bytes | None:
        """The message to send for an Authentication* request (None: nothing to send)."""
        if code == AUTH_OK:
            return None
        if code == AUTH_CLEARTEXT:
            return _password_message(self._need_password("a cleartext password") + b"\x00")
        if code == AUTH_MD5:
            password = self._need_password("an md5 password")
            inner = hashlib.md5(password + self.user.encode()).hexdigest().encode()  # noqa: S324
            outer = hashlib.md5(inner + payload[:4]).hexdigest()  # noqa: S324
            return _password_message(b"md5" + outer.encode() + b"\x00")
        if code == AUTH_SASL:
            return self._sasl_start(codec.sasl_mechanisms(payload))
        if code == AUTH_SASL_CONTINUE:
            return self._sasl_step(lambda s: s.set_server_first(_decode(payload)), final=False)
        if code == AUTH_SASL_FINAL:
            self._sasl_step(lambda s: s.set_server_final(_decode(payload)), final=True)
            return None
        raise AuthError(
            "28000",
            f"pgseal: the database server asks for an authentication method pgseal "
            f"cannot answer in terminate mode (request code {code})",
            "Use scram-sha-256, md5 or password for pgseal's connections in pg_hba.conf.",
        )

    def _need_password(self, what: str) -> bytes:
        if self._password is None:
            raise AuthError(
                "28000",
                f'pgseal: the database server asks for {what} for user "{self.user}", which '
                "pgseal cannot answer with the client's SCRAM proof",
                "Set auth.upstream_user and auth.upstream_password, put the user's password "
                "in auth_file, or use scram-sha-256 in pg_hba.conf with auth_query.",
            )
        return self._password.encode()

    def _sasl_start(self, mechanisms: list[str]) -> bytes:
        if SCRAM not in mechanisms and SCRAM_PLUS not in mechanisms:
            raise AuthError(
                "28000",
                f"pgseal: the database server offers no SASL mechanism pgseal supports "
                f"({', '.join(mechanisms)})",
            )
        binding = (
            (_CB_TYPE, self._cert_hash) if self._cert_hash and SCRAM_PLUS in mechanisms else None
        )
        if self._password is not None:
            offered = [m for m in mechanisms if m in (SCRAM, SCRAM_PLUS)]
            self._scram = ScramClient(offered, self.user, self._password, channel_binding=binding)
        elif self._client_key is not None and self._secret is not None:
            # Works when the verifier is the server's own (auth_query, or
            # copied into auth_file); a different salt is caught in step 2.
            self._scram = _ClientKeyScram(
                self.user,
                self._client_key,
                self._secret.scram,
                self._cert_hash if SCRAM_PLUS in mechanisms else None,
            )
        else:
            raise self._cannot_reuse_proof()
        first = self._scram.get_client_first()
        return _sasl_initial(self._scram.mechanism_name, first.encode())

    def _sasl_step(self, step: Any, *, final: bool) -> bytes:
        if self._scram is None:
            raise AuthError("08P01", "pgseal: SASL continuation from the server before SASL start")
        try:
            step(self._scram)
            if final:
                return b""
            return _password_message(self._scram.get_client_final().encode())
        except _SecretMismatch:
            raise self._cannot_reuse_proof() from None
        except ScramException as exc:
            raise AuthError(
                "28000",
                f'pgseal: SCRAM login to the database server as "{self.user}" failed: {exc}',
            ) from None

    def _cannot_reuse_proof(self) -> AuthError:
        return AuthError(
            "28000",
            f'pgseal: cannot log in to the database server as "{self.user}": the SCRAM '
            "secret pgseal checked the client against is not the server's own",
            "Set auth.upstream_user and auth.upstream_password, put the user's password in "
            "auth_file, or copy the server's secret (pg_authid.rolpassword) into auth_file "
            "or use auth_query.",
        )


# -- finding secrets (asyncio) -------------------------------------------------------------


class AuthStore:
    """Secrets by user name, from ``auth_file`` or ``auth_query``."""

    def __init__(self, config: AuthConfig, service_dsn: str | None) -> None:
        self.config = config
        self.service_dsn = service_dsn
        self._file_users: dict[str, UserSecret] = {}
        self._file_stamp: tuple[int, int] | None = None
        self._pool: asyncpg.Pool[Any] | None = None
        self._pool_lock = asyncio.Lock()
        self.mock_seed = secrets.token_bytes(32)
        if config.auth_file is not None:
            self._load_file(config.auth_file)  # fail at start, not at the first login

    def _load_file(self, path: Path) -> dict[str, UserSecret]:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._file_stamp:
            self._file_users = parse_auth_file(path.read_text(), str(path))
            self._file_stamp = stamp
        return self._file_users

    async def lookup(self, user: str) -> UserSecret | None:
        """The user's secret, or None (unknown user, or a secret pgseal cannot use)."""
        if self.config.auth_file is not None:
            try:
                found = self._load_file(self.config.auth_file).get(user)
            except (OSError, AuthFileError) as exc:
                log.error("auth_file unusable, keeping the last good copy: %s", exc)
                found = self._file_users.get(user)
            if found is not None or self.service_dsn is None:
                return found
        return await self._query(user)

    async def _query(self, user: str) -> UserSecret | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(self.config.auth_query, user)
        if row is None or row[1] is None:
            return None
        secret = ScramSecret.parse(str(row[1]))
        if secret is None:
            log.warning(
                "user %r has no SCRAM-SHA-256 secret on the server; terminate mode needs one "
                "(SET password_encryption = 'scram-sha-256' and reset the password)",
                user,
            )
            return None
        return UserSecret(secret)

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        import asyncpg

        async with self._pool_lock:
            if self._pool is None:
                if self.service_dsn is None:
                    raise RuntimeError("auth_query needs service_dsn")
                self._pool = await asyncpg.create_pool(self.service_dsn, min_size=0, max_size=2)
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
