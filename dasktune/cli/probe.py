"""What answers at a scheduler address: a verdict within the connect timeout, before
distributed is handed the address.

distributed's ``Client`` connects and then waits for the scheduler's handshake with no
deadline (``distributed.comm.core.connect`` reads it without a timeout), and takes the
first 8 bytes of whatever answers for the length of a message to allocate. At a web server
(the dashboard's port) it waits for as long as that server keeps the connection open, ten
minutes and more; at any other service it may try to allocate exabytes. So the command
line looks first, with the standard library only: it resolves the host, connects, and
reads what the server says first. A Dask scheduler greets every connection with its
handshake before it reads anything, so one that stays silent is asked a web request (a
Dask dashboard then says where its scheduler listens, in ``/json/identity.json``), and one
that drops the connection a TLS hello. Only an address where a Dask scheduler greeted goes
on to distributed; every other one ends in :class:`AddressError`, one line that names what
was found there and what to pass instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import ssl
from urllib.parse import urlsplit

from dasktune.cli.sockets import SCHEDULER_PORT as SCHEDULER_PORT
from dasktune.cli.sockets import AddressError as AddressError
from dasktune.cli.sockets import Finding
from dasktune.cli.sockets import ask_web
from dasktune.cli.sockets import look
from dasktune.cli.sockets import look_tls
from dasktune.cli.sockets import resolve
from dasktune.cli.sockets import tls_hello
from dasktune.cli.sockets import unverified

#: Schemes of web addresses: a browser's, the dashboard's websocket.
WEB_SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: distributed's other transports: nothing here knows how they greet, distributed decides.
OTHER_TRANSPORTS = {"inproc", "ucx", "ucxx"}


@dataclass(frozen=True)
class Address:
    """A scheduler address as given, taken apart."""

    given: str
    scheme: str
    host: str
    port: int | None
    path: str  # with any query and fragment; "" when there is none

    def at(self, scheme: str | None = None, port: int | None = None) -> str:
        """``scheme://host:port``, by default this address's own, without any path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme or self.scheme}://{host}:{port or self.port}"


def parse(given: str) -> Address:
    """``given`` taken apart (no scheme means ``tcp://``, as for distributed).

    Raises:
        AddressError: No host, or a port that is not a number from 1 to 65535.
    """
    text = given.strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    host = parts.hostname or ""
    if not host or port == 0:
        raise AddressError(
            f"--scheduler {given!r} is not an address: pass the scheduler's, "
            f"tcp://HOST:PORT (port {SCHEDULER_PORT} unless it was started with --port)."
        )
    path = parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
    path += f"#{parts.fragment}" if parts.fragment else ""
    return Address(given, parts.scheme.lower(), host, port, path)


def reach(given: str, deadline: float, context: ssl.SSLContext | None, tls_options: bool) -> str:
    """The address to hand to distributed: ``given``, once a Dask scheduler greeted there
    before ``deadline`` (``time.monotonic()``), through TLS with ``context`` for ``tls://``.

    ``tls_options``: TLS was asked for (``--tls-*``), so a scheduler that does not use it
    is refused rather than spoken to in the clear.

    Raises:
        AddressError: Anything else answers there, or nothing does in time.
    """
    address = parse(given)
    if address.scheme in OTHER_TRANSPORTS:
        return given.strip()
    if address.scheme in WEB_SCHEMES:
        return _web(address, deadline)
    if address.scheme not in ("tcp", "tls"):
        raise AddressError(
            f"--scheduler {given!r}: {address.scheme}:// is not a Dask transport; a scheduler's "
            "address is tcp://HOST:PORT, or tls://HOST:PORT with TLS."
        )
    if address.port is None:
        raise AddressError(
            f"--scheduler {given!r} has no port: pass {address.at(port=SCHEDULER_PORT)} "
            f"({SCHEDULER_PORT} unless the scheduler was started with another --port)."
        )
    places = resolve(address.host, address.port, address.given, deadline)
    if address.scheme == "tls":
        found = look_tls(places, deadline, context)
    else:
        found = look(places, deadline)
        if found.kind == "closed":  # a TLS server drops a client that does not say hello
            found = tls_hello(places, deadline) or found
    _judge(address, found, context, tls_options)
    return given.strip()


