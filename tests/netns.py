"""Real network partitions for tests: hosts in network namespaces joined by a bridge.

:class:`Network` makes a namespace for the scheduler, holding a bridge with the scheduler's
address, and one namespace per further host (a worker, a client), each joined to the bridge
by a veth pair whose bridge end :meth:`Network.cut` sets down and :meth:`Network.restore`
sets up again: a partition as a pulled cable, with no TCP reset (this kernel has no
``netem``, so no delay or loss shaping). Every address lives only inside these namespaces
(``10.213.0.0/24``, which nothing outside them routes to), so no traffic leaves them;
:meth:`Network.close` stops the processes it started and deletes every namespace, which
deletes the links with them.

Making namespaces needs root: :func:`available` says why not, for a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import uuid

SUBNET = "10.213.0"
SCHEDULER = f"{SUBNET}.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def available() -> str | None:
    """Why network namespaces cannot be made here, or ``None`` when they can."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    name = f"dtprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        return f"`ip netns add` failed: {error.stderr.decode().strip()}"
    _ip("netns", "del", name)
    return None


class Network:
    """The scheduler's namespace and its bridge; :meth:`add` joins a host to it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tag = uuid.uuid4().hex[:5]
        self.scheduler_ns = f"dt{self.tag}-s"
        self.namespaces: list[str] = []
        self.ports: dict[str, str] = {}  # host -> its veth end on the bridge
        self.processes: list[subprocess.Popen] = []
        self._namespace(self.scheduler_ns)
        _ip("-n", self.scheduler_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.scheduler_ns, "addr", "add", f"{SCHEDULER}/24", "dev", "br0")
        _ip("-n", self.scheduler_ns, "link", "set", "br0", "up")

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def add(self, host: str, octet: int) -> str:
        """A namespace for ``host`` at ``10.213.0.<octet>``, on the bridge; its address."""
        namespace, address = self.namespace(host), f"{SUBNET}.{octet}"
        self._namespace(namespace)
        inside, port = f"v{self.tag}{octet}", f"p{self.tag}{octet}"  # <= 15 characters
        _ip("link", "add", inside, "type", "veth", "peer", "name", port)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", port, "netns", self.scheduler_ns)
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", self.scheduler_ns, "link", "set", port, "master", "br0")
        _ip("-n", self.scheduler_ns, "link", "set", port, "up")
        self.ports[host] = port
        return address

    def namespace(self, host: str) -> str:
        return self.scheduler_ns if host == "scheduler" else f"dt{self.tag}-{host}"

    def cut(self, host: str) -> None:
        """Pull ``host``'s cable: nothing reaches it or leaves it, and nobody is told."""
        _ip("-n", self.scheduler_ns, "link", "set", self.ports[host], "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.scheduler_ns, "link", "set", self.ports[host], "up")

    def run(self, host: str, command: list[str], log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``command`` inside ``host``'s namespace (this environment's ``python`` and
        ``dask`` first on its path), its output in ``log`` under the work directory."""
        bindir = os.path.dirname(sys.executable)
        environment = {**os.environ, **(env or {}), "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}
        out = open(self.workdir / log, "ab")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), *command],
            stdout=out, stderr=subprocess.STDOUT, env=environment,
        )
        out.close()
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
