"""Real MCollective nodes for the tests: `mcollectived` daemons from the Debian packages.

Each node is one `mcollectived` (MCollective 2.12.5, Ruby) talking STOMP to RabbitMQ,
serving the agents under tests/mcollective/plugins: package and service (the interfaces
of the widely used mcollective-package-agent and -service-agent) and echo. In the
``simulated`` mode packages and services live in a JSON state file per node that the
tests read (`McoNode.state`) and seed (`McoNode.edit_state`); in the ``apt`` mode the
agents run apt-get and service(8) for real.

    with McoCollective([NodeSpec("web1", {"role": "web"}), NodeSpec("db1", {"role": "db"})]) as c:
        c.rpc("package", "install", "package=nginx", "-F", "role=db")

A collective gets its own collective name (so its own two exchanges) unless a broker with
a collective is passed: parallel test runs on one broker then never see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from tests.mco_broker import (
    BrokerSettings,
    delete_exchanges,
    ensure_exchanges,
    require_mcollective,
    run_async,
)

__all__ = [
    "BrokerSettings",
    "McoCollective",
    "McoNode",
    "NodeSpec",
    "delete_exchanges",
    "ensure_exchanges",
    "require_mcollective",
]

PLUGINS = Path(__file__).resolve().parent / "mcollective" / "plugins"
# what an operator installs on Debian 12's nodes too (the Ruby 3.1 fact source)
CONTRIB_PLUGINS = Path(__file__).resolve().parents[1] / "contrib" / "mcollective" / "plugins"
SYSTEM_PLUGINS = "/usr/share/mcollective/plugins"
AGENTS = ("package", "service", "echo", "rpcutil", "discovery")
Mode = Literal["simulated", "apt"]


def _poll(check: Callable[[], bool], timeout: float) -> bool:
    """Call check until it is true (True) or timeout seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _is_our_daemon(pid: int, config: Path) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and str(config).encode() in cmdline


@dataclass(frozen=True)
class NodeSpec:
    identity: str
    facts: Mapping[str, Any] = field(default_factory=lambda: {"osfamily": "Debian"})
    classes: Sequence[str] = ()
    mode: Mode | None = None  # None: the collective's mode
    package_delay: float = 0.0
    service_delay: float = 0.0


