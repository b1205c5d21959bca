"""The host inventory through a real `mcoflow serve` (simulated hosts, SQLite, the
in-process broker) and the real CLI, console page and API: discovery fills it and ends
as soon as the known hosts answered, a filtered discovery leaves the others known,
never-seen names are refused, and `mcoflow hosts` lists what was seen."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

import httpx
from serve_process import mcoflow_serve, run_mcoflow, serve_env

HOSTS = [f"sim-{n:05d}" for n in range(1, 21)]


def last_discovery_seconds(db: Path) -> float:
    """From its plan's creation to its end (the CLI's own start-up is not counted)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        created, ended = conn.execute(
            "SELECT created_at, ended_at FROM plans WHERE action = 'mcoflow.discover'"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    return float(ended - created)


def test_inventory_through_serve_cli_page_and_api(tmp_path: Path) -> None:
    env = serve_env(tmp_path, {})
    db = ["--db", f"sqlite:///{tmp_path / 'mcoflow.db'}"]
    args = ["--no-local-agent", "--simulate-hosts", str(len(HOSTS)), "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env) as served:

        def mcoflow(*words: str) -> tuple[int, str, float]:
            started = time.monotonic()
            done = run_mcoflow([*words, *db], tmp_path, env | {"COLUMNS": "200"})
            return done.returncode, done.stdout + done.stderr, time.monotonic() - started

        # serve discovered at start; now every host is expected and discovery ends early
        code, out, _ = mcoflow("discover", "--timeout", "10")
        assert code == 0, out
        assert out.split()[: len(HOSTS)] == HOSTS
        seconds = last_discovery_seconds(tmp_path / "mcoflow.db")
        assert seconds < 3, f"discovery took {seconds:.1f} s of its 10 s timeout"
        code, out, _ = mcoflow("discover", "--filter", "identity:sim-00002", "--timeout", "10")
        assert (code, out.split()[0]) == (0, "sim-00002"), out

        code, out, _ = mcoflow("install", "sim-00005", "nginx")
        assert code == 0, out  # known although the last discovery did not find it
        code, out, _ = mcoflow("install", "ghost-1", "nginx", "--no-wait")
        assert code == 2
        assert "ghost-1: never seen" in out and "allow_unknown_hosts" in out

        code, out, _ = mcoflow("hosts", "--json")
        assert code == 0, out
        listed = json.loads(out)
        assert [h["identity"] for h in listed] == HOSTS
        assert all(h["facts"]["identity"] == h["identity"] for h in listed)
        assert all("package" in h["agents"] for h in listed)
        code, out, _ = mcoflow("hosts", "--filter", "identity:/^sim-0000[1-3]$/")
        assert code == 0, out
        assert "3 hosts" in out and "sim-00003" in out and "sim-00004" not in out
        assert "os_family=" in out
        code, out, _ = mcoflow("hosts", "--filter", "identity:/(/")
        assert code == 2 and "filter" in out

        api = httpx.get(f"{served.url}/api/v1/hosts", params={"filter": "identity:sim-00007"})
        assert api.status_code == 200, api.text
        assert [h["identity"] for h in api.json()["hosts"]] == ["sim-00007"]
        page = httpx.get(f"{served.url}/hosts")
        assert page.status_code == 200
        assert all(h in page.text for h in HOSTS)


def test_allowed_unknown_hosts_end_as_no_response(tmp_path: Path) -> None:
    env = serve_env(tmp_path, {"allow_unknown_hosts": True})
    db = ["--db", f"sqlite:///{tmp_path / 'mcoflow.db'}"]
    args = ["--no-local-agent", "--simulate-hosts", "2", "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env):
        done = run_mcoflow(["install", "ghost-1", "nginx", "--timeout", "1", *db], tmp_path, env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "no response from ghost-1" in done.stdout
