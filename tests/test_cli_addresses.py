"""Every command meets a wrong ``--scheduler`` address with one line, exit status 2, within
``--connect-timeout`` + 1 s, and never a traceback (issue 28).

Each address leads to a real listening socket on loopback that the test makes itself: a Dask
scheduler's dashboard (and a plain HTTP server standing in for one), a service that writes
random bytes, a port bound with nothing listening, a TLS scheduler, a plain one. The name
that does not resolve is looked up in a network namespace of its own, with no network: no
query leaves the machine.

The commands run in a helper process that has imported them before its clock starts, so the
bound is on reaching the verdict, not on Python's start-up (``benchmarks/cli_timings.py``
measures that). Each verdict is printed as it comes, so a command that hangs is named.
"""

from __future__ import annotations

from collections.abc import Iterator
import http.server
import json
import os
from pathlib import Path
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from conftest import ProcessCluster

trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")

CONNECT_TIMEOUT = 3.0
#: The verdict's bound: the connect timeout and a second (the issue's "Done when").
BOUND = CONNECT_TIMEOUT + 1.0
#: What the helper process may take beyond the verdicts: starting Python, importing.
START_UP = 60.0

#: Runs each argument vector of ``sys.argv[1]`` (JSON) through ``dasktune.cli.main``,
#: printing a JSON line per vector: exit status, its stdout and stderr, seconds taken.
DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys, time
    import dasktune.cli.commands  # imported before the clock starts
    from dasktune.cli import main

    for argv in json.loads(sys.argv[1]):
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
        print(json.dumps({"argv": argv, "code": code, "stdout": out.getvalue(),
                          "stderr": err.getvalue(), "seconds": time.monotonic() - started}), flush=True)
    """
)


def verdicts(argvs: list[list[str]], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """What each command line of ``argvs`` ends with, run in one helper process (its
    command line starting with ``prefix``, e.g. ``unshare -n``)."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    timeout = START_UP + BOUND * len(argvs)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True,
            text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        finished = [json.loads(line)["argv"] for line in out.splitlines()]
        hung = argvs[len(finished)]
        raise AssertionError(f"`dasktune {' '.join(hung)}` hung ({timeout:g} s in all)") from None
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_one_line(result: dict[str, Any], *says: str) -> str:
    """``result`` is a verdict: exit status 2, one ``error:`` line holding each of ``says``,
    no traceback, in time."""
    command, err = " ".join(result["argv"]), result["stderr"]
    assert result["code"] == 2, (command, result["code"], err)
    assert err.startswith("error: ") and err.count("\n") == 1, (command, err)
    assert "Traceback" not in err
    for words in says:
        assert words in err, (command, words, err)
    assert result["seconds"] <= BOUND, (command, result["seconds"], err)
    return err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("addresses")


@pytest.fixture(scope="module")
def scheduler(workdir: Path) -> Iterator[ProcessCluster]:
    """A plain ``dask scheduler`` with dasktune's plugin and a dashboard; no workers."""
    cluster = ProcessCluster(workdir / "plain", scheduler_args=["--preload", "dasktune"])
    (workdir / "plain").mkdir()
    try:
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.close()


def dashboard_port(cluster: ProcessCluster) -> int:
    return int(json.loads(cluster.scheduler_file.read_text())["services"]["dashboard"])