class McoNode:
    """One real `mcollectived` in its own directory (config, facts, log, pidfile, state)."""

    def __init__(
        self,
        identity: str,
        base_dir: Path,
        broker: BrokerSettings,
        psk: str,
        *,
        facts: Mapping[str, Any] | None = None,
        classes: Sequence[str] = (),
        mode: Mode = "simulated",
        package_delay: float = 0.0,
        service_delay: float = 0.0,
    ) -> None:
        self.identity = identity
        self.base_dir = base_dir
        self.broker = broker
        self.psk = psk
        self.facts: dict[str, Any] = dict(facts if facts is not None else {"osfamily": "Debian"})
        self.classes = list(classes)
        self.mode: Mode = mode
        self.package_delay = package_delay
        self.service_delay = service_delay
        self.config = base_dir / "server.cfg"
        self.pidfile = base_dir / "mcollectived.pid"
        self.logfile = base_dir / "mcollectived.log"
        self.facts_file = base_dir / "facts.yaml"
        self.state_file = base_dir / "state.json"
        self._pid: int | None = None
        self._log_mark = 0  # the log's size when this run started

    def __repr__(self) -> str:
        return f"McoNode({self.identity!r}, pid={self._pid}, alive={self.alive})"

    # -- files ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        lines = {
            **self.broker.connector_config(),
            "identity": self.identity,
            "libdir": f"{PLUGINS}:{CONTRIB_PLUGINS}:{SYSTEM_PLUGINS}",
            "logfile": self.logfile,
            "loglevel": "debug",  # wait_ready reads the SUBSCRIBE lines
            "daemonize": 1,
            "registerinterval": 0,
            "securityprovider": "psk",
            "plugin.psk": self.psk,
            "factsource": "localyaml",
            "plugin.localyaml": self.facts_file,
            "classesfile": self.base_dir / "classes.txt",
            "plugin.package.mode": self.mode,
            "plugin.package.state_file": self.state_file,
            "plugin.package.delay": self.package_delay,
            "plugin.service.mode": "sysv" if self.mode == "apt" else "simulated",
            "plugin.service.state_file": self.state_file,
            "plugin.service.delay": self.service_delay,
        }
        self.config.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
        self.write_facts(self.facts)
        (self.base_dir / "classes.txt").write_text("".join(f"{c}\n" for c in self.classes))
        if not self.state_file.exists():
            self.state_file.write_text("{}\n")

    def write_facts(self, facts: Mapping[str, Any]) -> None:
        """Replace the node's facts; a running node sees them on its next lookup."""
        self.facts = dict(facts)
        tmp = self.facts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.facts) + "\n")  # JSON is YAML
        tmp.replace(self.facts_file)

    # -- simulated state -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with open(f"{self.state_file}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    @property
    def state(self) -> dict[str, Any]:
        """The simulated node's state: packages, available, broken_packages, services,
        broken_services, history (see plugins/mcollective/util/test_state.rb)."""
        with self._locked(exclusive=False):
            raw = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        return {**self.state_defaults(), **raw}

    @contextlib.contextmanager
    def edit_state(self) -> Iterator[dict[str, Any]]:
        """Change the simulated state in place, under the agents' lock:

        with node.edit_state() as s: s["packages"]["nginx"] = "1.22.1-9"
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            raw = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
            state = {**self.state_defaults(), **raw}
            yield state
            tmp = self.state_file.with_suffix(".py.tmp")
            tmp.write_text(json.dumps(state, indent=2) + "\n")
            tmp.replace(self.state_file)

    @staticmethod
    def state_defaults() -> dict[str, Any]:
        return {
            "packages": {},
            "available": {},
            "broken_packages": [],
            "services": {},
            "broken_services": [],
            "history": [],
        }

    @property
    def installed(self) -> dict[str, str]:
        return dict(self.state["packages"])

    def restarts(self, service: str) -> int:
        return int(self.state["services"].get(service, {}).get("restarts", 0))

    # -- process -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon; returns once it wrote its pidfile (see wait_ready)."""
        if self.alive:
            raise RuntimeError(f"{self.identity} is already running (pid {self._pid})")
        self._write_config()
        self._drop_stale_pidfile()
        self._log_mark = self.logfile.stat().st_size if self.logfile.exists() else 0
        started = subprocess.run(
            ["mcollectived", "--config", str(self.config), "--pidfile", str(self.pidfile)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"mcollectived failed for {self.identity}: {started.stderr}")

        def pid_written() -> bool:
            with contextlib.suppress(OSError, ValueError):
                self._pid = int(self.pidfile.read_text())
                return True
            return False

        if not _poll(pid_written, 15):
            raise TimeoutError(f"{self.identity} wrote no pidfile:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the node has subscribed to its directed queue and every agent.

        mcollectived logs each SUBSCRIBE just before sending it and "Waiting for a message"
        once all are sent; RabbitMQ binds each queue as it reads the frame.
        """
        wanted = [f"{self.broker.collective}_directed/{self.identity}"] + [
            f"{self.broker.collective}_broadcast/{agent}" for agent in AGENTS
        ]

        def subscribed() -> bool:
            if not self.alive:
                raise RuntimeError(f"{self.identity} died while starting:\n{self.log_tail()}")
            text = self._log_since_start()
            return all(f"Subscribing to /exchange/{w}" in text for w in wanted) and (
                "Waiting for a message from RabbitMQ" in text
            )

        if not _poll(subscribed, timeout):
            raise TimeoutError(f"{self.identity} not subscribed in {timeout} s:\n{self.log_tail()}")

    def _log_since_start(self) -> str:
        try:
            with open(self.logfile, "rb") as log:
                log.seek(self._log_mark)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log_since_start().splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def alive(self) -> bool:
        """The daemon runs: it exists, is no zombie, and is ours (not a reused pid)."""
        return self._pid is not None and _is_our_daemon(self._pid, self.config)

    def _signal(self, signum: int, timeout: float) -> bool:
        """Send signum; True once the daemon is gone."""
        if self._pid is None or not self.alive:
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signum)
        return _poll(lambda: not self.alive, timeout)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM and wait for the daemon to exit (SIGKILL if it does not)."""
        if not self._signal(signal.SIGTERM, timeout):
            self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash (the daemon cannot remove its pidfile)."""
        if not self._signal(signal.SIGKILL, 10):
            raise RuntimeError(f"{self.identity} (pid {self._pid}) survived SIGKILL")
        self._drop_stale_pidfile()

    def _drop_stale_pidfile(self) -> None:
        # Where nobody reaps orphans (a container's init) a killed daemon stays a zombie,
        # and mcollectived takes a pidfile naming a zombie for a running node and exits.
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text())
            if not _is_our_daemon(pid, self.config):
                self.pidfile.unlink()


class McoCollective:
    """N real nodes in a temporary directory and a client.cfg for the real `mco` CLI.

    Sync (`with`) or async (`async with`); leaving it stops every node and, for a
    collective of its own, deletes its exchanges.
    """

    def __init__(
        self,
        nodes: int | Sequence[NodeSpec] = 1,
        *,
        broker: BrokerSettings | None = None,
        psk: str | None = None,
        mode: Mode = "simulated",
        base_dir: Path | None = None,
    ) -> None:
        self._own_collective = broker is None
        self.broker = broker or replace(BrokerSettings(), collective=f"t{uuid.uuid4().hex[:10]}")
        self.psk = psk or uuid.uuid4().hex
        specs = (
            [NodeSpec(f"node{i}") for i in range(1, nodes + 1)] if isinstance(nodes, int) else nodes
        )
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if base_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mco-nodes-")
            base_dir = Path(self._tmp.name)
        self.base_dir = base_dir
        self.nodes = [
            McoNode(
                s.identity,
                base_dir / s.identity,
                self.broker,
                self.psk,
                facts=s.facts,
                classes=s.classes,
                mode=s.mode or mode,
                package_delay=s.package_delay,
                service_delay=s.service_delay,
            )
            for s in specs
        ]
        self.client_config = base_dir / "client.cfg"

    def __getitem__(self, identity: str) -> McoNode:
        for node in self.nodes:
            if node.identity == identity:
                return node
        raise KeyError(identity)

    def _write_client_config(self) -> None:
        lines = {
            **self.broker.connector_config(),
            "identity": "mco-client",
            "libdir": f"{PLUGINS}:{CONTRIB_PLUGINS}:{SYSTEM_PLUGINS}",
            "logger_type": "file",
            "logfile": self.base_dir / "client.log",
            "loglevel": "info",
            "securityprovider": "psk",
            "plugin.psk": self.psk,
        }
        self.client_config.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))

    def start(self) -> None:
        """Start every node, then wait until all of them have subscribed."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._write_client_config()
        run_async(ensure_exchanges(self.broker))
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self._own_collective:
            with contextlib.suppress(Exception):
                run_async(delete_exchanges(self.broker))
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> McoCollective:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> McoCollective:
        await asyncio.to_thread(self.__enter__)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def mco(
        self, command: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the real Ruby client: mco COMMAND --config client.cfg ARGS..."""
        return subprocess.run(
            ["mco", command, "--config", str(self.client_config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rpc(
        self, agent: str, action: str, *args: str, discovery_timeout: int = 1, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """`mco rpc AGENT ACTION ARGS -j`: one dict per reply (sender, statuscode,
        statusmsg, data), sorted by sender. Discovery (skipped with -I alone) waits
        discovery_timeout whole seconds (mco's default: 2)."""
        dt = ("--dt", str(discovery_timeout))
        done = self.mco("rpc", agent, action, *args, *dt, "-j", timeout=timeout)
        try:
            replies: list[dict[str, Any]] = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"mco rpc {agent} {action} {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            ) from None
        return sorted(replies, key=lambda r: str(r.get("sender")))
