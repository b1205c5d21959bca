"""The web console of `mcoflow serve`: the web app on the orchestrator's World, served
by uvicorn as a task on the running event loop, next to the executor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import uvicorn

from mcoflow.actions.jobs import Jobs
from mcoflow.actions.template_jobs import TemplateJobs
from mcoflow.recurring.service import Schedules
from mcoflow.settings import Settings
from mcoflow.web.app import create_app
from mcoflow.web.auth import AuthSettings
from mcoflow.web.auth_settings import parse_listen, web_auth
from mcoflow.web.ports import JobsPort

if TYPE_CHECKING:
    from mcoflow.orchestrator import Orchestrator

log = logging.getLogger("mcoflow.web")
# Open live-update streams end within sse_interval once stopping; this bounds the wait.
SHUTDOWN_SECONDS = 5


class WebServerError(RuntimeError):
    """The console could not start (its address is taken, not valid here, …)."""


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves SIGINT/SIGTERM to the CLI and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the web console stopped: %r", task.exception())


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, so a taken port is our error, not uvicorn's exit."""
    sock: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise WebServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _schedules(orchestrator: Orchestrator, settings: Settings) -> Schedules:
    """The recurring jobs' service; one created here wakes this process's scheduler."""
    jobs = Jobs(
        orchestrator.world,
        check_hosts=not settings.allow_unknown_hosts,
        transport=type(orchestrator.transport),
    )
    scheduler = orchestrator.scheduler
    return Schedules(jobs, on_change=scheduler.wake if scheduler is not None else None)


def _dropped_replies(orchestrator: Orchestrator) -> Callable[[], Mapping[str, int]] | None:
    """The replies an MCollective transport refused, by reason (every reason, from 0)."""
    from mcoflow.rpc.transports.mcollective import McollectiveTransport

    transport = orchestrator.transport
    if not isinstance(transport, McollectiveTransport):
        return None
    from mcoflow.rpc.mcollective.psk import RejectReason

    return lambda: {r.value: 0 for r in RejectReason} | transport.dropped_replies()


class WebServer:
    """Pages, live updates and the REST API of one orchestrator, on ``settings.listen``."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        settings: Settings,
        *,
        embedded: bool,
        auth: AuthSettings | None = None,
        log_level: str = "info",
    ) -> None:
        """``auth``: as ``web_auth(settings, embedded=embedded)`` (which raises
        WebConfigError for what the operator must configure) computes it."""
        self.listen = parse_listen(settings.listen)
        self.auth = auth if auth is not None else web_auth(settings, embedded=embedded)
        jobs: JobsPort = TemplateJobs(
            orchestrator.world,
            check_hosts=not settings.allow_unknown_hosts,
            transport=type(orchestrator.transport),
        )
        self.app = create_app(
            orchestrator.world,
            auth=self.auth,
            jobs=jobs,
            broker_state=orchestrator.broker_state,
            dropped_replies=_dropped_replies(orchestrator),
            trusted_proxies=settings.trusted_proxies,
        )
        self.app.state.schedules = _schedules(orchestrator, settings)
        self.trusted_proxies = settings.trusted_proxies
        self.log_level = log_level.lower()
        self.port = self.listen.port  # the real one once started (listen port 0: any)
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.listen.url(self.port)

    async def start(self) -> None:
        """Listen and serve; WebServerError if it cannot."""
        if self._task is not None:
            raise RuntimeError("the web server is already started")
        sock = bind(self.listen.host, self.listen.port)
        self.port = sock.getsockname()[1]
        self.app.state.closing = False
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level=self.log_level,
            log_config=None,  # the CLI's logging set-up
            access_log=self.log_level == "debug",
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            proxy_headers=False,  # the app's TrustedProxies decides (it trusts none by default)
        )
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="mcoflow-web")
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            sock.close()
            failure = task.exception() if not task.cancelled() else None
            raise WebServerError(f"the web console did not start: {failure or 'stopped'}")
        task.add_done_callback(_report_crash)
        self._server, self._task = server, task
        proxies = ", ".join(self.trusted_proxies)
        log.info("web console on %s%s", self.url, f", behind {proxies}" if proxies else "")

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.app.state.closing = True  # ends live-update streams
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, SHUTDOWN_SECONDS * 2)
        except TimeoutError:
            log.warning("the web console did not stop in time")
        finally:
            self._server = self._task = None
