"""What the command line loads before it knows which command runs: `mcoflow --help`
and every command start by importing ``mcoflow.cli``, so the database, the web, the
brokers and the signing libraries load only in the commands that use them. Checked in
a fresh interpreter each (this one has loaded everything already)."""

from __future__ import annotations

import json
import subprocess
import sys

# what `mcoflow --help` must not wait for
NOT_AT_START = {
    "sqlalchemy", "alembic", "psycopg", "aiosqlite", "fastapi", "starlette", "uvicorn",
    "aio_pika", "aiormq", "nats", "cryptography", "nacl", "pydantic", "pydantic_settings",
    "yaml", "asyncio",
}  # fmt: skip
# what a job command (trigger a plan and follow it) does not use
NOT_FOR_A_JOB = {
    "alembic", "psycopg", "fastapi", "starlette", "uvicorn", "aio_pika", "aiormq", "nats",
    "cryptography", "nacl", "pydantic_settings",
}  # fmt: skip


def loaded_after(code: str, packages: set[str]) -> list[str]:
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport json, sys\n{listing}"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return sorted(set(json.loads(done.stdout)) & packages)


def test_importing_the_cli_loads_none_of_the_heavy_packages() -> None:
    assert loaded_after("import mcoflow.cli", NOT_AT_START) == []


def test_a_job_loads_no_web_broker_signing_or_migrations() -> None:
    code = (
        "import mcoflow.cli, mcoflow.engine\nfrom mcoflow.actions import Jobs, host_results\n"
        "from mcoflow.cli.app import cli_settings\ncli_settings()"
    )
    assert loaded_after(code, NOT_FOR_A_JOB) == []


def test_the_rpc_and_actions_packages_still_offer_every_name() -> None:
    code = (
        "import mcoflow.rpc, mcoflow.actions\n"
        "for m in (mcoflow.rpc, mcoflow.actions):\n"
        "    for name in m.__all__:\n"
        "        getattr(m, name)"
    )
    # every name resolves (else the probe fails), the RPC client's signing with it
    assert loaded_after(code, {"cryptography", "nacl"}) != []
