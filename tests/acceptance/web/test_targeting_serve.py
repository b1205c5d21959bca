"""Targeting through a real `mcoflow serve` (simulated hosts whose classes and facts
differ by identity, SQLite, the in-process broker), the real CLI and the API: a compound
filter selects exactly the expected hosts, in the inventory and for a fleet job that the
agents answer; a saved group works as `@name` and its label stays the operator's words;
a wrong filter names the column and the word."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from serve_process import mcoflow_serve, run_mcoflow, serve_env

HOSTS = [f"sim-{n:05d}" for n in range(1, 21)]
SIMULATION = {
    "host_classes": {
        "/^sim-0000[1-9]$|^sim-00010$/": ["web"],
        "/^sim-0001[1-9]$|^sim-00020$/": ["db"],
    },
    "host_facts": {
        "/[13579]$/": {"cpus": 2, "os_family": "redhat"},
        "/[02468]$/": {"cpus": 16},
        "/^sim-0000[1-4]$/": {"cpus": 9},  # 9 < 16 as numbers; "9" > "16" as text
    },
}  # fmt: skip
# web hosts with 10 or more cpus, or db hosts that are not redhat and have 16 cpus
COMPOUND = "(class:web and cpus>=10) or (class:db and not os_family=redhat cpus=16)"
EXPECTED = ["sim-00006", "sim-00008", "sim-00010", "sim-00012", "sim-00014", "sim-00016",
            "sim-00018", "sim-00020"]  # fmt: skip


def expected_by_hand() -> list[str]:
    """The same selection computed from the simulation's rules, not by the grammar."""
    chosen = []
    for n, name in enumerate(HOSTS, start=1):
        web, even = n <= 10, n % 2 == 0
        cpus = 9 if n <= 4 else 16 if even else 2
        redhat = not even
        if (web and cpus >= 10) or (not web and not redhat and cpus == 16):
            chosen.append(name)
    return chosen


def test_compound_filters_and_groups_through_serve(tmp_path: Path) -> None:
    assert expected_by_hand() == EXPECTED
    env = serve_env(tmp_path, {"simulation": SIMULATION})
    db = ["--db", f"sqlite:///{tmp_path / 'mcoflow.db'}"]
    args = ["--no-local-agent", "--simulate-hosts", str(len(HOSTS)), "--log-level", "warning"]
    with mcoflow_serve(tmp_path, args, env) as served:

        def mcoflow(*words: str) -> tuple[int, str]:
            done = run_mcoflow([*words, *db], tmp_path, env | {"COLUMNS": "200"})
            return done.returncode, done.stdout + done.stderr

        code, out = mcoflow("discover", "--timeout", "10")
        assert code == 0, out

        # the inventory: the CLI and the API select exactly the expected hosts
        code, out = mcoflow("hosts", "--json", "--filter", COMPOUND)
        assert code == 0, out
        assert [h["identity"] for h in json.loads(out)] == EXPECTED
        api = httpx.get(f"{served.url}/api/v1/hosts", params={"filter": COMPOUND})
        assert api.status_code == 200, api.text
        assert [h["identity"] for h in api.json()["hosts"]] == EXPECTED

        # a discovery: the agents evaluate the compound filter themselves
        code, out = mcoflow("discover", "--filter", COMPOUND, "--timeout", "10")
        assert code == 0, out
        assert out.split()[: len(EXPECTED)] == EXPECTED

        # saved groups, used as @name; the fleet job runs on exactly their hosts
        code, out = mcoflow("groups", "add", "web", "class:web", "--description", "web tier")
        assert code == 0 and "group @web: class:web (10 known hosts now)" in out, out
        code, out = mcoflow("groups", "add", "big_web", "@web and cpus>=10")
        assert code == 0, out
        code, out = mcoflow("groups", "show", "big_web", "--json")
        assert code == 0, out
        assert json.loads(out)["hosts"] == EXPECTED[:3]
        target = "@big_web or (class:db and not os_family=redhat cpus=16)"
        code, out = mcoflow("install", "--filter", target, "nginx", "--no-wait")
        assert code == 0, out
        match = re.search(r"\b([0-9a-f]{32})\b", out)
        assert match, out
        deadline = time.monotonic() + 60
        while True:
            code, shown_text = mcoflow("plans", "show", match[1], "--json")
            assert code == 0, shown_text
            shown = json.loads(shown_text)
            if shown["state"] == "stopped" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert shown["result"] == "success", shown
        assert sorted(h["host"] for h in shown["hosts"]) == EXPECTED
        assert target in shown["label"]  # the operator's words, not the expansion

        # the API: groups, and a job on a group
        groups = httpx.get(f"{served.url}/api/v1/groups")
        assert [g["name"] for g in groups.json()["groups"]] == ["big_web", "web"]
        job = httpx.post(
            f"{served.url}/api/v1/jobs",
            json={"kind": "install", "filter": "@web and not @big_web", "parameter": "nginx"},
        )
        assert job.status_code == 201, job.text
        assert "@web and not @big_web" in job.json()["label"]
        page = httpx.get(f"{served.url}/groups")
        assert page.status_code == 200 and "@big_web" in page.text

        # a wrong filter names the column and the word, everywhere
        code, out = mcoflow("hosts", "--filter", "class:web and (cpus>2 or)")
        assert code == 2 and "column 25 (')')" in out, out
        code, out = mcoflow("install", "--filter", "@nope", "nginx", "--no-wait")
        assert code == 2 and "no saved group named 'nope'" in out, out
        bad = httpx.get(f"{served.url}/api/v1/hosts", params={"filter": "not"})
        assert bad.status_code == 422 and "column 4 (end of filter)" in bad.json()["detail"]
        code, out = mcoflow("groups", "remove", "web")
        assert code == 2 and "used by @big_web" in out, out