def serve(handle: Any) -> Iterator[int]:
    """A loopback TCP server that runs ``handle(connection)`` on a thread per connection;
    yields its port, stops on exit."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(connection, stop), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()


@pytest.fixture(scope="module")
def random_bytes() -> Iterator[int]:
    """A service that writes random bytes to whoever connects, as long as they listen."""

    def handle(connection: socket.socket, stop: threading.Event) -> None:
        noise = random.Random(28)
        with connection:
            while not stop.is_set():
                try:
                    connection.sendall(noise.randbytes(4096))
                except OSError:
                    return
                stop.wait(0.05)

    yield from serve(handle)


@pytest.fixture(scope="module")
def web_server() -> Iterator[int]:
    """A plain HTTP server, standing in for a dashboard port: 404 to every request."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound, so that nobody else takes it, with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def every_command(address: str, tmp: Path, *options: str) -> list[list[str]]:
    """Each command of the CLI against ``address``."""
    objective = tmp / "objective.py"
    objective.write_text("def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n")
    common = ["--scheduler", address, "--connect-timeout", str(CONNECT_TIMEOUT), *options]
    return [
        ["studies", *common],
        ["show", "s", *common],
        ["best", "s", *common],
        ["export", "s", "--to", str(tmp / "copy.db"), *common],
        ["cancel", "s", *common],
        ["delete", "s", "--yes", *common],
        ["run", f"{objective}:objective", "--study", "s", "--n-trials", "1", *common],
        ["demo", "--n-trials", "1", *common],
    ]


def test_the_dashboard_port_is_named_with_the_scheduler_address_by_every_command(
    scheduler: ProcessCluster, workdir: Path
) -> None:
    """`tcp://HOST:DASHBOARD`: distributed alone waits for as long as the web server keeps
    the connection (626 s in the issue); here every command says where the scheduler is."""
    address = f"tcp://127.0.0.1:{dashboard_port(scheduler)}"
    for result in verdicts(every_command(address, workdir)):
        assert_one_line(result, f"{address} is the Dask dashboard", f"pass --scheduler {scheduler.address}")
    assert not (workdir / "copy.db").exists()


def test_a_service_writing_random_bytes_is_no_scheduler_for_every_command(
    random_bytes: int, workdir: Path
) -> None:
    """distributed alone reads the first bytes as a message length and fails allocating
    exabytes (`_ArrayMemoryError`, a traceback)."""
    address = f"tcp://127.0.0.1:{random_bytes}"
    for result in verdicts(every_command(address, workdir)):
        assert_one_line(result, f"{address} is not a Dask scheduler", "Check the port")


def test_a_web_server_on_the_port_is_named(web_server: int, workdir: Path) -> None:
    address = f"tcp://127.0.0.1:{web_server}"
    (result,) = verdicts(every_command(address, workdir)[:1])
    assert_one_line(result, f"{address} is a web server", "404", "tcp://127.0.0.1:8786")


def test_a_closed_port_says_nothing_listens(closed_port: int, workdir: Path) -> None:
    address = f"tcp://127.0.0.1:{closed_port}"
    for result in verdicts(every_command(address, workdir)[:2]):
        assert_one_line(result, f"nothing listens at 127.0.0.1:{closed_port}", "connection refused")


def test_web_addresses_and_paths_name_the_scheduler_address(
    scheduler: ProcessCluster, workdir: Path
) -> None:
    """The dashboard's URL pasted from a browser, its websocket, and a scheduler address
    with a path: each names the address to pass."""
    port = dashboard_port(scheduler)
    results = verdicts([
        ["studies", "--scheduler", url, "--connect-timeout", str(CONNECT_TIMEOUT)]
        for url in [f"http://127.0.0.1:{port}/status", f"ws://127.0.0.1:{port}/status/ws",
                    f"{scheduler.address}/status"]
    ])
    assert_one_line(results[0], f"http://127.0.0.1:{port}/status is a web address",
                    f"pass --scheduler {scheduler.address}")
    assert_one_line(results[1], f"ws://127.0.0.1:{port}/status/ws is a web address",
                    f"pass --scheduler {scheduler.address}")
    assert_one_line(results[2], "has a path", f"pass --scheduler {scheduler.address}.")


def test_a_name_that_does_not_resolve(workdir: Path) -> None:
    """Looked up in a network namespace without a network, so no query leaves the machine."""
    if shutil.which("unshare") is None or subprocess.run(
        ["unshare", "-n", "true"], capture_output=True
    ).returncode != 0:
        pytest.skip("needs `unshare -n` (a network namespace of its own) to look a name up offline")
    address = "tcp://dasktune-scheduler.invalid:8786"
    for result in verdicts(every_command(address, workdir)[:2], prefix=("unshare", "-n")):
        assert_one_line(result, "the host name 'dasktune-scheduler.invalid'", "resolve",
                        "pass the scheduler's IP address")


