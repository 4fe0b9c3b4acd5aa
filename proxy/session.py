"""The per-connection protocol state machine: events in, commands out.

One ``Session`` per client connection. The asyncio adapter (``proxy.server``)
feeds it bytes with ``client_data`` / ``server_data`` and afterwards drains
``to_client``, ``to_server`` and ``actions``; the session never does I/O, so
tests drive it with scripted byte sequences.

States (``Phase``) and their rules:

- ``STARTUP``: untyped first messages. SSLRequest gets ``S`` (and a
  ``StartClientTLS`` action) when TLS is configured, else ``N``; GSSENCRequest
  gets ``N``; CancelRequest becomes a ``ForwardCancel`` action and the
  connection closes; a StartupMessage becomes ``ConnectUpstream``.
- ``AUTH``: authentication is relayed message by message until the server's
  first ReadyForQuery. pgseal gives the client the backend's pid with a secret
  key of its own, so a cancel can never be forged for another client's backend
  (the pid alone is public). With
  ``auth.mode: terminate`` (``terminate`` given) the order differs: STARTUP ->
  AUTH (``LookupSecret``, then pgseal itself runs SCRAM with the client, see
  ``proxy.auth``) -> CONNECTING -> AUTH (pgseal answers the server's
  authentication requests; from AuthenticationOk on the server's messages
  are relayed as in pass-through).
- ``READY``: normal operation. Every forwarded frontend message that the
  server answers is recorded in ``_pending`` (a queue of expectations); each
  backend message advances it. The queue is what lets pgseal insert an error of
  its own at exactly the place Postgres would have sent it, and know which
  result set a DataRow belongs to.
- failed-until-Sync (``_skipping``): after pgseal refuses an extended-protocol
  message it drops the client's messages up to the next Sync, exactly as
  Postgres does after an error.
- COPY: the server ignores Sync and Flush while in copy-in mode, so Syncs the
  client pipelined behind a COPY are taken out of the queue when the server's
  CopyInResponse arrives.
- ``CLOSED``: nothing more is read; the adapter closes both sockets.

An ErrorResponse in extended mode makes Postgres discard messages until Sync;
the queue drops the matching expectations the same way. ReadyForQuery carries
the transaction status that SET LOCAL and portal lifetimes depend on.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from proxy import codec
from proxy.auth import (
    AUTH_OK,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    AuthError,
    ClientScram,
    TerminateConfig,
    UpstreamLogin,
    UserSecret,
    auth_request,
)
from proxy.codec import ProtocolViolation
from proxy.copy_stream import CopyIn, CopyOut
from proxy.encryption import NO_PROTECTED, NeedKeys, PortalState, Refused, redact_envelopes

if TYPE_CHECKING:
    from proxy.encryption import Encryption, SessionCrypto

__all__ = [
    "Action",
    "Close",
    "ConnectUpstream",
    "ForwardCancel",
    "LoadKeys",
    "LookupSecret",
    "Phase",
    "RefreshCatalog",
    "RegisterCancelKey",
    "Session",
    "SessionLimits",
    "StartClientTLS",
]

log = logging.getLogger("pgseal.session")


class Phase(enum.Enum):
    STARTUP = "startup"
    CONNECTING = "connecting"
    AUTH = "auth"
    READY = "ready"
    CLOSED = "closed"


_READY = Phase.READY  # the hot paths compare with a module constant


# -- commands for the adapter ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartClientTLS:
    """Upgrade the client socket to TLS now (after the queued 'S' is written)."""


@dataclass(frozen=True, slots=True)
class ConnectUpstream:
    startup: codec.StartupMessage


@dataclass(frozen=True, slots=True)
class ForwardCancel:
    pid: int
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RegisterCancelKey:
    pid: int
    secret: bytes = field(repr=False)
    upstream_pid: int
    upstream_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LookupSecret:
    """Find ``user``'s SCRAM secret, then call ``Session.secret_found`` (terminate mode)."""

    user: str


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


@dataclass(frozen=True, slots=True)
class LoadKeys:
    """Load these keys into the cache, then call ``Session.keys_loaded``."""

    need: NeedKeys


@dataclass(frozen=True, slots=True)
class RefreshCatalog:
    """DDL on a configured table went through: re-read the catalog map."""


Action = (
    StartClientTLS
    | ConnectUpstream
    | ForwardCancel
    | RegisterCancelKey
    | Close
    | LoadKeys
    | RefreshCatalog
    | LookupSecret
)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_message_size: int = 1 << 30
    max_startup_size: int = 10_000


# -- expectations ------------------------------------------------------------------

# What a forwarded frontend message will be answered with. Small ints keep the
# hot path cheap; payloads ride along in the same deque entry.
PARSE, BIND, DESCRIBE_S, DESCRIBE_P, EXECUTE, CLOSE, SYNC, QUERY, FUNCTION = range(9)
COPY_END = 9  # marker: the client ended a COPY here (no response of its own)
# pgseal's own refusals: a message that fails on the server takes the refused
# one's place (see ``refuse``); the server's error is swapped for pgseal's.
REFUSED = 11  # extended protocol: the failing Parse, then skip to Sync
REFUSED_QUERY = 12  # simple Query: the failing Query, then its ReadyForQuery
# pgseal's own requests, whose answers the client never sees:
INJECTED_DESCRIBE = 20  # Describe P before an Execute whose result shape is unknown
INJECTED_ABORT = 21  # a failing statement that puts the server's transaction in 'E'

_REFUSED_SQL = b"pgseal: statement refused"
_REFUSED_PARSE = codec.message(b"P", _REFUSED_SQL + b"\x00" + _REFUSED_SQL + b"\x00\x00\x00")
_REFUSED_QUERY_MESSAGE = codec.message(b"Q", _REFUSED_SQL + b"\x00")

# Preallocated queue entries for the messages whose payload nobody reads.
_EXPECT_BIND = (BIND, None)
_EXPECT_EXECUTE = (EXECUTE, None)
_EXPECT_SYNC = (SYNC, None)
_EXPECT_DESCRIBE_S = (DESCRIBE_S, None)
_EXPECT_DESCRIBE_P = (DESCRIBE_P, None)
_EXPECT_QUERY = (QUERY, None)
_EXPECT_FUNCTION = (FUNCTION, None)
_EXPECT_COPY_END = (COPY_END, None)
# How most extended-protocol batches end, and what they expect.
_EXECUTE_SYNC = codec.message(b"E", b"\x00\x00\x00\x00\x00") + codec.SYNC
_DESCRIBE_EXECUTE_SYNC = codec.message(b"D", b"P\x00") + _EXECUTE_SYNC
_EXPECT_EXECUTE_SYNC: tuple[tuple[int, None], ...] = (_EXPECT_EXECUTE, _EXPECT_SYNC)
_EXPECT_DESCRIBE_EXECUTE_SYNC: tuple[tuple[int, None], ...] = (
    _EXPECT_DESCRIBE_P,
    _EXPECT_EXECUTE,
    _EXPECT_SYNC,
)

_EXTENDED_DONE = {
    PARSE: frozenset(b"1"),
    BIND: frozenset(b"2"),
    CLOSE: frozenset(b"3"),
    DESCRIBE_S: frozenset(b"Tn"),
    DESCRIBE_P: frozenset(b"Tn"),
    EXECUTE: frozenset(b"CIs"),
    INJECTED_DESCRIBE: frozenset(b"Tn"),
}
# The same as a tuple indexed by the expectation: what ends it (b"": only
# ReadyForQuery or an error does).
_DONE_BY_HEAD = tuple(
    bytes(sorted(_EXTENDED_DONE[head])) if head in _EXTENDED_DONE else b""
    for head in range(INJECTED_ABORT + 1)
)
# The server's completions that are never rewritten (ParseComplete,
# BindComplete, CloseComplete, CommandComplete, EmptyQueryResponse,
# PortalSuspended): the encrypted path forwards them without a closer look.
_PLAIN_DONE = frozenset(b"123CIs")
# ReadyForQuery's status byte; any other byte is a protocol violation.
_TXN_STATUS: dict[int, str] = {0x49: "I", 0x54: "T", 0x45: "E"}
_T_ROW_DESCRIPTION = ord("T")
_T_PARAMETER_DESCRIPTION = ord("t")
_T_NO_DATA = ord("n")
_T_COMMAND_COMPLETE = ord("C")
# A statement that fails in any transaction, to align the server's transaction
# state with an error pgseal reported (see ``_row_failed``).
_ABORT_SQL = codec.message(
    b"Q", b"SELECT pg_catalog.pgseal_transaction_aborted_after_a_decryption_error()\x00"
)

