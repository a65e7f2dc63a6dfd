"""The transport: uvicorn with a deadline on each request's headers, the app warmed up and the garbage collector
kept out of the latency, the gRPC server on the same event loop; and the check that an address is free before
a model is loaded."""

import asyncio
import contextlib
import gc
import json
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from imagerec.errors import UserError
from imagerec.serve.app import create_app
from imagerec.serve.limits import MAX_HEADER_BYTES, ServeLimits

LOGGER = logging.getLogger("uvicorn.error")  # uvicorn's logger: its handler prints at info level


def run_server(classifier, host: str = "127.0.0.1", port: int = 8500, name: str = "cifar10",
               limits: ServeLimits | None = None, grpc_port: int | None = None) -> None:
    """Run the service until interrupted (uvicorn, one process; the model on its own thread), and TF Serving's
    gRPC API on `grpc_port` if given, on the same event loop."""
    import uvicorn

    limits = limits or ServeLimits()
    app = create_app(classifier, name, limits)
    app.state.batcher.warm_up(classifier.input_shape)
    # TensorFlow and the model leave ~400,000 Python objects that every full garbage collection would walk
    # (~160 ms here, stalling all requests: it was the p95 latency). Freeze them out of the collector.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False, loop="asyncio",
                            http=header_deadline_protocol(limits.read_timeout_s),
                            timeout_keep_alive=limits.keep_alive_s, limit_concurrency=limits.max_connections,
                            h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    asyncio.run(_serve(uvicorn.Server(config), app.state, host, grpc_port))


async def _serve(server, state, host: str, grpc_port: int | None) -> None:
    """uvicorn until it is stopped (Ctrl-C, SIGTERM), and the gRPC server beside it."""
    grpc_server = None
    if grpc_port is not None:
        from imagerec.serve import tf_serving_grpc

        grpc_server = await tf_serving_grpc.start(state, host, grpc_port)
        LOGGER.info("TF Serving gRPC API on %s:%d", host, grpc_port)
    try:
        await server.serve()
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=1.0)
        if getattr(state, "processes", None) is not None:  # the JSON parsing processes, if any started
            state.processes.shutdown(wait=False, cancel_futures=True)


def header_deadline_protocol(read_timeout_s: float):
    """uvicorn's h11 protocol class with a `read_timeout_s` deadline on each request's line and headers."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"read_timeout_s": read_timeout_s})


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's request line and headers.

    uvicorn closes idle keep-alive connections, but has no deadline for a request whose headers never finish:
    a client that sends half a request line, or drips one byte at a time (slowloris), holds its connection
    forever. Here a connection has `read_timeout_s` from its opening, or from its previous response, until its
    next request's headers are complete; then it is answered 408 and closed. The body's deadline is
    RequestGuard's.
    """

    read_timeout_s = ServeLimits().read_timeout_s
    _header_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_deadline()

    def handle_events(self):
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm_header_deadline()

    def on_response_complete(self):
        self._arm_header_deadline()  # for the next request on this keep-alive connection
        super().on_response_complete()

    def connection_lost(self, exc):
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self):
        self._disarm_header_deadline()
        self._header_timer = self.loop.call_later(self.read_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def send_400_response(self, msg: str):
        """uvicorn's answer to what h11 cannot parse (a malformed request, headers over MAX_HEADER_BYTES as they
        arrive), as JSON like every other error."""
        body = json.dumps({"error": f"invalid HTTP request: malformed, or its headers over "
                                    f"{MAX_HEADER_BYTES // 1024} KiB"}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _headers_too_slow(self):
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request came: say why it is cut off
            body = json.dumps({"error": f"the request's headers did not arrive within {self.read_timeout_s:g} s"})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode()))
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()


def check_address_free(host: str, port: int, option: str = "port") -> None:
    """UserError when this process cannot listen on host:port (a name that does not resolve, a busy port);
    `option` is the argument the port came from, for the message."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UserError(f"`{option}` must be a port number from 1 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"cannot listen on {host}: {error.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
