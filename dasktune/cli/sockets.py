"""Reading what a server says, with the standard library's sockets and a deadline.

:mod:`dasktune.cli.probe` needs to know what answers at an address before distributed is
handed it, and distributed's connect cannot tell it: it waits for the scheduler's handshake
with no deadline. So this module resolves, connects and reads with raw standard-library
sockets, each step bounded by the same ``time.monotonic()`` deadline, and names what it
heard as a :class:`Finding`; ``probe`` judges it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
import socket
import ssl
import struct
import threading
import time
from typing import Any
from typing import Literal

#: The port ``dask scheduler`` listens on unless started with ``--port``.
SCHEDULER_PORT = 8786
#: Where a Dask dashboard says which scheduler it shows (distributed.http.scheduler.json).
IDENTITY_PATH = "/json/identity.json"
#: The longest wait for a greeting before asking a silent server what it is. A Dask
#: scheduler greets within milliseconds; a slower one is still known by its greeting, which
#: then comes back instead of an answer to the web request (it logs the request as a
#: connection closed before its handshake completed).
GREETING_SECONDS = 0.5
#: Most bytes read from a server that is not a Dask scheduler (a web page, say).
READ_LIMIT = 1 << 16

Kind = Literal["dask", "web", "tls", "tls-refused", "untrusted", "closed", "silent", "other"]


class AddressError(Exception):
    """The scheduler address leads to no Dask scheduler this client can use; the message
    is one line saying what answers there and what to pass instead."""


# -- what a server says ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """What a server did when connected to: its ``kind``; for a web server or an unknown
    service the words that name it (``detail``); for a dashboard, its scheduler's address;
    ``clear``: found in the clear where TLS was asked for."""

    kind: Kind
    detail: str = ""
    scheduler: str | None = None
    clear: bool = False


def look(places: list[Place], deadline: float) -> Finding:
    """What answers in the clear at ``places``."""
    with _connect(places, deadline) as sock:
        return _listen(sock, deadline)


def _listen(sock: socket.socket, deadline: float) -> Finding:
    """What the server at the other end of ``sock`` is: a Dask scheduler greets at once; a
    silent server is asked for a dashboard's identity, which a web server answers."""
    heard, ended = _read(sock, min(deadline, time.monotonic() + GREETING_SECONDS), _greeting)
    if heard and _greeting(heard):
        # Its own handshake back: to the scheduler, a client that came and left (a debug
        # line in its log) rather than a connection broken off mid-handshake (an INFO line).
        sock.sendall(heard)
        return Finding("dask")
    if not heard and not ended:
        try:
            sock.sendall(_web_request(*sock.getpeername()[:2]))
        except OSError:
            return Finding("closed")
        heard, ended = _read(sock, deadline, _complete)
    return _classify(heard, ended)


def look_tls(places: list[Place], deadline: float, context: ssl.SSLContext | None) -> Finding:
    """What answers at ``places`` to a TLS client with ``context`` (without one: whether
    TLS is spoken there at all)."""
    # A TLS server answers a hello at once; a web server takes it for the start of a request
    # and waits for the rest. Half the time left goes to the hello, half to asking in the clear.
    hello_until = time.monotonic() + _left(deadline) / 2
    try:
        with _connect(places, deadline) as raw, (context or unverified()).wrap_socket(
            raw, do_handshake_on_connect=False
        ) as tls:
            tls.settimeout(_timeout(hello_until))
            tls.do_handshake()
            tls.settimeout(_timeout(deadline))
            if context is None:
                return Finding("tls")
            return _listen(tls, deadline)
    except ssl.SSLCertVerificationError as e:
        return Finding("untrusted", e.verify_message or str(e))
    except ssl.SSLError as e:
        reason = e.reason or str(e)
        if "ALERT" in reason:  # the server speaks TLS, and said no to this client
            return Finding("tls" if context is None else "tls-refused", reason.lower().replace("_", " "))
    except (socket.timeout, TimeoutError, ConnectionError):
        pass
    # No TLS there: say what answers in the clear.
    found = look(places, deadline)
    return Finding(found.kind, found.detail, found.scheduler, clear=True)


def tls_hello(places: list[Place], deadline: float) -> Finding | None:
    """``Finding("tls")`` if a TLS server answers a hello at ``places``, else ``None``."""
    try:
        with _connect(places, deadline) as raw:
            raw.settimeout(_timeout(deadline))
            with unverified().wrap_socket(raw):
                return Finding("tls")
    except ssl.SSLError as e:
        return Finding("tls") if "ALERT" in (e.reason or "") else None
    except (AddressError, OSError):
        return None


def ask_web(places: list[Place], port: int, deadline: float, context: ssl.SSLContext | None) -> Finding:
    """A web server's answer to a request for a Dask dashboard's identity."""
    places = [(*p[:4], (p[4][0], port, *p[4][2:])) for p in places]
    with _connect(places, deadline) as raw:
        raw.settimeout(_timeout(deadline))
        with context.wrap_socket(raw) if context is not None else raw as sock:
            sock.sendall(_web_request(places[0][4][0], port))
            return _classify(*_read(sock, deadline, _complete))