_T_DATA_ROW = ord("D")
_T_ERROR = ord("E")
_T_READY = ord("Z")
_READY_TAIL = {codec.message(b"Z", status.encode()): status for status in "ITE"}
_LANE_SPECIAL = b"ZEGS"  # the server messages the one-round-trip lane looks at
_LANE_HEAD_END = b"DZEGS"  # where the head of an answer it remembers ends
_LANE_HEAD_MAX = 2048  # a longer head is not kept (idle connections stay small)
# A typed message's type byte and length at once, for the hot framing loops.
_unpack_type_length = struct.Struct("!BI").unpack_from
_ASYNC = frozenset(b"NAS")  # notice, notification, parameter status: any time

_CRYPT_CLIENT = frozenset(b"PBEDQC")  # Parse Bind Execute Describe Query Close
_COPY_FAIL_SQL = codec.message(b"f", b"pgseal refused the COPY data\x00")
_COPY_CLIENT = frozenset(b"dcf")  # CopyData CopyDone CopyFail
_SQL_REGISTRY = re.compile(rb"(?i)\b(prepare|deallocate|discard)\b")
# A cheap necessary condition for _SQL_REGISTRY ("pre", "dea" or "dis" in any
# case): most queries fail it, and it costs a fraction of the full search.
_SQL_REGISTRY_HINT = re.compile(rb"[pPdD][rReEiI][eEaAsS]")
# Statements that may change client_encoding, which Postgres reports only at
# the next ReadyForQuery: SET/RESET client_encoding, set_config(...), SET NAMES,
# RESET ALL, DISCARD ALL. The hint is a cheap necessary condition.
_ENCODING_CHANGE = re.compile(rb"(?i)client_encoding|\bset\s+names\b|\b(?:reset|discard)\s+all\b")
_ENCODING_HINT = re.compile(rb"[nN][cC][oO][dD]|[aA][mM][eE][sS]|[aA][lL][lL]")
# And TimeZone: SET [SESSION|LOCAL] TIME ZONE, SET/RESET timezone, set_config(...).
_TIMEZONE_CHANGE = re.compile(
    rb"(?i)\bset\s+(?:session\s+|local\s+)?time\s+zone\b|\btimezone\b|\b(?:reset|discard)\s+all\b"
)
_TIMEZONE_HINT = re.compile(rb"[zZ][oO][nN][eE]|[aA][lL][lL]")
_PREPARE = re.compile(r"(?is)^\s*prepare\s+(\"(?:[^\"]|\"\")+\"|[\w$]+)")
_DEALLOCATE = re.compile(r"(?is)^\s*deallocate\s+(?:prepare\s+)?(\"(?:[^\"]|\"\")+\"|[\w$]+)")
_DISCARD = re.compile(r"(?is)^\s*discard\s+(all|plans)\b")


def _ident(raw: str) -> str:
    if raw.startswith('"'):
        return raw[1:-1].replace('""', '"')
    return raw.lower()


@dataclass(slots=True)
class PreparedStatement:
    """What pgseal knows about one prepared statement (protocol or SQL level)."""

    query: str
    param_types: tuple[int, ...] = ()
    sql_level: bool = False
    plan: object | None = None  # attached by the rules layer