def test_the_scheduler_itself_answers(scheduler: ProcessCluster) -> None:
    """The right address, with or without its tcp:// scheme, reaches the scheduler."""
    bare = scheduler.address.removeprefix("tcp://")
    for result in verdicts([["studies", "--scheduler", a, "--json"] for a in (scheduler.address, bare)]):
        assert result["code"] == 0 and json.loads(result["stdout"]) == [], result


@pytest.fixture(scope="module")
def certificates(workdir: Path) -> dict[str, str]:
    """A CA and a certificate for 127.0.0.1 it signed, and the same from an unrelated CA."""
    paths: dict[str, str] = {}
    for prefix in ("", "rogue_"):
        ca = trustme.CA()
        ca.cert_pem.write_to_path(paths.setdefault(f"{prefix}ca", str(workdir / f"{prefix}ca.pem")))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.cert_chain_pems[0].write_to_path(paths.setdefault(f"{prefix}cert", str(workdir / f"{prefix}cert.pem")))
        cert.private_key_pem.write_to_path(paths.setdefault(f"{prefix}key", str(workdir / f"{prefix}key.pem")))
    return paths


def tls_options(certificates: dict[str, str], prefix: str = "") -> list[str]:
    return ["--tls-ca-file", certificates[f"{prefix}ca"], "--tls-cert", certificates[f"{prefix}cert"],
            "--tls-key", certificates[f"{prefix}key"]]


@pytest.fixture(scope="module")
def tls_scheduler(workdir: Path, certificates: dict[str, str]) -> Iterator[ProcessCluster]:
    """A ``dask scheduler --protocol tls`` that admits only clients with its certificates."""
    (workdir / "tls").mkdir()
    cluster = ProcessCluster(
        workdir / "tls", scheduler_args=["--protocol", "tls", *tls_options(certificates), "--preload", "dasktune"]
    )
    try:
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.close()


def test_tls_without_certificates_and_the_reverse(
    tls_scheduler: ProcessCluster, scheduler: ProcessCluster, certificates: dict[str, str]
) -> None:
    """A TLS scheduler reached in the clear or without certificates, or with a certificate
    its CA did not sign; a plain scheduler reached with TLS. With the right certificates the
    TLS scheduler answers."""
    secure = tls_scheduler.address
    host_port = secure.removeprefix("tls://")
    plain_host_port = scheduler.address.removeprefix("tcp://")
    timeout = ["--connect-timeout", str(CONNECT_TIMEOUT)]
    results = verdicts([
        ["studies", "--scheduler", f"tcp://{host_port}", *timeout],
        ["studies", "--scheduler", secure, *timeout],
        ["studies", "--scheduler", secure, *timeout, *tls_options(certificates, "rogue_")],
        ["studies", "--scheduler", f"tls://{plain_host_port}", *timeout, *tls_options(certificates)],
        ["studies", "--scheduler", scheduler.address, *timeout, *tls_options(certificates)],
        ["studies", "--scheduler", secure, "--json", *timeout, *tls_options(certificates)],
    ])
    assert_one_line(results[0], f"{host_port} speaks TLS", f"pass --scheduler {secure} with --tls-ca-file")
    assert_one_line(results[1], f"{secure} speaks TLS", "no certificate", "--tls-cert")
    assert_one_line(results[2], "--tls-ca-file does not vouch for", "the cluster's CA")
    assert_one_line(results[3], "does not use TLS", f"pass --scheduler tcp://{plain_host_port}")
    assert_one_line(results[4], "does not use TLS, yet --tls-* options were given")
    assert results[5]["code"] == 0 and json.loads(results[5]["stdout"]) == [], results[5]
