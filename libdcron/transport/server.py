"""A ROUTER that answers requests on a thread pool.

One thread owns the ROUTER socket (ZeroMQ sockets are not thread-safe).  Each valid request is
handed to a worker thread; the worker pushes its reply back over an ``inproc`` PUSH/PULL pair and
the socket thread routes it to the peer.  ``ROUTER_MANDATORY`` makes a reply to a vanished peer
raise instead of vanishing silently; it is logged and dropped.  ``MAXMSGSIZE`` disconnects a peer
that sends an oversized message.  Nothing a peer sends can stop the loop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import zmq

from ..abc import Handler
from ..errors import DcronError, ProtocolError
from . import protocol

log = logging.getLogger(__name__)


class RouterServer:
    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], handler: Handler, threads: int = 16) -> None:
        self._ctx = context
        self._handler = handler
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dcron-req")
        self._inproc = f"inproc://dcron-replies-{uuid.uuid4().hex}"
        self._local = threading.local()
        self._pushers: list[zmq.Socket[bytes]] = []
        self._pushers_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    def start(self, bind: str) -> str:
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(bind)
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        pull = self._ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(self._inproc)
        self._thread = threading.Thread(
            target=self._loop, args=(router, pull), name="dcron-router", daemon=True
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

    # -- socket thread ------------------------------------------------------------------------

    def _loop(self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        try:
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
        finally:
            router.close(linger=0)
            pull.close(linger=0)

    def _drain_replies(self, router: zmq.Socket[bytes], pull: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                router.send_multipart(frames)
            except zmq.ZMQError as exc:
                log.info("reply dropped, the peer is gone: %s", exc)

    def _accept(self, router: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = frames[0]
            # REQ peers put an empty delimiter before the message; tolerate DEALERs without one.
            if len(frames) > 1 and frames[1] == b"":
                envelope, message = [identity, b""], frames[2:]
            else:
                envelope, message = [identity, b""], frames[1:]
            try:
                command, body = protocol.decode_request(message)
            except ProtocolError as exc:
                log.warning("rejected a malformed message: %s", exc)
                self._send_now(router, envelope + protocol.encode_error(exc))
                continue
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
        except Exception as exc:  # a handler bug must not kill the node; say so and go on
            log.exception("%s crashed", command.name)
            frames = protocol.encode_error(exc)
        if len(frames[2]) > protocol.MAX_BODY:
            frames = protocol.encode_error(DcronError("reply too large; ask for a smaller page"))
        self._pusher().send_multipart(envelope + frames)

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
