"""Loopback servers between the client and what it talks to: an HTTP proxy, a TLS front,
and a relay that can hold what is sent through it.

`ForwardingProxy` serves both ways a client uses an HTTP proxy: absolute-form requests
(``GET http://host:port/path``), forwarded to the origin, and ``CONNECT host:port``, a tunnel.
It records the head of every request it is sent. `TLSFront` serves TLS with a certificate of
a test CA and relays the plaintext to the emulator, recording every byte that reached it.
`HeldRelay` relays TCP to a port (a Redis server's), holding what the client sends while its
`Gate` is closed: a server that has become slow, at the moment a test chooses.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType
from typing import Self

import aiohttp
import attrs
import trustme
from yarl import URL

# Headers meant for the proxy alone: a proxy drops them before it forwards a request.
_HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


@attrs.frozen
class SeenRequest:
    """The head of one request a proxy was sent; header names in lower case."""

    method: str
    target: str
    headers: dict[str, str]


def _parse_head(head: bytes) -> SeenRequest:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return SeenRequest(method, target, headers)


class Gate:
    """Bytes pass while it is open; ``held`` is set once some wait at it, closed."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.held = asyncio.Event()

    def close(self) -> None:
        self._open.clear()
        self.held.clear()

    def open(self) -> None:
        self._open.set()

    async def through(self) -> None:
        if not self._open.is_set():
            self.held.set()
            await self._open.wait()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    record: bytearray | None,
    gate: Gate | None = None,
) -> None:
    try:
        while data := await reader.read(65536):
            if record is not None:
                record += data
            if gate is not None:
                await gate.through()
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    record: bytearray | None = None,
    gate: Gate | None = None,
) -> None:
    async with asyncio.TaskGroup() as group:
        group.create_task(_pump(reader, upstream[1], record, gate))
        group.create_task(_pump(upstream[0], writer, None))


class _LoopbackServer:
    """An asyncio server on a free loopback port whose connections end with it."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0, ssl=self._ssl)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.serve(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ForwardingProxy(_LoopbackServer):
    """An HTTP proxy: forwards absolute-form requests and opens CONNECT tunnels.

    With ``credentials``, a request without the matching ``Proxy-Authorization`` is answered
    ``407 Proxy Authentication Required``. Forwarded requests lose the hop-by-hop headers,
    ``Proxy-Authorization`` among them, as a proxy's do.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.seen: list[SeenRequest] = []
        self._expected = aiohttp.encode_basic_auth(*credentials) if credentials else None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request = _parse_head(head)
        self.seen.append(request)
        if self._expected is not None and (
            request.headers.get("proxy-authorization") != self._expected
        ):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if request.method == "CONNECT":
            host, _, port = request.target.rpartition(":")
            upstream = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _splice(reader, writer, upstream)
            return
        target = URL(request.target)
        assert target.host is not None
        assert target.port is not None
        up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
        try:
            await self._forward(request, target, writer, (up_reader, up_writer))
        finally:
            up_writer.close()

    async def _forward(
        self,
        request: SeenRequest,
        target: URL,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        up_reader, up_writer = upstream
        kept = "".join(
            f"{name}: {value}\r\n"
            for name, value in request.headers.items()
            if name not in _HOP_BY_HOP
        )
        # One request per connection, both ways: the client must not reuse this one.
        up_writer.write(
            f"{request.method} {target.raw_path_qs} HTTP/1.1\r\n{kept}Connection: close\r\n\r\n".encode(
                "latin-1"
            )
        )
        await up_writer.drain()
        response_head = await up_reader.readuntil(b"\r\n\r\n")
        lines = response_head.decode("latin-1").split("\r\n")
        lines = [
            line for line in lines if not line.lower().startswith(("connection:", "keep-alive:"))
        ]
        writer.write(("\r\n".join(lines[:-2]) + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
        await _pump(up_reader, writer, None)


class TLSFront(_LoopbackServer):
    """``https://127.0.0.1:PORT`` with a certificate of `ca`, relayed as plaintext to
    ``upstream_port``; ``received`` holds every decrypted byte the clients sent."""

    def __init__(self, upstream_port: int) -> None:
        self.ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        super().__init__(context)
        self.received = bytearray()
        self._upstream_port = upstream_port

    @property
    def base_url(self) -> str:
        """The origin to give the client."""
        return f"https://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the system's CAs and `ca`."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        await _splice(reader, writer, upstream, self.received)


class HeldRelay(_LoopbackServer):
    """Relays TCP to ``127.0.0.1:upstream_port``; what a client sends waits while `gate` is
    closed (what comes back is never held)."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self._upstream_port = upstream_port
        self.gate = Gate()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        try:
            await _splice(reader, writer, upstream, gate=self.gate)
        finally:
            upstream[1].close()