class Session:
    """One client connection's protocol state. See the module docstring."""

    def __init__(
        self,
        conn_id: int,
        *,
        limits: SessionLimits | None = None,
        tls_available: bool = False,
        tls_required: bool = False,
        terminate: TerminateConfig | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.limits = limits or SessionLimits()
        self.tls_available = tls_available
        self.tls_required = tls_required
        self.client_tls = False
        self.upstream_tls = False
        self._sasl_started = False
        self._plus_hidden = False  # pass-through: the server offered -PLUS, pgseal hid it
        # auth.mode: terminate (None: authentication is relayed).
        self.terminate = terminate
        self._client_scram: ClientScram | None = None
        self._upstream_login: UpstreamLogin | None = None
        self._upstream_startup: codec.StartupMessage | None = None
        self._upstream_authenticated = False
        #: tls-server-end-point data of the server's certificate (set by the adapter).
        self.upstream_cert_hash: bytes | None = None
        self.phase = Phase.STARTUP
        self.to_client: list[bytes] = []
        self.to_server: list[bytes] = []
        self.actions: list[Action] = []
        self.startup: codec.StartupMessage | None = None
        self.txn_status = "I"
        self.statements: dict[str, PreparedStatement] = {}
        self.portals: dict[str, str] = {}
        self.server_params: dict[str, str] = {}
        self.bytes_from_client = 0
        self.bytes_from_server = 0
        self.cancel_pid = 0
        self.cancel_secret = b""
        self._cbuf = b""
        self._sbuf = b""
        # A large message arriving in many reads is collected here and joined
        # once complete, instead of re-concatenating the buffer on every read
        # (quadratic in the message size). See ``_collect``.
        self._cparts: list[bytes] = []
        self._chave = 0
        self._cwant = 0
        self._sparts: list[bytes] = []
        self._shave = 0
        self._swant = 0
        self._pending: deque[tuple[int, object]] = deque()
        # len(_pending) while it holds exactly one round trip's expectations,
        # all made by the pass-through client path (0: not known). See
        # ``server_data``'s one-round-trip lane.
        self._lane = 0
        self._lane_head = b""  # the frames the last lane answer began with
        self._skipping = False
        self._copy_in_syncs_ignored = False
        self._pre_ready: list[bytes] = []
        # Column encryption (None: pure pass-through).
        self.encryption: Encryption | None = None
        self.crypt: SessionCrypto | None = None
        self._client_blocked = False
        self._server_blocked = False
        self._discarding = False
        self._rolled_back = False
        self._copy_in: CopyIn | None = None
        self._copy_in_query: PortalState | None = None  # the COPY FROM's Query result
        self._copy_out: CopyOut | None = None
        # COPY TOs sent, each with its Query's result: armed by that Query's own
        # CopyOutResponse, not one of a Query pipelined ahead of it.
        self._copies_out: deque[tuple[PortalState, CopyOut]] = deque()
        self._copy_failed = False
        self._copy_error: bytes | None = None

    # -- introspection ---------------------------------------------------------
    @property
    def idle(self) -> bool:
        """No request in flight and not inside a transaction block."""
        return self.phase is Phase.READY and not self._pending and self.txn_status == "I"

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- client side -------------------------------------------------------------
    def client_data(self, data: bytes) -> None:
        self.bytes_from_client += len(data)
        if (
            self.phase is _READY
            and self.crypt is None
            and not self._cwant
            and not self._skipping
            and not self._client_blocked
        ):
            # The hot path: pure pass-through, nothing being collected.
            buf = self._cbuf + data if self._cbuf else data
            try:
                rest = self._client_messages_plain(buf)
            except ProtocolViolation as exc:
                self._fatal("08P01", f"pgseal: invalid frontend message: {exc}")
                return
            except Exception as exc:  # fail closed: this connection only
                self._internal_error(exc)
                return
            if not rest:
                self._cbuf = b""
                return
            self._cbuf = rest = bytes(rest)
            if len(rest) >= _COLLECT_ABOVE and self.phase is _READY:
                want = _incomplete_size(rest)
                if want:
                    self._cparts, self._chave, self._cwant = [rest], len(rest), want
                    self._cbuf = b""
            return
        if self.phase is Phase.CLOSED:
            return
        if self._cwant:
            self._cparts.append(data)
            self._chave += len(data)
            if self._chave < self._cwant:
                return
            data = b"".join(self._cparts)
            self._cparts, self._chave, self._cwant = [], 0, 0
        buf = self._cbuf + data if self._cbuf else data
        phase = self.phase
        try:
            if phase is Phase.READY:  # first: the hot path
                if self._client_blocked:
                    pass
                elif self.crypt is None and not self._skipping:
                    buf = self._client_messages_plain(buf)
                else:
                    buf = self._client_messages(buf)
            elif phase is Phase.STARTUP:
                buf = self._client_startup(buf)
            elif phase is Phase.AUTH:
                buf = self._client_auth(buf)
            # CONNECTING: keep buffering until the upstream is there.
        except ProtocolViolation as exc:
            self._fatal("08P01", f"pgseal: invalid frontend message: {exc}")
            return
        except Exception as exc:  # fail closed: this connection only, never the process
            self._internal_error(exc)
            return
        self._cbuf = bytes(buf)
        if len(buf) >= _COLLECT_ABOVE and self.phase is Phase.READY and not self._client_blocked:
            want = _incomplete_size(self._cbuf)
            if want:
                self._cparts, self._chave, self._cwant = [self._cbuf], len(self._cbuf), want
                self._cbuf = b""

    def _client_startup(self, buf: bytes) -> bytes:
        if buf[:1] == b"\x16" and not self.client_tls:
            # A TLS ClientHello where a startup packet belongs: direct TLS
            # (sslnegotiation=direct) that the adapter did not take.
            self._fatal(
                "08P01",
                "pgseal: received a direct TLS connection, which is not enabled",
                hint="Set tls.direct: true (with tls.cert and tls.key) in pgseal's config, "
                "or connect with sslnegotiation=postgres.",
            )
            return b""
        while self.phase is Phase.STARTUP:
            length = codec.startup_length(buf, self.limits.max_startup_size)
            if length is None:
                return buf
            packet, buf = buf[:length], buf[length:]
            request = codec.decode_startup(packet)
            if isinstance(request, codec.SpecialRequest):
                if request.code == codec.SSL_REQUEST_CODE and self.tls_available:
                    if buf:
                        # Bytes pipelined behind SSLRequest would be read as
                        # plaintext past the TLS switch (CVE-2021-23214).
                        raise ProtocolViolation("received unencrypted data after SSL request")
                    self.to_client.append(b"S")
                    self.actions.append(StartClientTLS())
                    self.client_tls = True
                    return buf
                self.to_client.append(b"N")
                continue
            if isinstance(request, codec.CancelRequest):
                self.actions.append(ForwardCancel(request.pid, request.secret))
                self._close("cancel request")
                return b""
            if self.tls_required and not self.client_tls:
                self._fatal(
                    "28000",
                    "pgseal: this server requires TLS; connect with sslmode=require",
                )
                return b""
            self.startup = request
            if self.encryption is not None:
                self.crypt = self.encryption.session(request.params)
            if self.terminate is not None:
                self.phase = Phase.AUTH
                self.actions.append(LookupSecret(request.params["user"]))
                return buf
            self.phase = Phase.CONNECTING
            self.actions.append(ConnectUpstream(request))
        return buf

    def _client_auth(self, buf: bytes) -> bytes:
        if self.terminate is not None:
            return self._client_auth_terminated(buf)
        last = 0
        for kind, start, end in codec.frames(buf, 0, self.limits.max_message_size):
            last = end
            if kind == 0x70 and self._sasl_started:  # SASLInitialResponse
                self._sasl_started = False
                mechanism, data = codec.decode_sasl_initial(buf[start + 5 : end])
                # 'y' = "I could bind, the server cannot": a server that did
                # offer -PLUS (pgseal stripped it) rejects that as a downgrade.
                if mechanism.endswith("-PLUS") or ((data or b"")[:1] == b"y" and self._plus_hidden):
                    self._fatal(
                        "28000",
                        "pgseal: SCRAM channel binding cannot pass through pgseal when both "
                        "the client and the database connection use TLS",
                        hint="Set auth.mode: terminate in pgseal's config (pgseal then binds to "
                        "its own certificate), connect with channel_binding=disable, or set "
                        "tls.upstream: disable for a local database.",
                    )
                    return b""
        if last:
            self.to_server.append(buf[:last])
        return buf[last:]

    # -- terminate mode ------------------------------------------------------------
    def secret_found(self, secret: UserSecret | None) -> None:
        """The user's secret (None: unknown): offer SCRAM to the client."""
        terminate = self.terminate
        if self.phase is not Phase.AUTH or terminate is None or self.startup is None:
            return
        self._client_scram = ClientScram(
            self.startup.params["user"],
            secret,
            terminate.channel_binding if self.client_tls else None,
            terminate.mock_seed,
        )
        self.to_client.append(codec.encode_sasl_mechanisms(self._client_scram.mechanisms))
        if self._cbuf:
            self.client_data(b"")

    def secret_lookup_failed(self) -> None:
        """The secret store is unreachable: nobody can log in now (no user is singled out)."""
        self._fatal(
            "28000",
            "pgseal: cannot authenticate now: the auth_query on the service connection failed",
            hint="Check service_dsn and auth.auth_query; pgseal's log has the cause.",
        )

    def _client_auth_terminated(self, buf: bytes) -> bytes:
        scram = self._client_scram
        if scram is None or self._upstream_startup is not None:
            return buf  # waiting for the secret, or for the upstream login
        last = 0
        for kind, start, end in codec.frames(buf, 0, self.limits.max_startup_size):
            last = end
            if kind == 0x58:  # Terminate: the client gave up
                self._close("client terminated during authentication")
                return b""
            if kind != 0x70:
                raise ProtocolViolation(f"expected SASL response, got message type {kind}")
            body = buf[start + 5 : end]
            try:
                if not self._sasl_started:
                    mechanism, data = codec.decode_sasl_initial(body)
                    self.to_client.append(
                        auth_request(AUTH_SASL_CONTINUE, scram.initial(mechanism, data))
                    )
                    self._sasl_started = True
                    continue
                self.to_client.append(auth_request(AUTH_SASL_FINAL, scram.final(body)))
            except AuthError as exc:
                log.info("conn %d: client authentication failed: %s", self.conn_id, exc.message)
                self._fatal(exc.sqlstate, exc.message, exc.hint)
                return b""
            self._client_authenticated()
            return buf[end:]
        return buf[last:]

    def _client_authenticated(self) -> None:
        """The client proved its password: log in upstream on its behalf."""
        assert self.startup is not None
        assert self.terminate is not None
        assert self._client_scram is not None
        log.debug(
            "conn %d: pgseal authenticated the client with %s%s",
            self.conn_id,
            self._client_scram.mechanism,
            " (bound to pgseal's certificate)"
            if self._client_scram.mechanism == "SCRAM-SHA-256-PLUS"
            else "",
        )
        params = dict(self.startup.params)
        if self.terminate.upstream_user is not None:
            params["user"] = self.terminate.upstream_user
        self._upstream_startup = codec.StartupMessage(self.startup.protocol, params)
        self.phase = Phase.CONNECTING
        self.actions.append(ConnectUpstream(self.startup))

    def _upstream_auth(self, body: bytes) -> bool:
        """Answer one Authentication* request; True when the client should see it."""
        login = self._upstream_login
        assert login is not None
        code, payload = codec.decode_auth(body)
        if code == AUTH_OK:
            self._upstream_authenticated = True
            return True
        try:
            reply = login.answer(code, payload)
        except AuthError as exc:
            log.warning("conn %d: upstream login failed: %s", self.conn_id, exc.message)
            self._fatal(exc.sqlstate, exc.message, exc.hint)
            return False
        if reply:
            self.to_server.append(reply)
        return False

    def _upstream_refused(self, body: bytes) -> None:
        """The server refused pgseal's login: say so, the client's password was right."""
        fields = codec.decode_error_fields(body)
        user = self._upstream_startup.params["user"] if self._upstream_startup else "?"
        code = fields.get("C", "28000")
        self._fatal(
            code,
            f'pgseal: the database server refused pgseal\'s login as "{user}": '
            f"{fields.get('M', 'no message')}",
            # Only an authentication failure (class 28) is about credentials;
            # "too many clients" and the like keep the server's own hint.
            hint="The client's password was accepted by pgseal. Check auth.upstream_user / "
            "auth.upstream_password, or that the secret in auth_file matches the server's "
            "(pg_authid), or pg_hba.conf for pgseal's address."
            if code.startswith("28")
            else fields.get("H"),
        )

    def _client_messages_plain(self, buf: bytes) -> bytes:
        """``_client_messages`` for pure pass-through: the hot path.

        Nothing is rewritten, so the whole framed prefix of ``buf`` goes out as
        one chunk. Only Parse, Close and Query are decoded (for the statement
        registry); every other message costs a length check and an append of a
        preallocated expectation, with no object made per message. Nearly every
        extended-protocol batch ends with Execute of the unnamed portal and
        Sync (most drivers Describe it first): when ``buf`` ends with exactly
        those bytes, they are not framed one by one once the framing before
        them reaches their start.
        """
        pending = self._pending
        expect = pending.append
        was_empty = not pending
        round_trips = 0
        limit = self.limits.max_message_size
        unpack = _unpack_type_length
        size = stop = len(buf)
        if buf.endswith(_EXECUTE_SYNC) and not self._copy_in_syncs_ignored:
            if buf.endswith(_DESCRIBE_EXECUTE_SYNC):
                stop, run = size - len(_DESCRIBE_EXECUTE_SYNC), _EXPECT_DESCRIBE_EXECUTE_SYNC
            else:
                stop, run = size - len(_EXECUTE_SYNC), _EXPECT_EXECUTE_SYNC
        pos = 0
        while True:
            while pos + 5 <= stop:
                kind, length = unpack(buf, pos)
                if length < 4 or length > limit:
                    raise codec.length_error(length, limit)
                end = pos + 1 + length
                if end > size:
                    break
                if kind == 0x42:  # Bind
                    if buf[pos + 5]:  # named portal: the unnamed one is not worth a decode
                        portal, statement = _two_cstrs(buf, pos + 5, end)
                        self.portals[portal] = statement
                    expect(_EXPECT_BIND)
                elif kind == 0x51:  # Query
                    if "" in self.statements or "" in self.portals:
                        self._simple_query_started()
                    if _SQL_REGISTRY_HINT.search(buf, pos + 5, end - 1) and _SQL_REGISTRY.search(
                        buf, pos + 5, end - 1
                    ):
                        self._track_sql_registry(codec.decode_query(buf[pos + 5 : end]))
                    expect(_EXPECT_QUERY)
                    round_trips += 1
                elif kind == 0x45:  # Execute
                    expect(_EXPECT_EXECUTE)
                elif kind == 0x53:  # Sync
                    if not self._copy_in_syncs_ignored:
                        expect(_EXPECT_SYNC)
                        round_trips += 1
                elif kind == 0x44:  # Describe
                    if end - pos < 7 or buf[pos + 5] not in b"SP":
                        raise ProtocolViolation("invalid Describe message")
                    expect(_EXPECT_DESCRIBE_S if buf[pos + 5] == 0x53 else _EXPECT_DESCRIBE_P)
                elif kind == 0x64 or kind == 0x48:  # CopyData, Flush: no answer to expect
                    pass
                elif kind == 0x58:  # Terminate
                    self.to_server.append(buf[:end])
                    self._close("client terminated")
                    return b""
                else:
                    self._track_client_message(kind, buf, pos, end)
                    if kind == 0x46:  # FunctionCall: a round trip of its own
                        round_trips += 1
                pos = end
            if stop == size:
                break
            if pos == stop:  # the Execute and Sync the batch ends with
                pending.extend(run)
                round_trips += 1
                pos = size
                break
            stop = size  # the bytes only looked like them: frame on
        if pos:
            self.to_server.append(buf if pos == size else buf[:pos])
            if was_empty and round_trips == 1:
                tail = pending[-1]
                if tail is _EXPECT_SYNC or tail is _EXPECT_QUERY:
                    self._lane = len(pending)  # see server_data
        return buf[pos:]

    def _track_client_message(self, kind: int, buf: bytes, start: int, end: int) -> None:
        """The expectations of the less frequent messages (both paths share it)."""
        pending = self._pending
        if kind == 0x50:  # Parse
            parse = codec.decode_parse(buf[start + 5 : end])
            self.statements[parse.name] = PreparedStatement(parse.query, parse.param_types)
            pending.append((PARSE, parse.name))
        elif kind == 0x51:  # Query
            self._simple_query_started()
            if _SQL_REGISTRY_HINT.search(buf, start + 5, end - 1) and _SQL_REGISTRY.search(
                buf, start + 5, end - 1
            ):
                self._track_sql_registry(codec.decode_query(buf[start + 5 : end]))
            pending.append(_EXPECT_QUERY)
        elif kind == 0x43:  # Close
            close = codec.decode_close(buf[start + 5 : end])
            if close.kind == "S":
                self.statements.pop(close.name, None)
            else:
                self.portals.pop(close.name, None)
            pending.append((CLOSE, close.name))
        elif kind in (0x63, 0x66):  # CopyDone, CopyFail
            if self._copy_in_syncs_ignored:
                self._copy_in_syncs_ignored = False
            elif pending:
                # Sent before the CopyInResponse (or after the COPY failed):
                # a marker, dropped once the server's answers reach it. With
                # nothing in flight the server ignores it outright.
                pending.append(_EXPECT_COPY_END)
        elif kind == 0x46:  # FunctionCall
            pending.append(_EXPECT_FUNCTION)
        else:
            raise ProtocolViolation(f"invalid frontend message type {kind}")

    def _client_messages(self, buf: bytes) -> bytes:
        """Frame, track and forward client messages; one output chunk per call.

        Framed inline (as ``_client_messages_plain``): untouched messages are
        not copied one by one but forwarded as runs (``buf[seg:...]``), and the
        frequent ones that need no rewriting (Sync, Flush, Execute of a
        described portal) are handled before anything else is looked at.
        """
        crypt = self.crypt
        if crypt is None and not self._skipping:
            return self._client_messages_plain(buf)
        out = self.to_server
        pending = self._pending
        expect = pending.append
        limit = self.limits.max_message_size
        unpack = codec.unpack_length
        size = len(buf)
        seg = 0  # start of the run of bytes forwarded unchanged
        pos = 0
        while pos + 5 <= size:
            (length,) = unpack(buf, pos + 1)
            if length < 4 or length > limit:
                raise codec.length_error(length, limit)
            end = pos + 1 + length
            if end > size:
                break
            kind = buf[pos]
            start = pos
            pos = end
            if self._skipping:
                if kind != 0x53:  # everything but Sync is discarded
                    if start > seg:
                        out.append(buf[seg:start])
                    seg = end
                    continue
                self._skipping = False
            elif self._copy_in is not None and kind in _COPY_CLIENT:
                try:
                    replacement = self._copy_client(self._copy_in, kind, buf, start, end)
                except NeedKeys as need:
                    if start > seg:
                        out.append(buf[seg:start])
                    self._client_blocked = True
                    self.actions.append(LoadKeys(need))
                    return buf[start:]
                except Refused as refused:
                    replacement = _COPY_FAIL_SQL
                    self._copy_failed = True
                    self._copy_error = refused.error
                if replacement is not None:
                    if start > seg:
                        out.append(buf[seg:start])
                    out.append(replacement)
                    seg = end
                if kind == 0x64:
                    continue
            if kind == 0x53:  # Sync
                if not self._copy_in_syncs_ignored:
                    expect(_EXPECT_SYNC)
                continue
            if kind == 0x45 and crypt is not None:  # Execute
                if end > start + 5 and not buf[start + 5]:
                    name = ""  # the unnamed portal: no search, no decode
                else:
                    name = _cstr_at(buf, start + 5, end)
                state = crypt.portals.get(name)
                if state is None:
                    state = crypt.portals[name] = PortalState(name)
                if state.copy is not None:  # a COPY on a protected table, made at Bind
                    if isinstance(state.copy, CopyIn):
                        self._copy_in, self._copy_in_query = state.copy, state
                        self._copy_failed = False
                    elif isinstance(state.copy, CopyOut):
                        self._copies_out.append((state, state.copy))
                    state.copy = None
                if state.columns is None and not state.injected_describe:
                    # The result's shape is unknown (the client never described
                    # it): ask Postgres first, so no protected value slips through.
                    state.injected_describe = True
                    expect((INJECTED_DESCRIBE, state))
                    expect((EXECUTE, state))
                    if start > seg:
                        out.append(buf[seg:start])
                    out.append(codec.describe("P", name) + buf[start:end])
                    seg = end
                else:
                    expect((EXECUTE, state))
                continue
            if kind == 0x48 or kind == 0x64:  # Flush, CopyData: no answer to expect
                continue
            if crypt is not None and kind in _CRYPT_CLIENT:
                try:
                    replacement = self._crypt_client(crypt, kind, buf, start, end)
                except NeedKeys as need:
                    if start > seg:
                        out.append(buf[seg:start])
                    self._client_blocked = True
                    self.actions.append(LoadKeys(need))
                    return buf[start:]
                except Refused as refused:
                    if start > seg:
                        out.append(buf[seg:start])
                    seg = end
                    self.refuse(refused.error, simple_query=kind == 0x51)
                    continue
                if replacement is not None:
                    if start > seg:
                        out.append(buf[seg:start])
                    out.append(replacement)
                    seg = end
                continue
            if kind == 0x42:  # Bind
                portal, statement = _two_cstrs(buf, start + 5, end)
                self.portals[portal] = statement
                expect((BIND, portal))
            elif kind == 0x45:  # Execute
                expect((EXECUTE, _cstr_at(buf, start + 5, end)))
            elif kind == 0x44:  # Describe
                describe = codec.decode_describe(buf[start + 5 : end])
                expect((DESCRIBE_S if describe.kind == "S" else DESCRIBE_P, describe.name))
            elif kind == 0x58:  # Terminate
                if end > seg:
                    out.append(buf[seg:end])
                self._close("client terminated")
                return b""
            else:
                self._track_client_message(kind, buf, start, end)
        if pos > seg:
            out.append(buf if pos == size and not seg else buf[seg:pos])
        return buf[pos:]

    def _copy_client(
        self, copy_in: CopyIn, kind: int, buf: bytes, start: int, end: int
    ) -> bytes | None:
        """CopyData/CopyDone/CopyFail during a COPY FROM STDIN into a protected table."""
        if kind == 0x64:  # CopyData
            if self._copy_failed:
                return b""  # the server already has our CopyFail
            data = copy_in.feed(buf[start + 5 : end])
            return codec.message(b"d", data) if data else b""
        # CopyDone / CopyFail end the stream (bookkeeping continues as usual).
        self._copy_in = None
        if kind == 0x63 and not self._copy_failed and copy_in.buffer and copy_in.fmt != "binary":
            self._copy_in = copy_in  # feed may need keys: stay until it succeeds
            tail = copy_in.feed(b"\n")
            self._copy_in = None
            return codec.message(b"d", tail) + buf[start:end]
        if kind == 0x63 and not self._copy_failed and copy_in.buffer:
            self._copy_failed = True
            self._copy_error = codec.encode_error(
                "22P04", "pgseal: COPY BINARY data ended in the middle of a row"
            )
            return _COPY_FAIL_SQL
        return None

    def _crypt_client(
        self, crypt: SessionCrypto, kind: int, buf: bytes, start: int, end: int
    ) -> bytes | None:
        """Parse/Bind/Describe/Query/Close with column encryption on.

        (Execute is handled inline in ``_client_messages``.)

        Returns the message to send instead (None: the original); raises
        ``NeedKeys`` (nothing recorded yet) or ``Refused``.
        """
        pending = self._pending
        body = buf[start + 5 : end]
        # Under another client_encoding the text is read losslessly to plan it:
        # a statement on an encrypted table is refused then, any other goes as it came.
        errors = "strict" if crypt.foreign_encoding is None else "surrogateescape"
        if kind in (0x50, 0x51) and _ENCODING_HINT.search(body) and _ENCODING_CHANGE.search(body):
            # Until Postgres has answered everything in flight, the encoding of
            # what follows is unknown: statements on encrypted tables are refused.
            crypt.encoding_changing = True
        if kind in (0x50, 0x51) and _TIMEZONE_HINT.search(body) and _TIMEZONE_CHANGE.search(body):
            crypt.timezone_may_change()  # timestamptz text needs an offset till then
        if kind == 0x50:  # Parse
            parse = codec.decode_parse(body, errors)
            replacement = crypt.parse(parse)
            self.statements[parse.name] = PreparedStatement(parse.query, parse.param_types)
            pending.append((PARSE, parse.name))
            return replacement
        if kind == 0x42:  # Bind
            replacement, state = crypt.bind(body)
            self.portals[state.portal] = state.statement
            pending.append((BIND, state.portal))
            return replacement
        if kind == 0x44:  # Describe
            describe = codec.decode_describe(body)
            if describe.kind == "S":
                pending.append((DESCRIBE_S, describe.name))
            else:
                found = crypt.portals.get(describe.name)
                if found is None:
                    found = crypt.portals[describe.name] = PortalState(describe.name)
                pending.append((DESCRIBE_P, found))
            return None
        if kind == 0x51:  # Query
            sql = codec.decode_query(body, errors)
            replacement = crypt.query(sql)
            result = PortalState()
            copy, crypt.copy_pending = crypt.copy_pending, None
            if isinstance(copy, CopyIn):
                # Clients may send CopyData before the CopyInResponse arrives.
                self._copy_in, self._copy_in_query = copy, result
                self._copy_failed = False
            elif isinstance(copy, CopyOut):
                self._copies_out.append((result, copy))
            self._simple_query_started()
            if _SQL_REGISTRY_HINT.search(body) and _SQL_REGISTRY.search(body):
                self._track_sql_registry(sql)
            pending.append((QUERY, result))
            return replacement
        # Close
        close = codec.decode_close(body)
        if close.kind == "S":
            self.statements.pop(close.name, None)
            crypt.forget_statement(close.name)
        else:
            self.portals.pop(close.name, None)
            crypt.portals.pop(close.name, None)
        pending.append((CLOSE, close.name))
        return None

    def _simple_query_started(self) -> None:
        # exec_simple_query begins with drop_unnamed_stmt(): after any Query
        # the unnamed statement (and the unnamed portal) no longer exist.
        if "" in self.statements:
            del self.statements[""]
            if self.crypt is not None:
                self.crypt.forget_statement("")
        self.portals.pop("", None)

    def _track_sql_registry(self, sql: str) -> None:
        # Statements are split on ';' (a literal containing one can only make
        # the registry forget a statement, never invent one); drivers send
        # PREPARE/DEALLOCATE/DISCARD on their own.
        #
        # Postgres keeps named protocol-level statements and SQL PREPAREd ones
        # in one table, so DEALLOCATE name/ALL act on both, and DISCARD ALL
        # includes DEALLOCATE ALL; DISCARD PLANS only drops cached plans.
        for statement in sql.split(";"):
            if match := _PREPARE.match(statement):
                name = _ident(match.group(1))
                self.statements[name] = PreparedStatement(statement, sql_level=True)
            elif match := _DEALLOCATE.match(statement):
                raw = match.group(1)
                if raw.lower() == "all":
                    self._drop_named_statements()
                else:
                    self._forget_statement(_ident(raw))
            elif (match := _DISCARD.match(statement)) and match.group(1).lower() == "all":
                self._drop_named_statements()
                self.portals.clear()

    def _forget_statement(self, name: str) -> None:
        self.statements.pop(name, None)
        if self.crypt is not None:
            self.crypt.forget_statement(name)

    def _drop_named_statements(self) -> None:
        for name in [n for n in self.statements if n]:
            self._forget_statement(name)
        if self.crypt is not None:
            for name in [n for n in self.crypt.statements if n]:
                self.crypt.forget_statement(name)

    # -- server side -------------------------------------------------------------
    def server_connected(self) -> None:
        """The upstream connection is up: send the startup packet and go on."""
        assert self.startup is not None
        if self._upstream_startup is not None and self.terminate is not None:
            scram = self._client_scram
            secret = scram.secret if scram else None
            password, client_key = self.terminate.upstream_credentials(
                secret, scram.client_key if scram else None
            )
            self._upstream_login = UpstreamLogin(
                self._upstream_startup.params["user"],
                password=password,
                client_key=client_key,
                secret=secret,
                server_cert_hash=self.upstream_cert_hash,
            )
            self.to_server.append(self._upstream_startup.encode())
        else:
            self.to_server.append(self.startup.encode())
        self.phase = Phase.AUTH
        if self._cbuf:
            pending, self._cbuf = self._cbuf, b""
            self.client_data(pending)

    def server_data(self, data: bytes) -> None:
        self.bytes_from_server += len(data)
        if self.phase is _READY and self.crypt is None and not self._swant:
            # The hot path: pure pass-through, nothing being collected.
            buf = self._sbuf + data if self._sbuf else data
            pending = self._pending
            lane = self._lane
            if lane and len(pending) == lane and (status := _READY_TAIL.get(buf[-6:])):
                # The one-round-trip lane. ``_lane`` says that ``_pending``
                # holds one round trip's expectations (up to its one Sync or
                # Query) and nothing of pgseal's own. A conforming server
                # answers each of them, or an error skips the rest to the Sync,
                # and then sends ReadyForQuery: once that has come the exact
                # queue is empty, whatever came between. So a read that ends
                # with ReadyForQuery, has no other one and no CopyInResponse
                # (which changes what the client's Syncs mean) is framed and
                # checked here, not matched message by message. Anything else
                # falls through before any state changed, and
                # ``_server_messages`` does it the exact way (and raises).
                last = len(buf) - 6  # where the ReadyForQuery starts
                if last <= self.limits.max_message_size:  # no whole message can be too long
                    unpack = _unpack_type_length
                    # The frames before the first DataRow (BindComplete,
                    # RowDescription...) are mostly those of the last answer:
                    # if the read starts with those bytes, they were framed
                    # and checked then. Else they are framed here, and kept.
                    head = self._lane_head
                    if head and buf.startswith(head):
                        pos = len(head)
                    else:
                        pos = 0
                        while pos < last:
                            kind, length = unpack(buf, pos)
                            if length < 4 or kind in _LANE_HEAD_END:
                                break
                            pos += 1 + length
                        if pos <= last:
                            self._lane_head = buf[:pos] if pos <= _LANE_HEAD_MAX else b""
                    error = False
                    while pos < last:
                        kind, length = unpack(buf, pos)
                        if length < 4:
                            break
                        # ReadyForQuery, ErrorResponse, CopyInResponse, ParameterStatus:
                        if kind in _LANE_SPECIAL:
                            if kind == 0x45:
                                error = True
                            elif kind != 0x53 or pos + 1 + length > last:
                                break
                            else:
                                self._note_parameter(buf[pos + 5 : pos + 1 + length])
                        pos += 1 + length
                    if pos == last:
                        self.txn_status = status
                        if status == "I" and self.portals:
                            self.portals.clear()
                        if error:
                            self._copy_in_syncs_ignored = False  # as _server_error
                        pending.clear()
                        self._lane = 0
                        self._sbuf = b""
                        self.to_client.append(buf)
                        return
            try:
                rest = self._server_messages(buf)
            except ProtocolViolation as exc:
                self._fatal("08P01", f"pgseal: invalid message from the database server: {exc}")
                return
            except Exception as exc:
                self._internal_error(exc)
                return
            if not rest:
                self._sbuf = b""
                return
            self._sbuf = rest = bytes(rest)
            if len(rest) >= _COLLECT_ABOVE and self.phase is _READY:
                want = _incomplete_size(rest)
                if want:
                    self._sparts, self._shave, self._swant = [rest], len(rest), want
                    self._sbuf = b""
            return
        if self.phase is Phase.CLOSED:
            return
        if self._swant:
            self._sparts.append(data)
            self._shave += len(data)
            if self._shave < self._swant:
                return
            data = b"".join(self._sparts)
            self._sparts, self._shave, self._swant = [], 0, 0
        buf = self._sbuf + data if self._sbuf else data
        try:
            if self.phase is Phase.READY:
                if self.crypt is None:
                    buf = self._server_messages(buf)
                elif not self._server_blocked:
                    buf = self._server_messages_crypt(buf)
            else:
                buf = self._server_auth(buf)
        except ProtocolViolation as exc:
            self._fatal("08P01", f"pgseal: invalid message from the database server: {exc}")
            return
        except Exception as exc:
            self._internal_error(exc)
            return
        self._sbuf = bytes(buf)
        if len(buf) >= _COLLECT_ABOVE and self.phase is Phase.READY and not self._server_blocked:
            want = _incomplete_size(self._sbuf)
            if want:
                self._sparts, self._shave, self._swant = [self._sbuf], len(self._sbuf), want
                self._sbuf = b""

    def _server_auth(self, buf: bytes) -> bytes:
        last = 0
        for kind, start, end in codec.frames(buf, 0, self.limits.max_message_size):
            last = end
            body = buf[start + 5 : end]
            if kind == 0x4B:  # BackendKeyData: the backend's pid, a secret of ours
                upstream_pid, upstream_secret = codec.decode_backend_key_data(body)
                # The pid is no secret (pg_backend_pid(), pg_stat_activity, the pid
                # of every NotificationResponse): clients match their own
                # notifications and sessions by it, so it stays the backend's.
                self.cancel_pid = upstream_pid
                self.cancel_secret = secrets.token_bytes(len(upstream_secret))
                self.actions.append(
                    RegisterCancelKey(
                        self.cancel_pid, self.cancel_secret, upstream_pid, upstream_secret
                    )
                )
                self.to_client.append(codec.backend_key_data(self.cancel_pid, self.cancel_secret))
                continue
            if kind == 0x52 and self._upstream_login is not None:
                if not self._upstream_auth(body):
                    if self.phase is Phase.CLOSED:
                        return b""
                    continue
            elif kind == _T_ERROR and self._upstream_login and not self._upstream_authenticated:
                self._upstream_refused(body)
                return b""
            if kind == 0x53:  # ParameterStatus
                self._note_parameter(body)
            elif kind == 0x52 and body[:4] == b"\x00\x00\x00\x0a":  # AuthenticationSASL
                # Binding to pgseal's certificate can never verify at the
                # server, so -PLUS is not offered to a relayed client.
                mechanisms = codec.sasl_mechanisms(body[4:])
                self._sasl_started = True
                plain = [m for m in mechanisms if not m.endswith("-PLUS")]
                if plain != mechanisms:
                    self._plus_hidden = True
                    self.to_client.append(codec.encode_sasl_mechanisms(plain))
                    continue
            self.to_client.append(buf[start:end])
            if kind == _T_READY:
                self.txn_status = chr(body[0]) if body else "I"
                self.phase = Phase.READY
                rest = buf[end:]
                if self._cbuf:
                    pending, self._cbuf = self._cbuf, b""
                    self.client_data(pending)
                if not rest:
                    return rest
                if self.crypt is None:
                    return self._server_messages(rest)
                return self._server_messages_crypt(rest)
            if kind == _T_ERROR:
                # A FATAL during startup/auth: the server closes; so do we
                # once the error is delivered.
                fields = codec.decode_error_fields(body)
                if fields.get("S") in ("FATAL", "PANIC"):
                    self._close("authentication failed")
                    return b""
        return buf[last:]

    def _note_parameter(self, body: bytes) -> None:
        try:
            name, _, value = body.rstrip(b"\x00").partition(b"\x00")
            self.server_params[name.decode()] = value.decode()
        except UnicodeDecodeError:
            return
        if self.crypt is None:
            return
        if name in (b"client_encoding", b"server_encoding"):
            params = self.server_params
            self.crypt.note_encodings(
                params.get("client_encoding", "UTF8"), params.get("server_encoding", "")
            )
        elif name == b"TimeZone":
            self.crypt.note_timezone(self.server_params["TimeZone"])

    def _server_messages(self, buf: bytes) -> bytes:
        """Frame and track the server's messages in pure pass-through: the hot path.

        Everything is forwarded as it came, in one chunk, except that pgseal's
        own errors are spliced in where their turn in the queue comes. DataRow
        and the asynchronous messages (by far the most) cost one comparison.
        A COPY_END marker can only come to the head of the queue when an entry
        is taken off, so it is looked for only then.
        """
        self._lane = 0  # entries are matched one by one from here on
        pending = self._pending
        popleft = pending.popleft
        limit = self.limits.max_message_size
        unpack = codec.unpack_length
        done_by = _DONE_BY_HEAD
        size = len(buf)
        seg = 0
        pos = 0
        while pos + 5 <= size:
            (length,) = unpack(buf, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > limit:
                raise codec.length_error(length, limit)
            if end > size:
                break
            kind = buf[pos]
            start = pos
            pos = end
            if kind == 0x44 or kind == 0x4E or kind == 0x41:  # DataRow, Notice, Notification
                continue
            if kind == 0x53:  # ParameterStatus
                self._note_parameter(buf[start + 5 : end])
                continue
            if not pending:
                # Unsolicited: a FATAL from a terminating backend, say.
                continue
            head = pending[0][0]
            if kind == 0x5A:  # ReadyForQuery
                status = _TXN_STATUS.get(buf[start + 5]) if length == 5 else None
                if status is None:
                    raise ProtocolViolation("invalid ReadyForQuery message")
                self.txn_status = status
                if status == "I" and self.portals:
                    self.portals.clear()
                popleft()
            elif kind in done_by[head]:
                popleft()
            elif kind == 0x45:  # ErrorResponse
                if head in (REFUSED, REFUSED_QUERY):
                    if start > seg:
                        self.to_client.append(buf[seg:start])
                    self.to_client.append(cast(bytes, pending[0][1]))
                    seg = end
                self._server_error(head)
                continue
            else:
                if kind == 0x47:  # CopyInResponse
                    self._copy_in_started()
                continue
            if pending and pending[0][0] == COPY_END:
                popleft()  # a CopyDone the server never waited for
        if pos > seg:
            self.to_client.append(buf if pos == size and not seg else buf[seg:pos])
        return buf[pos:]

    def _server_messages_crypt(self, buf: bytes) -> bytes:
        """``_server_messages`` with column encryption: results are rewritten."""
        crypt = self.crypt
        assert crypt is not None
        out = self.to_client
        pending = self._pending
        seg = 0
        last = 0
        limit = self.limits.max_message_size
        unpack = codec.unpack_length
        done_by = _DONE_BY_HEAD
        size = len(buf)
        pos = 0
        # Framed inline (as _server_messages): runs of protected DataRows are
        # handed to crypt.data_rows whole and the loop goes on after them.
        while pos + 5 <= size:
            (length,) = unpack(buf, pos + 1)
            if length < 4 or length > limit:
                raise codec.length_error(length, limit)
            end = pos + 1 + length
            if end > size:
                break
            kind = buf[pos]
            start = pos
            pos = last = end
            if kind in _ASYNC:
                if kind == 0x53:
                    self._note_parameter(buf[start + 5 : end])
                continue
            if kind in _PLAIN_DONE and pending and not self._discarding:
                # ParseComplete, BindComplete, CloseComplete, CommandComplete,
                # EmptyQueryResponse, PortalSuspended: never rewritten, they
                # only end their expectation (pgseal's own requests excepted).
                head = pending[0][0]
                if head < INJECTED_DESCRIBE:
                    if kind in done_by[head]:
                        pending.popleft()
                    if kind == _T_COMMAND_COMPLETE and buf[start + 5 : start + 13] == b"ROLLBACK":
                        self._rolled_back = True
                    if pending and pending[0][0] == COPY_END:
                        pending.popleft()
                    continue
            replacement: bytes | None = None
            swallow = self._discarding
            if kind == 0x64 and self._copy_out is not None and not swallow:
                try:
                    data = self._copy_out.feed(buf[start + 5 : end])
                except NeedKeys as need:
                    if start > seg:
                        out.append(buf[seg:start])
                    self._server_blocked = True
                    self.actions.append(LoadKeys(need))
                    return buf[start:]
                except Refused as refused:
                    if start > seg:
                        out.append(buf[seg:start])
                    seg = end
                    self._copy_out = None
                    self._row_failed(refused.error)
                    continue
                if start > seg:
                    out.append(buf[seg:start])
                if data:
                    out.append(codec.message(b"d", data))
                seg = end
                continue
            if kind == _T_DATA_ROW:
                if not swallow and pending:
                    state = pending[0][1]
                    if (
                        isinstance(state, PortalState)
                        and state.columns is not None
                        and state.columns.protected
                    ):
                        rows, stop = crypt.data_rows(buf, start, limit, state)
                        if rows:
                            if start > seg:
                                out.append(buf[seg:start])
                            out += rows
                            seg = pos = last = stop
                            continue
                        try:
                            replacement = crypt.data_row(buf[start + 5 : end], state)
                        except NeedKeys as need:
                            if start > seg:
                                out.append(buf[seg:start])
                            self._server_blocked = True
                            self.actions.append(LoadKeys(need))
                            return buf[start:]
                        except Refused as refused:
                            if start > seg:
                                out.append(buf[seg:start])
                            seg = end
                            self._row_failed(refused.error)
                            continue
                    else:
                        # Nothing to open in this result: the rest of its run
                        # of DataRows is framed (and length-checked) and
                        # relayed as it came, without a pass of the loop each.
                        while pos + 5 <= size and buf[pos] == _T_DATA_ROW:
                            (length,) = unpack(buf, pos + 1)
                            if length < 4 or length > limit:
                                raise codec.length_error(length, limit)
                            end = pos + 1 + length
                            if end > size:
                                break
                            pos = last = end
                        if pending[0][0] == COPY_END:  # as after any message
                            pending.popleft()
                        continue
            elif pending:
                head, payload = pending[0]
                if head >= INJECTED_DESCRIBE:  # pgseal's own request: not relayed
                    swallow = True
                if kind == _T_READY:  # first: one per round trip
                    status = _TXN_STATUS.get(buf[start + 5]) if end - start == 6 else None
                    if status is None:
                        raise ProtocolViolation("invalid ReadyForQuery message")
                    self.txn_status = status
                    pending.popleft()
                    # A COPY TO whose request is answered (or skipped after an
                    # error) without a CopyOutResponse: never to be armed.
                    while self._copies_out and all(
                        entry[1] is not self._copies_out[0][0] for entry in pending
                    ):
                        self._copies_out.popleft()
                    if not pending:  # every answer in: new settings are known
                        crypt.settings_settled()
                    self._copy_out = None
                    if self._copy_in is not None and payload is self._copy_in_query:
                        # The COPY ended (an error?) before the client's CopyDone:
                        # whatever CopyData still comes is dropped, never relayed.
                        self._copy_failed = True
                    if head != INJECTED_ABORT:
                        if status == "I":
                            self.portals.clear()
                            crypt.transaction_ended(self._rolled_back)
                            if crypt.catalog_stale:
                                crypt.catalog_stale = False
                                self._client_blocked = True
                                self.actions.append(RefreshCatalog())
                        self._rolled_back = False
                        if self._discarding:
                            self._discarding = False
                            swallow = False
                            if status == "T":
                                # The client saw an error: its transaction must
                                # fail on the server too, not commit later.
                                self.to_server.append(_ABORT_SQL)
                                pending.append((INJECTED_ABORT, None))
                                self.txn_status = "E"
                                replacement = codec.READY_FAILED
                elif kind == _T_ERROR:
                    if head != INJECTED_ABORT:
                        self._server_error(head)
                    self._copy_out = None
                    if head in (REFUSED, REFUSED_QUERY):
                        replacement = cast(bytes, payload)
                    elif self._copy_error is not None:
                        replacement, self._copy_error = self._copy_error, None
                    else:
                        replacement = redact_envelopes(buf[start + 5 : end])
                elif kind == 0x48 and self._copies_out and self._copies_out[0][0] is payload:
                    # CopyOutResponse of a COPY from a protected table.
                    self._copy_out = self._copies_out.popleft()[1]
                elif kind == 0x47 and self._copy_in is not None:
                    replacement = _hide_added_copy_columns(
                        buf[start + 5 : end], self._copy_in.width
                    )
                    self._copy_in_started()
                elif kind == _T_ROW_DESCRIPTION:
                    body = buf[start + 5 : end]
                    replacement, columns, formats = crypt.row_description(body)
                    if head == DESCRIBE_S:
                        described = crypt.statements.get(cast(str, payload))
                        if described is not None:
                            described.columns = columns
                    elif isinstance(payload, PortalState):
                        payload.columns = columns
                        if head == QUERY:
                            payload.result_formats = formats
                        else:
                            described = crypt.statements.get(payload.statement)
                            if described is not None and described.columns is None:
                                described.columns = columns
                    if head in _EXTENDED_DONE:
                        pending.popleft()
                elif kind == _T_PARAMETER_DESCRIPTION:
                    if head == DESCRIBE_S:
                        replacement = crypt.parameter_description(
                            buf[start + 5 : end], cast(str, payload)
                        )
                elif kind == _T_NO_DATA:
                    if isinstance(payload, PortalState):
                        payload.columns = NO_PROTECTED
                    elif head == DESCRIBE_S:
                        described = crypt.statements.get(cast(str, payload))
                        if described is not None:
                            described.columns = NO_PROTECTED
                    if head in _EXTENDED_DONE:
                        pending.popleft()
                elif head in _EXTENDED_DONE:
                    if kind in _EXTENDED_DONE[head]:
                        pending.popleft()
                    elif kind == 0x47:  # CopyInResponse
                        self._copy_in_started()
                elif kind == 0x47:
                    self._copy_in_started()
                if kind == _T_COMMAND_COMPLETE and buf[start + 5 : start + 13] == b"ROLLBACK":
                    self._rolled_back = True
            if swallow or replacement is not None:
                if start > seg:
                    out.append(buf[seg:start])
                if replacement is not None and not swallow:
                    out.append(replacement)
                seg = end
            if pending and pending[0][0] == COPY_END:
                pending.popleft()
        if last > seg:
            out.append(buf[seg:last] if (seg or last != len(buf)) else buf)
        return buf[last:]

    def _row_failed(self, error: bytes) -> None:
        """A result value could not be opened: error now, the rest up to ReadyForQuery dropped."""
        self.to_client.append(error)
        self._discarding = True

    # -- key loading (adapter callbacks) -------------------------------------------------
    def keys_loaded(self) -> None:
        """The keys of the last ``LoadKeys`` are cached: go on where we stopped."""
        client, server = self._client_blocked, self._server_blocked
        self._client_blocked = self._server_blocked = False
        if server:
            self.server_data(b"")
        if client:
            self.client_data(b"")

    def keys_failed(self, error: bytes) -> None:
        """The keys could not be loaded: the waiting message fails with ``error``."""
        client, server = self._client_blocked, self._server_blocked
        self._client_blocked = self._server_blocked = False
        if server:
            self._row_failed(error)
            self.server_data(b"")
        if client and self._cbuf:
            buf = self._cbuf
            for kind, _start, end in codec.frames(buf, 0, self.limits.max_message_size):
                self._cbuf = buf[end:]
                self.refuse(error, simple_query=kind == 0x51)
                break
            self.client_data(b"")

    def _server_error(self, head: int) -> None:
        # An error ends copy-in mode: from now on the server answers Sync again.
        self._copy_in_syncs_ignored = False
        pending = self._pending
        if head in (QUERY, FUNCTION, SYNC, REFUSED_QUERY):
            return  # the ReadyForQuery that follows ends it
        # Extended protocol: Postgres skips to the next Sync.
        while pending and pending[0][0] != SYNC:
            pending.popleft()

    def _copy_in_started(self) -> None:
        # Syncs the client pipelined behind the COPY are ignored by the server.
        # The deque is changed in place: the server loops hold a reference.
        pending = self._pending
        entries = list(pending)
        kept = entries[:1]
        ended = False
        for entry in entries[1:]:
            if not ended and entry[0] == SYNC:
                continue
            if not ended and entry[0] == COPY_END:
                ended = True
                continue
            kept.append(entry)
        pending.clear()
        pending.extend(kept)
        if not ended:
            self._copy_in_syncs_ignored = True

    # -- pgseal's own errors -------------------------------------------------------
    def refuse(self, error: bytes, *, simple_query: bool) -> None:
        """Answer the current message with ``error``, exactly as if Postgres had.

        The refused message never reaches the server; a message that is sure
        to fail there (a syntax error, no side effects) takes its place, and
        the server's error is swapped for ``error``. So the server does what
        it does after any error, and the client sees that: an implicit
        transaction (a pipeline up to Sync, a multi-statement Query) is rolled
        back rather than half committed, a transaction block goes to 'E', and
        the error comes after the responses still in flight. Extended
        protocol: the client's messages up to Sync are dropped, as Postgres
        drops them after an error.
        """
        if simple_query:
            self.to_server.append(_REFUSED_QUERY_MESSAGE)
            self._pending.append((REFUSED_QUERY, error))
        else:
            self.to_server.append(_REFUSED_PARSE)
            self._pending.append((REFUSED, error))
            self._skipping = True

    # -- endings -------------------------------------------------------------------
    def server_closed(self) -> None:
        """The upstream connection is gone."""
        if self.phase is Phase.CLOSED:
            return
        self._fatal(
            "08006",
            "pgseal: lost the connection to the database server",
            hint="The server closed the connection or was restarted; reconnect.",
        )

    def shutdown(self) -> None:
        """pgseal is stopping: tell the client the way Postgres does."""
        self._fatal("57P01", "terminating connection due to administrator command")

    def idle_timeout(self) -> None:
        self._fatal("57P05", "terminating connection due to idle-session timeout")

    def _internal_error(self, exc: Exception) -> None:
        # Only the type and place: the message of an exception may quote data.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"
        log.error("conn %d: internal error %s at %s", self.conn_id, type(exc).__name__, where)
        self._fatal("XX000", "pgseal: internal error; the connection is closed")

    def _fatal(self, code: str, msg: str, hint: str | None = None) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.to_client.append(codec.encode_error(code, msg, severity="FATAL", hint=hint))
        self._close(msg)

    def _close(self, reason: str) -> None:
        self.phase = Phase.CLOSED
        self._pending.clear()
        self.actions.append(Close(reason))


_COLLECT_ABOVE = 1 << 16


def _incomplete_size(buf: bytes) -> int:
    """Size of the typed message ``buf`` starts with if it is far from complete, else 0.

    Only then is it worth collecting reads in a list: small tails are cheaper
    to concatenate. The length was checked against the limit when framed.
    """
    if len(buf) < 5:
        return 0
    want = 1 + int.from_bytes(buf[1:5], "big")
    return want if want - len(buf) >= _COLLECT_ABOVE else 0


def _hide_added_copy_columns(body: bytes, width: int) -> bytes:
    """CopyInResponse as the client's column list has it (without blind-index columns)."""
    count = int.from_bytes(body[1:3], "big")
    if count <= width:
        return codec.message(b"G", body)
    return codec.message(b"G", body[:1] + width.to_bytes(2, "big") + body[3 : 3 + 2 * width])


def _cstr_at(buf: bytes, start: int, end: int) -> str:
    nul = buf.find(b"\x00", start, end)
    if nul < 0:
        raise ProtocolViolation("string is not NUL-terminated")
    return buf[start:nul].decode(errors="surrogateescape")


def _two_cstrs(buf: bytes, start: int, end: int) -> tuple[str, str]:
    first = buf.find(b"\x00", start, end)
    second = buf.find(b"\x00", first + 1, end) if first >= 0 else -1
    if second < 0:
        raise ProtocolViolation("string is not NUL-terminated")
    return (
        buf[start:first].decode(errors="surrogateescape"),
        buf[first + 1 : second].decode(errors="surrogateescape"),
    )