def _judge(address: Address, found: Finding, context: ssl.SSLContext | None, tls_options: bool) -> None:
    """Nothing if ``found`` is a scheduler this client can use at ``address``; the
    :class:`AddressError` that says what answers there otherwise."""
    where, plain, secure = address.given, address.at("tcp"), address.at("tls")
    certificates = "--tls-ca-file, --tls-cert and --tls-key (or Dask's distributed.comm.tls config)"
    port_hint = f"({SCHEDULER_PORT} unless the scheduler was started with another --port)"
    if found.kind == "dask":
        if address.scheme == "tls" and found.clear:
            raise AddressError(
                f"the scheduler at {address.host}:{address.port} does not use TLS: pass "
                f"--scheduler {plain}."
            )
        if address.scheme == "tcp" and tls_options:
            raise AddressError(
                f"the scheduler at {plain} does not use TLS, yet --tls-* options were given: "
                "drop them, or pass the tls:// address of a scheduler that uses TLS."
            )
        if address.path:
            raise AddressError(
                f"{where} has a path, and a scheduler's address has none: pass --scheduler "
                f"{address.at()}."
            )
        return
    if found.kind == "web":
        if found.scheduler is not None:
            raise AddressError(
                f"{where} is the Dask dashboard (a web server), not the scheduler; "
                f"{_listens(address, found.scheduler)}."
            )
        raise AddressError(
            f"{where} is a web server ({found.detail}), not a Dask scheduler: pass the "
            f"scheduler's own address, {address.at('tcp', SCHEDULER_PORT)} {port_hint}."
        )
    if found.kind == "tls":
        if address.scheme == "tcp":
            raise AddressError(
                f"{address.host}:{address.port} speaks TLS: pass --scheduler {secure}"
                + ("." if context is not None else f" with {certificates}.")
            )
        raise AddressError(f"{secure} speaks TLS, and this client has no certificate: pass {certificates}.")
    if found.kind == "tls-refused":
        raise AddressError(
            f"{secure} refused this client's certificate ({found.detail}): pass a --tls-cert "
            "and --tls-key signed by the CA the cluster trusts."
        )
    if found.kind == "untrusted":
        raise AddressError(
            f"{secure} showed a certificate that --tls-ca-file does not vouch for "
            f"({found.detail}): pass the cluster's CA certificate."
        )
    if found.kind == "closed":
        raise AddressError(
            f"{where} accepted the connection and closed it without a word: no Dask scheduler "
            f"there. Check the port {port_hint}."
        )
    if found.kind == "silent":
        raise AddressError(
            f"{where} accepted the connection but said nothing in time: no Dask scheduler "
            f"answers there (one greets at once), or one too busy to. Check the port "
            f"{port_hint}, or raise --connect-timeout."
        )
    raise AddressError(
        f"{where} is not a Dask scheduler: the service there answered {found.detail} where "
        f"Dask's handshake was due. Check the port {port_hint}."
    )


def _web(address: Address, deadline: float) -> str:
    """A web address: the dashboard's, pasted from a browser, or the websocket of a page.

    ``ws://HOST:PORT`` alone may be a scheduler listening on websockets
    (``--protocol ws``): it goes on to distributed unless a dashboard answers there."""
    port = address.port or WEB_SCHEMES[address.scheme]
    secure = address.scheme in ("https", "wss")
    scheduler = None
    try:
        places = resolve(address.host, address.port, address.given, deadline)
        found = ask_web(places, port, deadline, unverified() if secure else None)
        scheduler = found.scheduler
    except (AddressError, OSError):
        pass  # nothing to learn there: the address is still no scheduler's
    if address.scheme in ("ws", "wss") and not address.path and scheduler is None:
        return address.given.strip()
    instead = (
        _listens(address, scheduler)
        if scheduler is not None
        else f"pass the scheduler's own, {address.at('tcp', SCHEDULER_PORT)} "
        f"({SCHEDULER_PORT} unless it was started with another --port; the dashboard's Info "
        "page shows it)"
    )
    raise AddressError(f"{address.given} is a web address, not a scheduler's; {instead}.")


def _listens(address: Address, scheduler: str) -> str:
    """Where the scheduler that a dashboard at ``address`` shows listens, as reached from
    here: at the dashboard's host, if the scheduler calls itself by another name (its
    container's address, say)."""
    try:
        own = parse(scheduler)
    except AddressError:
        return f"the scheduler it shows calls itself {scheduler!r}"
    if own.host == address.host or own.port is None:
        return f"the scheduler it shows listens at {scheduler}: pass --scheduler {scheduler}"
    here = dataclasses.replace(own, host=address.host).at()
    return (
        f"the scheduler it shows listens on port {own.port} (it calls itself {scheduler}): "
        f"pass --scheduler {here}"
    )

