"""A ROUTER that answers requests on a thread pool, to authenticated peers only.

One thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe).  Each valid request is
handed to a worker thread; the worker pushes its reply back over an ``inproc`` PUSH/PULL pair and
the socket thread routes it to the peer.  ``ROUTER_MANDATORY`` makes a reply to a vanished peer
raise instead of vanishing silently; it is logged and dropped.  ``MAXMSGSIZE`` disconnects a peer
that sends an oversized message.

With :class:`~libdcron.transport.keys.Security`, the socket is a CurveZMQ server: a peer whose key
the :class:`~libdcron.transport.zap.ZapHandler` does not know never gets a message through, and a
peer with a client key is refused the node commands.

Nothing a peer sends can stop the loop: a failure while handling one message is logged and the
next message is read; should the loop itself fail, it is restarted (:attr:`RouterServer.restarts`
counts that).
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import zmq
import zmq.utils.monitor

from ..abc import Handler
from ..errors import DcronError, ForbiddenError, ProtocolError
from . import protocol
from .keys import TRUSTED, Peer, Security
from .ratelimit import RateLimitedLog
from .zap import DOMAIN, ZapHandler

log = logging.getLogger(__name__)

HANDSHAKE_FAILURES = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


class RouterServer:
    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        handler: Handler,
        threads: int = 16,
        security: Security | None = None,
    ) -> None:
        self._ctx = context
        self._handler = handler
        self._security = security
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dcron-req")
        self._inproc = f"inproc://dcron-replies-{uuid.uuid4().hex}"
        self._local = threading.local()
        self._pushers: list[zmq.Socket[bytes]] = []
        self._pushers_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._zap: ZapHandler | None = None
        self._warn = RateLimitedLog(log)
        self._warn_handshake = RateLimitedLog(log)
        self.endpoint = ""
        #: How many times the socket loop failed and was restarted.
        self.restarts = 0

    def start(self, bind: str) -> str:
        if self._security is not None and self._security.trust is not None:
            self._zap = ZapHandler(self._ctx, self._security.trust)
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        router.setsockopt(zmq.LINGER, 0)
        monitor: zmq.Socket[bytes] | None = None
        if self._zap is not None:
            assert self._security is not None and self._security.trust is not None
            router.curve_server = True
            router.curve_secretkey = self._security.trust.cluster.secret
            router.zap_domain = DOMAIN
            monitor = router.get_monitor_socket(HANDSHAKE_FAILURES)
        router.bind(bind)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        pull = self._ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(self._inproc)
        self._thread = threading.Thread(
            target=self._supervise, args=(router, pull, monitor), name="dcron-router", daemon=True
        )
        self._thread.start()
        return self.endpoint

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._pushers_lock:
            for sock in self._pushers:
                sock.close(linger=0)
            self._pushers.clear()
        if self._zap is not None:
            self._zap.stop()

    @property
    def denied(self) -> int:
        """Connections refused because of an unknown key."""
        return self._zap.denied if self._zap is not None else 0

    # -- socket thread ------------------------------------------------------------------------

    def _supervise(
        self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes], monitor: zmq.Socket[bytes] | None
    ) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._loop(router, pull, monitor)
                except Exception:
                    self.restarts += 1
                    log.exception("the router loop failed; restarting it")
                    self._stop.wait(0.05)
        finally:
            if monitor is not None:
                router.disable_monitor()
                monitor.close(linger=0)
            router.close(linger=0)
            pull.close(linger=0)

    def _loop(
        self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes], monitor: zmq.Socket[bytes] | None
    ) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                events = dict(poller.poll(200))
            except zmq.ZMQError as exc:  # interrupted; keep serving
                log.warning("poll failed: %s", exc)
                continue
            if pull in events:
                self._drain_replies(router, pull)
            if router in events:
                self._accept(router)
            if monitor is not None and monitor in events:
                self._drain_monitor(monitor)

    def _drain_replies(self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send_now(router, frames)

    def _drain_monitor(self, monitor: zmq.Socket[bytes]) -> None:
        while True:
            try:
                event = zmq.utils.monitor.recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._warn_handshake(
                logging.WARNING,
                "a peer failed the CurveZMQ handshake on %s (it sent no keys or the wrong server key)",
                event.get("endpoint", b"?").decode(errors="replace")
                if isinstance(event.get("endpoint"), bytes)
                else event.get("endpoint"),
            )

    def _accept(self, router: zmq.Socket[bytes]) -> None:
        for _ in range(1000):  # then let replies out
            try:
                frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._route(router, frames)
            except Exception:  # one bad message never stops the others
                log.exception("failed to handle a message; dropping it")

    def _peer(self, frame: zmq.Frame) -> Peer | None:
        if self._zap is None:
            return TRUSTED
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            return None
        role, _, name = str(user).partition(":")
        return Peer(role, name) if role and name else None

    def _route(self, router: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        peer = self._peer(frames[-1])
        raw = [f.bytes for f in frames]
        identity = raw[0]
        # REQ peers put an empty delimiter before the message; tolerate DEALERs without one.
        message = raw[2:] if len(raw) > 1 and raw[1] == b"" else raw[1:]
        envelope = [identity, b""]
        if peer is None:
            self._warn(logging.WARNING, "dropped a message without an authenticated peer")
            return
        try:
            command, body = protocol.decode_request(message)
            if command in protocol.NODE_COMMANDS and not peer.is_node:
                raise ForbiddenError(
                    f"{command.name} is for nodes only; client key {peer.name!r} may not send it"
                )
        except (ProtocolError, ForbiddenError) as exc:
            self._warn(logging.WARNING, "rejected a message from %s %s: %s", peer.role, peer.name, exc)
            self._send_now(router, envelope + protocol.encode_error(exc))
            return
        self._pool.submit(self._handle, envelope, command, body)

    def _send_now(self, router: zmq.Socket[bytes], frames: list[bytes]) -> None:
        try:
            router.send_multipart(frames)
        except zmq.ZMQError as exc:
            log.info("reply dropped, the peer is gone: %s", exc)

    # -- worker threads -----------------------------------------------------------------------

    def _handle(self, envelope: list[bytes], command: protocol.Command, body: dict[str, object]) -> None:
        try:
            result = self._handler(command.name, body)  # type: ignore[arg-type]
            frames = protocol.encode_reply(result)
        except DcronError as exc:
            log.info("%s failed: %s", command.name, exc)
            frames = protocol.encode_error(exc)
        except BaseException as exc:  # a handler bug must not kill the node; say so and go on
            log.exception("%s crashed", command.name)
            frames = protocol.encode_error(exc)
        if len(frames[2]) > protocol.MAX_BODY:
            frames = protocol.encode_error(DcronError("reply too large; ask for a smaller page"))
        try:
            self._pusher().send_multipart(envelope + frames)
        except zmq.ZMQError as exc:
            log.info("reply to %s dropped: %s", command.name, exc)

    def _pusher(self) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self._inproc)
            self._local.sock = sock
            with self._pushers_lock:
                self._pushers.append(sock)
        return sock