def _classify(heard: bytes, ended: bool) -> Finding:
    if not heard:
        return Finding("closed" if ended else "silent")
    if _greeting(heard):
        return Finding("dask")
    if heard.startswith(b"HTTP/"):
        head, _, body = heard.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        scheduler = None
        try:
            identity = json.loads(body)
            if identity.get("type") == "Scheduler" and isinstance(identity.get("address"), str):
                scheduler = identity["address"]
        except (ValueError, AttributeError):
            pass
        return Finding("web", f"it answered {status!r}", scheduler)
    if heard[:1] in (b"\x15", b"\x16") and heard[1:2] == b"\x03":  # a TLS alert or handshake record
        return Finding("tls")
    return Finding("other", _preview(heard))


def _greeting(heard: bytes) -> bool | None:
    """Whether ``heard`` begins as Dask's TCP handshake does: a length, a frame count,
    the frame lengths adding up, and a msgpack map. ``None``: too few bytes to tell."""
    if len(heard) < 16:
        return None
    total, frames = struct.unpack_from("QQ", heard)
    if not 16 <= total <= READ_LIMIT or not 1 <= frames <= 64 or total < 8 + 8 * frames:
        return False
    if len(heard) < 24 + 8 * frames:
        return None
    lengths = struct.unpack_from(f"{frames}Q", heard, 16)
    if sum(lengths) != total - 8 - 8 * frames:
        return False
    first = heard[16 + 8 * frames]
    return 0x80 <= first <= 0x8F or first in (0xDE, 0xDF)


def _complete(heard: bytes) -> bool | None:
    """Whether a server's answer to the web request is all here (or is no web answer)."""
    if _greeting(heard):
        return True
    if not heard.startswith(b"HTTP/"[: len(heard)]):
        return True  # not a web server: what came is enough to name it
    head, sep, body = heard.partition(b"\r\n\r\n")
    if not sep:
        return None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value) or None
    return None  # HTTP/1.0: the server closes when done


def _preview(heard: bytes) -> str:
    """A few of ``heard``'s first bytes, as a person can read them."""
    text = heard[:40].split(b"\r\n", 1)[0]
    if text and all(32 <= b < 127 for b in text):
        return repr(text.decode("ascii"))
    return f"{len(heard)} bytes starting {heard[:8].hex(' ')}"


def _web_request(host: str, port: int) -> bytes:
    host = f"[{host}]" if ":" in host else host
    return f"GET {IDENTITY_PATH} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()


def unverified() -> ssl.SSLContext:
    """A TLS client context that checks nothing: it only asks whether TLS is spoken (and,
    at a web address, for the public identity page); nothing secret goes through it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- sockets with a deadline -----------------------------------------------------------

Place = tuple[Any, ...]  # what socket.getaddrinfo yields: family, type, proto, name, address


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _timeout(deadline: float) -> float:
    """A socket timeout that ends at ``deadline``: never 0, which would make the socket
    non-blocking rather than out of time."""
    return max(_left(deadline), 0.001)


def resolve(host: str, port: int | None, given: str, deadline: float) -> list[Place]:
    """``host`` (of the address ``given``, which error messages name) resolved, by
    ``deadline``: ``getaddrinfo`` takes no timeout, so it runs on a daemon thread that may
    be left behind."""
    try:  # an IP address: nothing to look up
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    result: list[list[Place] | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as e:  # reported by the waiting thread
            result.append(e)
        done.set()

    threading.Thread(target=lookup, name="dasktune-resolve", daemon=True).start()
    if not done.wait(_left(deadline)):
        raise AddressError(
            f"the host name {host!r} of {given} did not resolve in time: check "
            "the name, or pass the scheduler's IP address, or raise --connect-timeout."
        )
    (found,) = result
    if isinstance(found, socket.gaierror):
        raise AddressError(
            f"the host name {host!r} of {given} does not resolve "
            f"({found.strerror}): check the name, or pass the scheduler's IP address."
        )
    if isinstance(found, BaseException):
        raise AddressError(f"the host name {host!r} of {given} does not resolve ({found}).")
    return found


def _connect(places: list[Place], deadline: float) -> socket.socket:
    """A socket connected to the first of ``places`` that accepts, by ``deadline``."""
    host, port = places[0][4][:2]
    failure: OSError | None = None
    for family, kind, proto, _, place in places:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(_timeout(deadline))
        try:
            sock.connect(place)
        except (socket.timeout, TimeoutError):
            sock.close()
            raise AddressError(
                f"nothing answered at {host}:{port} in time: no connection was accepted (a "
                "firewall, or a host that is down?); check the address, or raise --connect-timeout."
            ) from None
        except OSError as e:
            sock.close()
            failure = e
            continue
        return sock
    if isinstance(failure, ConnectionRefusedError):
        raise AddressError(
            f"nothing listens at {host}:{port} (connection refused): is the scheduler running, "
            f"and on that port? ({SCHEDULER_PORT} unless it was started with another --port)"
        )
    reason = failure.strerror if failure is not None and failure.strerror else failure
    raise AddressError(f"cannot connect to {host}:{port}: {reason}.")


def _read(sock: socket.socket, until: float, enough: Callable[[bytes], bool | None]) -> tuple[bytes, bool]:
    """What ``sock`` says until ``enough(heard)`` is not ``None``, the peer closes, or the
    time is ``until``; and whether the peer closed."""
    heard = b""
    while enough(heard) is None and len(heard) < READ_LIMIT:
        left = _left(until)
        if left <= 0:
            return heard, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(READ_LIMIT - len(heard))
        except (socket.timeout, TimeoutError):
            return heard, False
        except (ConnectionResetError, BrokenPipeError):
            return heard, True
        if not chunk:
            return heard, True
        heard += chunk
    return heard, False
