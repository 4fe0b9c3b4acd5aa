"""The asyncio adapter: sockets, TLS and timers around ``proxy.session``.

Each accepted client gets a ``ClientConnection`` (an asyncio Protocol) and,
once it has sent its startup packet, an ``UpstreamConnection`` to Postgres.
Both feed bytes to the connection's ``Session`` and then ``pump`` it: whatever
the session queued is written with one ``write`` per direction, and its actions
(TLS upgrade, upstream connect, cancel forwarding, close) are carried out.

The accept loop peeks at the first byte of every connection so that direct TLS
(PostgreSQL 17 ``sslnegotiation=direct``: the ClientHello comes first, ALPN
``postgresql``) can be told apart from a startup packet before any byte is
consumed. Flow control is symmetric: a client that does not read pauses
reading from its upstream, and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from crypto.errors import CryptoError
from proxy import codec
from proxy.auth import AuthStore, TerminateConfig, peer_end_point_hash, server_end_point_hash
from proxy.encryption import Encryption
from proxy.metrics import Metrics, start_metrics_server
from proxy.session import (
    Close,
    ConnectUpstream,
    ForwardCancel,
    LoadKeys,
    LookupSecret,
    Phase,
    RefreshCatalog,
    RegisterCancelKey,
    Session,
    SessionLimits,
    StartClientTLS,
)

if TYPE_CHECKING:
    from rules.config import AuthConfig, Config

__all__ = ["Proxy", "ProxySettings", "run", "serve"]

log = logging.getLogger("pgseal.server")

_UPSTREAM_TLS_MODES = ("disable", "prefer", "require", "verify-full")


@dataclass(frozen=True)
class ProxySettings:
    """What the network layer needs, independent of how it was configured."""

    upstream_host: str
    upstream_port: int = 5432
    upstream_database: str | None = None
    upstream_socket_dir: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 6432
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client: str = "disable"  # disable | allow | require
    tls_direct: bool = False
    tls_upstream: str = "prefer"
    tls_upstream_ca: Path | None = None
    max_client_connections: int = 1000
    max_message_size: int = 1 << 30
    idle_timeout: float = 0.0
    startup_timeout: float = 30.0
    connect_timeout: float = 10.0
    shutdown_grace: float = 30.0
    reuse_port: bool = False
    metrics_host: str | None = None
    metrics_port: int = 0
    worker: int | None = None  # index under ``serve --workers N``; None: the only process
    #: None: authentication is relayed (auth.mode: passthrough).
    auth: AuthConfig | None = None
    #: For auth_query (may hold a password: never in the repr).
    service_dsn: str | None = field(default=None, repr=False)
    # Under --workers: this worker's private socket for cancel requests relayed
    # by its siblings, and theirs (unix socket paths in the supervisor's 0700
    # directory).
    cancel_listen: str | None = None
    cancel_peers: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> ProxySettings:
        up, tls, limits = config.upstream, config.tls, config.limits
        return cls(
            upstream_host=up.host,
            upstream_port=up.port,
            upstream_database=up.database,
            upstream_socket_dir=up.unix_socket_dir,
            listen_host=config.listen.host,
            listen_port=config.listen.port,
            tls_cert=tls.cert,
            tls_key=tls.key,
            tls_client=tls.client,
            tls_direct=tls.direct,
            tls_upstream=tls.upstream,
            tls_upstream_ca=tls.upstream_ca,
            max_client_connections=limits.max_client_connections,
            max_message_size=limits.max_message_size,
            idle_timeout=limits.idle_timeout_seconds,
            startup_timeout=limits.startup_timeout_seconds,
            connect_timeout=limits.connect_timeout_seconds,
            shutdown_grace=limits.shutdown_grace_seconds,
            metrics_host=config.metrics_listen.host if config.metrics_listen else None,
            metrics_port=config.metrics_listen.port if config.metrics_listen else 0,
            auth=config.auth if config.auth.mode == "terminate" else None,
            service_dsn=config.service_dsn,
        )


class UpstreamRefused(Exception):
    """The upstream server would not give a new connection what ``tls.upstream`` asks.

    Carries the ErrorResponse a session's client gets (SQLSTATE, message,
    hint); a cancel request only logs the message.
    """

    def __init__(self, sqlstate: str, message: str, hint: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class _CancelTarget:
    secret: bytes = field(repr=False)
    upstream_pid: int
    upstream_secret: bytes = field(repr=False)


class Proxy:
    """Listening socket, live connections and the cancel-key map."""

    def __init__(self, settings: ProxySettings, encryption: Encryption | None = None) -> None:
        self.settings = settings
        self.encryption = encryption
        self.metrics = Metrics()
        if encryption is not None:
            encryption.metrics = self.metrics
        self._catalog_refresh: asyncio.Task[None] | None = None
        self.connections: set[ClientConnection] = set()
        #: Sockets accepted and not yet closed, whatever their stage (waiting for
        #: the first byte, in a TLS handshake, proxying): max_client_connections
        #: counts these, so nothing can hold a socket open without a slot.
        self.open_sockets = 0
        self.cancel_keys: dict[int, _CancelTarget] = {}
        self.client_tls = self._client_tls_context()
        self.upstream_tls = self._upstream_tls_context()
        self.auth_store: AuthStore | None = None
        self.terminate: TerminateConfig | None = None
        if settings.auth is not None:
            self.auth_store = AuthStore(settings.auth, settings.service_dsn)
            self.terminate = TerminateConfig(
                channel_binding=(
                    server_end_point_hash(settings.tls_cert.read_text())
                    if self.client_tls is not None and settings.tls_cert is not None
                    else None
                ),
                mock_seed=self.auth_store.mock_seed,
                upstream_user=settings.auth.upstream_user,
                upstream_password=settings.auth.upstream_password,
            )
        self._ids = itertools.count(1)
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._timer: asyncio.Task[None] | None = None
        self._cancel_server: asyncio.Server | None = None
        self.accepted = 0
        # Accepted sockets not yet a ClientConnection (peek, direct TLS handshake).

    # -- TLS contexts ------------------------------------------------------------
    def _client_tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not (s.tls_cert and s.tls_key) or s.tls_client == "disable":
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(s.tls_cert), str(s.tls_key))
        # Direct TLS clients must negotiate ALPN "postgresql"; offering it is
        # harmless for clients that came through SSLRequest.
        ctx.set_alpn_protocols(["postgresql"])
        return ctx

    def _upstream_tls_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.tls_upstream == "disable":
            return None
        if s.tls_upstream == "verify-full":
            ctx = ssl.create_default_context(
                cafile=str(s.tls_upstream_ca) if s.tls_upstream_ca else None
            )
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            s.listen_host, s.listen_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen = set()
        for family, kind, proto, _canon, addr in infos:
            if addr in seen:
                continue
            seen.add(addr)
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if s.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                sock.close()
                from rules.config import ConfigError

                why = f"cannot listen on {s.listen_host}:{s.listen_port}: {exc.strerror}"
                raise ConfigError("listen", None, why) from None
            sock.listen(1024)
            sock.setblocking(False)
            self._listeners.append(sock)
            loop.add_reader(sock.fileno(), self._on_acceptable, sock)
        self._timer = asyncio.create_task(self._timers())
        if s.cancel_listen is not None:
            with contextlib.suppress(FileNotFoundError):  # left by a worker that died
                os.unlink(s.cancel_listen)
            self._cancel_server = await asyncio.start_unix_server(
                self._relayed_cancel, s.cancel_listen
            )
        if s.worker is None:
            log.info("listening on %s", ", ".join(self.addresses))
        else:
            log.info(
                "worker %d listening on %s",
                s.worker,
                ", ".join(self.addresses),
                extra={"worker": s.worker, "pid": os.getpid()},
            )

    @property
    def addresses(self) -> list[str]:
        out = []
        for sock in self._listeners:
            host, port = sock.getsockname()[:2]
            out.append(f"{host}:{port}")
        return out

    @property
    def port(self) -> int:
        port: int = self._listeners[0].getsockname()[1]
        return port

    def stop_accepting(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(sock.fileno())
                sock.close()
        self._listeners.clear()
        if self._cancel_server is not None:
            self._cancel_server.close()
            self._cancel_server = None

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight work finish up to ``grace``, then close."""
        self._stopping = True
        self.stop_accepting()
        deadline = time.monotonic() + (self.settings.shutdown_grace if grace is None else grace)
        while time.monotonic() < deadline:
            for conn in list(self.connections):
                if conn.session.idle or conn.session.phase is not Phase.READY:
                    conn.terminate()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.terminate()
        if self._timer:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)
        if self.auth_store is not None:
            await self.auth_store.close()

    async def refresh_catalog(self) -> None:
        """Re-read the catalog map (DDL on a configured table went through).

        Concurrent requests share one refresh. A failure keeps the old map and
        is logged: the DBA's DDL made the schema disagree with config.yaml.
        """
        encryption = self.encryption
        if encryption is None:
            return
        if self._catalog_refresh is None or self._catalog_refresh.done():

            async def refresh() -> None:
                try:
                    await encryption.refresh_catalog()
                    log.info("catalog map refreshed after DDL")
                except Exception as exc:
                    log.error("catalog map refresh failed, keeping the old one: %s", exc)

            self._catalog_refresh = asyncio.ensure_future(refresh())
        await asyncio.shield(self._catalog_refresh)

    def spawn(self, coro: Coroutine[object, object, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timers(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.check_timers(now, s)

    # -- accepting ---------------------------------------------------------------------
    def _on_acceptable(self, listener: socket.socket) -> None:
        # Accept everything that is queued; a reader callback instead of
        # sock_accept so that closing the listener never races a pending accept.
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            self.accepted += 1
            self.spawn(self._handle(sock, addr, ConnectionSlot(self)))

    async def _handle(self, sock: socket.socket, addr: object, slot: ConnectionSlot) -> None:
        """Turn an accepted socket into a ``ClientConnection``.

        The slot (``max_client_connections``) was taken at accept, synchronously,
        so a burst of accepts is counted before any of them reaches startup, and
        the startup clock starts there too: a client that sends nothing, or half
        a ClientHello, holds exactly one slot and only until ``startup_timeout``
        after it connected, however it splits its bytes. Whoever closes the
        socket releases the slot: this function on the early exits, the
        ClientConnection once it owns the socket.
        """
        loop = asyncio.get_running_loop()
        over_limit = self.open_sockets > self.settings.max_client_connections
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = next(self._ids)
        deadline = slot.accepted_at + self.settings.startup_timeout
        direct_tls = False
        if self.client_tls is not None and self.settings.tls_direct:
            try:
                first = await asyncio.wait_for(_peek(sock), max(0.0, deadline - time.monotonic()))
            except (TimeoutError, OSError):
                sock.close()
                slot.release()
                return
            direct_tls = first == b"\x16"
        left = deadline - time.monotonic()
        if direct_tls and left <= 0:
            sock.close()
            slot.release()
            return
        try:
            await loop.connect_accepted_socket(
                lambda: ClientConnection(self, conn_id, addr, over_limit, direct_tls, slot),
                sock,
                ssl=self.client_tls if direct_tls else None,
                ssl_handshake_timeout=left if direct_tls else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info(
                "connection %d from %s failed before startup: %s",
                conn_id,
                addr,
                str(exc) or type(exc).__name__,
            )
            sock.close()
            slot.release()

    # -- cancel ---------------------------------------------------------------------
    def register_cancel(self, action: RegisterCancelKey) -> None:
        self.cancel_keys[action.pid] = _CancelTarget(
            action.secret, action.upstream_pid, action.upstream_secret
        )

    def unregister_cancel(self, pid: int, secret: bytes) -> None:
        # Only this connection's own entry: once its backend has exited, Postgres
        # may give the pid to a new backend whose client registered it since.
        target = self.cancel_keys.get(pid)
        if target is not None and target.secret == secret:
            del self.cancel_keys[pid]

    async def forward_cancel(self, request: ForwardCancel, *, relayed: bool = False) -> None:
        target = self.cancel_keys.get(request.pid)
        if target is None:
            if not relayed:
                await self._relay_cancel(request)
            return  # Postgres ignores unknown keys silently; so do we
        if not hmac.compare_digest(target.secret, request.secret):
            return
        cancel = codec.CancelRequest(target.upstream_pid, target.upstream_secret).encode()
        try:
            await asyncio.wait_for(
                self._send_upstream_cancel(cancel), self.settings.connect_timeout
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            log.warning("could not forward a cancel request: %s", str(exc) or type(exc).__name__)
        except UpstreamRefused as exc:
            log.warning("could not forward a cancel request: %s", exc.message)

    async def _send_upstream_cancel(self, cancel: bytes) -> None:
        """Send ``cancel`` on a new upstream connection, inside TLS per ``tls.upstream``.

        The upstream cancel key is as secret as a password for the length of
        the query (whoever has it can cancel the backend's queries), so it takes
        the same path as the session's own traffic: SSLRequest first, then the
        CancelRequest inside TLS (Postgres accepts that, as libpq 17 does it),
        with the same certificate checks. Postgres answers a cancel by closing.
        """
        s = self.settings
        sock = await self._upstream_socket()
        try:
            use_tls = await self.negotiate_upstream_tls(sock)
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(
            sock=sock,
            ssl=self.upstream_tls if use_tls else None,
            server_hostname=s.upstream_host if use_tls else None,
        )
        try:
            writer.write(cancel)
            await writer.drain()
            await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _relay_cancel(self, request: ForwardCancel) -> None:
        """A cancel for a key this worker did not issue goes to every sibling.

        A client sends its CancelRequest on a new connection, which the kernel
        may give to any worker (SO_REUSEPORT); only the worker that issued the
        key knows the backend. Cancels are rare and workers few, so each
        sibling gets it and all but the owner ignore it; a relayed cancel is
        never relayed again.
        """
        packet = codec.CancelRequest(request.pid, request.secret).encode()
        for peer in self.settings.cancel_peers:
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(peer), 2)
                writer.write(packet)
                await writer.drain()
                writer.close()
            except (OSError, TimeoutError) as exc:  # that worker is restarting
                log.debug("could not relay a cancel request to a sibling worker: %s", exc)

    async def _relayed_cancel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            packet = await asyncio.wait_for(reader.read(1024), 2)
            request = codec.decode_startup(packet)
        except (OSError, TimeoutError, codec.ProtocolViolation):
            return
        finally:
            writer.close()
        if isinstance(request, codec.CancelRequest):
            await self.forward_cancel(ForwardCancel(request.pid, request.secret), relayed=True)

    # -- upstream ---------------------------------------------------------------------
    @property
    def upstream_address(self) -> str:
        """Where the upstream is, for error messages (never with credentials)."""
        s = self.settings
        if s.upstream_socket_dir:
            return f"{s.upstream_socket_dir}/.s.PGSQL.{s.upstream_port}"
        return f"{s.upstream_host}:{s.upstream_port}"

    async def connect_upstream(self, conn: ClientConnection) -> None:
        """Open the upstream leg (TLS per ``tls_upstream``) and attach it to ``conn``."""
        s = self.settings
        loop = asyncio.get_running_loop()
        where = self.upstream_address
        try:
            sock = await asyncio.wait_for(self._upstream_socket(), s.connect_timeout)
            try:
                use_tls = await self.negotiate_upstream_tls(sock)
            except BaseException:
                sock.close()
                raise
            server_hostname = s.upstream_host if use_tls else None
            _transport, upstream = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(conn),
                    sock=sock,
                    ssl=self.upstream_tls if use_tls else None,
                    server_hostname=server_hostname,
                ),
                s.connect_timeout,
            )
        except UpstreamRefused as exc:
            conn.upstream_failed(exc.sqlstate, exc.message, exc.hint)
            return
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            reason = (
                f"timed out after {s.connect_timeout:g} s (limits.connect_timeout_seconds)"
                if isinstance(exc, TimeoutError)
                else str(exc) or type(exc).__name__
            )
            conn.upstream_failed(
                "08001",
                f"pgseal: could not connect to the database server at {where}: {reason}",
                "Check 'upstream' in pgseal's config and that PostgreSQL is running.",
            )
            return
        conn.upstream_ready(upstream, use_tls)

    async def negotiate_upstream_tls(self, sock: socket.socket) -> bool:
        """Ask a fresh upstream socket for TLS per ``tls.upstream``; True if TLS follows.

        One place for sessions and cancel requests, so both legs are equally
        protected: ``prefer`` takes TLS when the server offers it, ``require``
        and ``verify-full`` refuse a server that does not. A unix socket is
        local: TLS does not apply to it. Raises ``UpstreamRefused``.
        """
        s = self.settings
        if self.upstream_tls is None or sock.family == socket.AF_UNIX:
            return False
        loop = asyncio.get_running_loop()
        where = self.upstream_address
        await loop.sock_sendall(sock, codec.SSL_REQUEST)
        answer = await asyncio.wait_for(loop.sock_recv(sock, 1), s.connect_timeout)
        if answer == b"S":
            return True
        if not answer:
            raise UpstreamRefused(
                "08001",
                f"pgseal: the database server at {where} closed the connection "
                "before answering (is it starting or shutting down?)",
                "Retry; check that PostgreSQL is running.",
            )
        if answer != b"N":
            raise UpstreamRefused(
                "08P01", f"pgseal: unexpected answer to SSLRequest from {where}", None
            )
        if s.tls_upstream in ("require", "verify-full"):
            raise UpstreamRefused(
                "08001",
                f"pgseal: the database server at {where} does not accept TLS, "
                f"but tls.upstream is '{s.tls_upstream}'",
                "Enable ssl on the server or set tls.upstream to prefer/disable.",
            )
        return False

    async def _upstream_socket(self) -> socket.socket:
        s = self.settings
        loop = asyncio.get_running_loop()
        if s.upstream_socket_dir:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, f"{s.upstream_socket_dir}/.s.PGSQL.{s.upstream_port}")
            except BaseException:
                sock.close()
                raise
            return sock
        infos = await loop.getaddrinfo(s.upstream_host, s.upstream_port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, kind, proto, _canon, addr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise last or OSError("no address for the upstream host")


class ConnectionSlot:
    """One accepted socket's place under ``max_client_connections``, accept to close.

    Released once whichever path closes the socket (a peek that timed out, a
    failed TLS handshake, the connection's end), and a second release is a
    no-op, so no path can leak a slot or free one twice.
    """

    __slots__ = ("_held", "_proxy", "accepted_at")

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._held = True
        #: The startup deadline counts from here, not from the end of a peek or
        #: a TLS handshake, so direct TLS gives a slow client no extra time.
        self.accepted_at = time.monotonic()
        proxy.open_sockets += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._proxy.open_sockets -= 1


async def _peek(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return sock.recv(1, socket.MSG_PEEK)


class ClientConnection(asyncio.Protocol):
    """The client side of one proxied connection."""

    def __init__(
        self,
        proxy: Proxy,
        conn_id: int,
        addr: object,
        over_limit: bool,
        direct_tls: bool,
        slot: ConnectionSlot,
    ) -> None:
        s = proxy.settings
        self.proxy = proxy
        self.conn_id = conn_id
        self.addr = addr
        self.session = Session(
            conn_id,
            limits=SessionLimits(max_message_size=s.max_message_size),
            tls_available=proxy.client_tls is not None and not direct_tls,
            tls_required=s.tls_client == "require" and proxy.client_tls is not None,
            terminate=proxy.terminate,
        )
        self.session.client_tls = direct_tls
        self.session.encryption = proxy.encryption
        self.over_limit = over_limit
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamConnection | None = None
        self.started = slot.accepted_at
        # Stamped by check_timers when bytes_from_client moved since its last
        # look (at most one timer tick late, never early): no clock read per read.
        self.last_activity = time.monotonic()
        self._client_bytes_seen = 0
        self.upstream_since: float | None = None
        self._closed = False
        self._upgrading = False
        self._paused_by_upstream = False
        self._direct_tls = direct_tls
        self._slot = slot

    # -- asyncio callbacks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.proxy.connections.add(self)
        if self._direct_tls:
            ssl_object = transport.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if alpn != "postgresql":
                # As PostgreSQL 17: direct TLS must say it speaks postgresql,
                # so a TLS connection meant for another service is never read as ours.
                self.session._fatal(
                    "08P01",
                    "pgseal: received direct SSL connection request without ALPN protocol "
                    "negotiation extension 'postgresql'",
                )
                self.pump()

    def data_received(self, data: bytes) -> None:
        self.session.client_data(data)
        self.pump()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upgrading:
            return  # start_tls swaps transports; the connection lives on
        self._closed = True
        self.proxy.connections.discard(self)
        self._slot.release()
        metrics = self.proxy.metrics
        metrics.bytes_from_clients += self.session.bytes_from_client
        metrics.bytes_to_clients += self.session.bytes_from_server
        self.proxy.unregister_cancel(self.session.cancel_pid, self.session.cancel_secret)
        if self.upstream is not None:
            self.upstream.close(terminate=self.session.phase is Phase.READY)
        startup = self.session.startup
        log.info(
            "connection closed",
            extra={
                "conn_id": self.conn_id,
                "client": _format_addr(self.addr),
                "user": startup.params.get("user") if startup else None,
                "database": startup.params.get("database") if startup else None,
                "duration_s": round(time.monotonic() - self.started, 3),
                "bytes_in": self.session.bytes_from_client,
                "bytes_out": self.session.bytes_from_server,
            },
        )

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # -- moving bytes ------------------------------------------------------------------
    def pump(self) -> None:
        """Write what the session queued, one write per direction, then act.

        Runs after every read, so it allocates nothing: the chunk lists are
        emptied in place (the transports copy or keep the bytes, never the list).
        It also runs when a key load or a catalog refresh finishes, which may be
        after the client has gone: uvloop raises on a write to a closed
        transport (bench/fuzz saw it as an unhandled task exception), so what
        a closed client would be sent is dropped, and nothing is written to an
        upstream that is closing.
        """
        session = self.session
        chunks = session.to_server
        if chunks:
            upstream = self.upstream
            transport = upstream.transport if upstream is not None else None
            if transport is not None and not transport.is_closing():
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                chunks.clear()
        chunks = session.to_client
        if chunks:
            client = self.transport
            if self._closed:
                chunks.clear()
            elif client is not None:
                if not client.is_closing():
                    client.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                chunks.clear()
        if session.actions:
            actions = session.actions
            session.actions = []
            for action in actions:
                self._act(action)

    def _act(self, action: object) -> None:
        if isinstance(action, ConnectUpstream):
            if self.over_limit:
                self.session._fatal("53300", "sorry, too many clients already")
                self.pump()
                return
            self._log_open(action)
            self.proxy.spawn(self.proxy.connect_upstream(self))
        elif isinstance(action, RegisterCancelKey):
            self.proxy.register_cancel(action)
        elif isinstance(action, StartClientTLS):
            self.proxy.spawn(self._start_tls())
        elif isinstance(action, ForwardCancel):
            self.proxy.spawn(self.proxy.forward_cancel(action))
        elif isinstance(action, LookupSecret):
            self.proxy.spawn(self._lookup_secret(action.user))
        elif isinstance(action, LoadKeys):
            self.proxy.spawn(self._load_keys(action))
        elif isinstance(action, RefreshCatalog):
            self.proxy.spawn(self._refresh_catalog())
        elif isinstance(action, Close):
            self.close()

    async def _lookup_secret(self, user: str) -> None:
        store = self.proxy.auth_store
        assert store is not None
        try:
            secret = await asyncio.wait_for(store.lookup(user), self.proxy.settings.connect_timeout)
        except Exception as exc:  # the login must fail, never hang
            log.error("auth lookup failed: %s: %s", type(exc).__name__, exc)
            self.session.secret_lookup_failed()
        else:
            self.session.secret_found(secret)
        self.pump()

    async def _refresh_catalog(self) -> None:
        # The session holds the client's next messages until the map is fresh,
        # so a column added or moved by the DDL is never read as plain bytes.
        await self.proxy.refresh_catalog()
        self.session.keys_loaded()
        self.pump()

    async def _load_keys(self, action: LoadKeys) -> None:
        encryption = self.proxy.encryption
        assert encryption is not None
        try:
            await encryption.load_keys(action.need)
        except CryptoError as exc:
            self.session.keys_failed(codec.encode_error(exc.sqlstate, f"pgseal: {exc}"))
        except Exception as exc:  # the message must fail, never hang
            log.error("loading keys failed: %s", type(exc).__name__)
            self.session.keys_failed(
                codec.encode_error(
                    "58000",
                    "pgseal: the key store is unreachable; encrypted values cannot be used now",
                )
            )
        else:
            self.session.keys_loaded()
        self.pump()

    def _log_open(self, action: ConnectUpstream) -> None:
        extra: dict[str, object] = {
            "conn_id": self.conn_id,
            "client": _format_addr(self.addr),
            "user": action.startup.params.get("user"),
            "database": action.startup.params.get("database"),
            "tls": self.session.client_tls,
        }
        if self.proxy.settings.worker is not None:
            # conn_id counts per process: the pid tells the workers' lines apart.
            extra["pid"] = os.getpid()
        log.info("connection opened", extra=extra)

    async def _start_tls(self) -> None:
        assert self.transport is not None
        assert self.proxy.client_tls is not None
        loop = asyncio.get_running_loop()
        self._upgrading = True
        # The handshake spends the startup time left, so SSLRequest plus a
        # stalled handshake cannot hold the slot past the startup deadline.
        left = self.started + self.proxy.settings.startup_timeout - time.monotonic()
        try:
            transport = await loop.start_tls(
                self.transport,
                self,
                self.proxy.client_tls,
                server_side=True,
                ssl_handshake_timeout=max(left, 0.01),
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("TLS handshake with client %s failed: %s", _format_addr(self.addr), exc)
            self._upgrading = False
            if self.transport:
                self.transport.abort()
            self.connection_lost(None)
            return
        self._upgrading = False
        if transport is None:
            self.connection_lost(None)
            return
        self.transport = transport

    def upstream_ready(self, upstream: UpstreamConnection, tls: bool) -> None:
        if self._closed:
            upstream.close(terminate=False)
            return
        self.upstream = upstream
        self.upstream_since = time.monotonic()
        self.session.upstream_tls = tls
        if tls and upstream.transport is not None:
            self.session.upstream_cert_hash = peer_end_point_hash(
                upstream.transport.get_extra_info("ssl_object")
            )
        self.session.server_connected()
        self.pump()

    def upstream_failed(self, code: str, msg: str, hint: str | None) -> None:
        log.warning("conn %d: %s", self.conn_id, msg)
        self.proxy.metrics.upstream_errors += 1
        self.session._fatal(code, msg, hint)
        self.pump()

    def upstream_lost(self) -> None:
        if self.session.phase is not Phase.CLOSED:
            self.proxy.metrics.upstream_errors += 1
        self.session.server_closed()
        self.pump()

    def check_timers(self, now: float, settings: ProxySettings) -> None:
        """Enforce the limits' timeouts (called every half second).

        The startup deadline counts from accept, not from the last byte, so a
        client that dribbles a startup packet (slowloris) holds its one slot
        for ``startup_timeout`` at most. An upstream that accepted TCP but has
        not said a word within ``connect_timeout`` of getting the startup
        packet is as unreachable as one that refuses: the client is told so
        instead of waiting for the whole startup timeout.
        """
        received = self.session.bytes_from_client
        if received != self._client_bytes_seen:
            self._client_bytes_seen = received
            self.last_activity = now
        phase = self.session.phase
        if (
            phase is Phase.AUTH
            and self.upstream_since is not None
            and self.session.bytes_from_server == 0
            and now - self.upstream_since > settings.connect_timeout
        ):
            self.upstream_failed(
                "08001",
                f"pgseal: the database server at {self.proxy.upstream_address} accepted the "
                f"connection but did not answer within {settings.connect_timeout:g} s "
                "(limits.connect_timeout_seconds)",
                "Check that PostgreSQL is running and not overloaded.",
            )
        elif phase in (Phase.STARTUP, Phase.CONNECTING, Phase.AUTH):
            if now - self.started > settings.startup_timeout:
                self.session._fatal("08006", "pgseal: timeout waiting for startup to complete")
                self.pump()
        elif (
            settings.idle_timeout > 0
            and self.session.idle
            and now - self.last_activity > settings.idle_timeout
        ):
            self.session.idle_timeout()
            self.pump()

    def terminate(self) -> None:
        """Close with an administrator-shutdown error (SIGTERM)."""
        self.session.shutdown()
        self.pump()

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close(terminate=False)


class UpstreamConnection(asyncio.Protocol):
    """The Postgres side of one proxied connection."""

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.session.server_data(data)
        client.pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._closing:
            self.client.upstream_lost()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self, *, terminate: bool) -> None:
        self._closing = True
        if self.transport is not None:
            if terminate:
                self.transport.write(codec.TERMINATE)
            self.transport.close()


def _format_addr(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr) if addr else "unix"


async def serve(
    settings: ProxySettings,
    *,
    started: Callable[[Proxy], None] | None = None,
    stop: asyncio.Event | None = None,
    reload: Callable[[Proxy], None] | None = None,
    encryption: Encryption | None = None,
) -> None:
    """Run a proxy until ``stop`` is set or SIGTERM/SIGINT arrives."""
    proxy = Proxy(settings, encryption)
    metrics_server = None
    if settings.metrics_host is not None:
        # Before the client port opens: whoever sees pgseal accept clients can
        # scrape it (a test or an orchestrator waiting on the port).
        metrics_server = await start_metrics_server(
            proxy, settings.metrics_host, settings.metrics_port
        )
    try:
        await proxy.start()
    except BaseException:
        if metrics_server is not None:
            metrics_server.close()
        raise
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        if reload is not None:
            loop.add_signal_handler(signal.SIGHUP, lambda: reload(proxy))
            installed.append(signal.SIGHUP)
    if started is not None:
        started(proxy)
    try:
        await stop.wait()
        log.info("shutting down: waiting up to %ss for in-flight queries", settings.shutdown_grace)
        await proxy.shutdown()
    finally:
        if metrics_server is not None:
            metrics_server.close()
        for sig in installed:
            loop.remove_signal_handler(sig)


def run(
    config: Config, *, workers: int = 1, worker: int | None = None, rundir: str | None = None
) -> int:
    """Blocking entry point of ``pgseal serve``.

    ``workers > 1`` hands over to the supervisor (``proxy.workers``), which
    calls this again in each forked worker with ``worker`` set (and
    ``workers`` the total): the listen socket is then shared (SO_REUSEPORT), a
    metrics port other than 0 is offset by the worker's index so that each
    worker can be scraped, and cancel requests are relayed between workers
    through unix sockets in ``rundir``.
    """
    if workers > 1 and worker is None:
        from proxy.workers import run_workers

        _disable_core_dumps()
        return run_workers(config, workers)
    settings = ProxySettings.from_config(config)
    if worker is not None:
        settings = replace(
            settings,
            worker=worker,
            reuse_port=True,
            metrics_port=settings.metrics_port + worker if settings.metrics_port else 0,
            cancel_listen=_cancel_address(rundir, worker) if rundir else None,
            cancel_peers=tuple(
                _cancel_address(rundir, i) for i in range(workers) if i != worker and rundir
            ),
        )
    source = config.source

    def reload(proxy: Proxy) -> None:
        if source is None:
            return
        from rules.config import ConfigError

        try:
            fresh = config.reload()
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        new = ProxySettings.from_config(fresh)
        # Addresses and TLS need a restart; limits apply to new work at once.
        proxy.settings = replace(
            proxy.settings,
            max_client_connections=new.max_client_connections,
            idle_timeout=new.idle_timeout,
            startup_timeout=new.startup_timeout,
            connect_timeout=new.connect_timeout,
            shutdown_grace=new.shutdown_grace,
        )
        logging.getLogger("pgseal").setLevel(fresh.log_level.upper())
        if proxy.encryption is not None:
            proxy.spawn(proxy.encryption.reload_rules(fresh.rules))
        elif fresh.rules.tables:
            log.warning("encrypted tables were added: restart pgseal to start encrypting")
        log.info("configuration reloaded from %s", source)

    async def main() -> None:
        encryption = await Encryption.start(config) if config.rules.tables else None
        if encryption is not None:
            log.info(
                "column encryption on: %d tables, %d columns",
                len(config.rules.tables),
                sum(len(t.columns) for t in config.rules.tables.values()),
            )
        try:
            await serve(settings, reload=reload, encryption=encryption)
        finally:
            if encryption is not None:
                await encryption.close()

    _disable_core_dumps()
    _install_uvloop()
    asyncio.run(main())
    return 0


def _cancel_address(rundir: str, worker: int) -> str:
    return f"{rundir}/cancel-{worker}.sock"


def _disable_core_dumps() -> None:
    """A core dump would hold the master key and decrypted data keys: none are written."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on Linux
        log.warning("could not disable core dumps")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - not on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
