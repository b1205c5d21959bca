"""Any agent action through a real `mcoflow serve` (20 simulated hosts, SQLite, the
in-process broker) and the real CLI: `mcoflow rpc service status` and `package status`
on every host, as a table and as JSON; the interface fetched once and cached; bad input
refused naming it (exit 2) before anything is sent; a host that fails makes the exit
status 1."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from serve_process import mcoflow_serve, run_mcoflow, serve_env

from mcoflow.testing import assert_eventually

HOSTS = [f"sim-{n:05d}" for n in range(1, 21)]
SIMULATION = {
    "packages": {"curl": "7.88.1-10"},
    "services": {"nginx": "running"},
    "broken_packages": ["broken@sim-00007"],
}


def test_rpc_on_twenty_simulated_hosts(tmp_path: Path) -> None:
    env = serve_env(tmp_path, {"simulation": SIMULATION}) | {"COLUMNS": "200"}
    db = ["--db", f"sqlite:///{tmp_path / 'mcoflow.db'}"]
    args = ["--no-local-agent", "--simulate-hosts", str(len(HOSTS)), "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env) as served:

        def mcoflow(*words: str) -> tuple[int, str]:
            done = run_mcoflow([*words, *db], tmp_path, env)
            return done.returncode, done.stdout + done.stderr

        # service status on every host by filter, as JSON; the interface is fetched first
        code, out = mcoflow(
            "rpc", "service", "status", "service=nginx", "--filter", "identity:/^sim-/", "--json"
        )
        assert code == 0, out
        shown = json.loads(out)
        assert shown["result"] == "success"
        assert [h["host"] for h in shown["hosts"]] == HOSTS
        assert {(h["status"], h["data"]["status"]) for h in shown["hosts"]} == {
            ("success", "running")
        }

        # the interfaces are cached, read-only actions marked
        code, out = mcoflow("agents", "--json")
        assert code == 0, out
        declared = {a["name"]: a for a in json.loads(out)}
        assert set(declared) == {"package", "rpcutil", "service"}
        assert declared["package"]["actions"]["status"]["read_only"] is True
        assert declared["package"]["actions"]["install"]["read_only"] is False
        code, out = mcoflow("agents", "package")
        assert code == 0 and "package.status" in out and "yes" in out, out

        # package status on hosts named, as a table; answered from the cache (no fetch)
        started = time.monotonic()
        code, out = mcoflow("rpc", "package", "status", "package=curl", ",".join(HOSTS))
        assert code == 0, out
        lines = [line for line in out.splitlines() if line.lstrip("│ ").startswith("sim-")]
        assert len(lines) == len(HOSTS), out
        assert all("installed" in line and "7.88.1-10" in line for line in lines), out
        assert "20 hosts: 20 succeeded, 0 failed" in out
        assert time.monotonic() - started < 30

        # bad input: refused naming it, exit 2, nothing sent
        for words, expected in (
            (["package", "status", "pkg=curl"], "inputs.pkg: is not an input of package.status"),
            (["package", "status"], "inputs.package: is required"),
            (["package", "status", "package=a;b"], "inputs.package: does not match"),
            (["pkg", "status", "package=curl"], "agent: unknown agent 'pkg'"),
            (["package", "stats", "package=curl"], "action: agent package has no action 'stats'"),
            (["package", "status", "package=curl", "ghost-1"], "hosts: unknown host ghost-1"),
        ):
            code, out = mcoflow("rpc", *words, *([] if "ghost-1" in words else ["sim-00001"]))
            assert (code, expected in " ".join(out.split())) == (2, True), (words, out)

        # a change on every host where one host fails: exit 1, the others succeeded
        code, out = mcoflow(
            "rpc", "package", "install", "package=broken", "--filter", "identity:/^sim-/", "--json"
        )
        assert code == 1, out
        shown = json.loads(out)
        failed = [h for h in shown["hosts"] if h["status"] != "success"]
        assert [h["host"] for h in failed] == ["sim-00007"]
        assert "broken" in failed[0]["message"]
        assert "ensure" in failed[0]["data"], failed[0]  # what the refusal carried
        assert sum(h["data"].get("changed") is True for h in shown["hosts"]) == 19
        code, out = mcoflow("rpc", "package", "status", "package=broken", "sim-00007", "sim-00008")
        assert code == 0, out
        assert "absent" in out and "installed" in out

        # the same through the API: typed inputs, each host's reply
        api = f"{served.url}/api/v1"
        body = {"agent": "service", "action": "status", "inputs": {"service": "nginx"}}
        started = httpx.post(f"{api}/rpc", json=body | {"hosts": HOSTS[:5]})
        assert started.status_code == 201, started.text
        plan_id = started.json()["id"]

        def finished() -> dict[str, Any]:
            report: dict[str, Any] = httpx.get(f"{api}/rpc/{plan_id}").json()
            assert report["plan"]["state"] == "stopped", report
            return report

        report = asyncio.run(assert_eventually(finished, timeout=30, interval=0.2))
        assert [(h["host"], h["data"]["status"]) for h in report["hosts"]] == [
            (host, "running") for host in HOSTS[:5]
        ]
        refused = httpx.post(f"{api}/rpc", json=body | {"inputs": {"service": 1}, "hosts": HOSTS})
        assert (refused.status_code, refused.json()["field"]) == (422, "inputs.service")
