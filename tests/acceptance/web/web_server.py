"""A real uvicorn server for the browser tests: the web app on an engine (SQLite
file, in-process executor) with the fake jobs. Stand-in for `mcoflow serve
--simulate-hosts N` until that exists.

    python tests/acceptance/web/web_server.py --db FILE --port N [--delay S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "web"))

import uvicorn
from web_fakes import DELAY, FakeJobs

from mcoflow.engine import World
from mcoflow.web import AuthSettings, create_app


async def serve(db: str, port: int) -> None:
    world = await World.open(
        f"sqlite:///{db}", execute=True, poll_interval=0.05, heartbeat_interval=0.5
    )
    app = create_app(
        world,
        auth=AuthSettings.loopback(),
        jobs=FakeJobs(world),
        broker_state=lambda: "connected",
        sse_interval=0.25,
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await world.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.8, help="seconds a host takes")
    args = parser.parse_args()
    DELAY["seconds"] = args.delay
    asyncio.run(serve(args.db, args.port))


if __name__ == "__main__":
    main()
