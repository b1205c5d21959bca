"""The command line as real processes: a database or broker that does not answer is one
line with its URL (password hidden) and what to do; delayed jobs from `--at`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

MCOFLOW = str(Path(sys.executable).parent / "mcoflow")


def mcoflow(*args: str, cwd: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [MCOFLOW, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_database_that_does_not_exist_is_one_line(pg_server: str, tmp_path: Path) -> None:
    name = f"does_not_exist_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_server).set(drivername="postgresql", database=name)
    shown = url.render_as_string(hide_password=True)
    line = one_line_error(
        mcoflow("plans", "list", "--db", url.render_as_string(hide_password=False), cwd=tmp_path)
    )
    assert line == (
        f"error: cannot open the database {shown}: database does not exist; create it "
        f"(createdb {name}) or point --db / MCOFLOW_DATABASE_URL at one that does; "
        "mcoflow creates its tables itself"
    )


def test_a_server_that_does_not_answer_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://ops:s3cret@127.0.0.1:1/mcoflow"
    line = one_line_error(mcoflow("plans", "show", "abc", "--db", url, cwd=tmp_path))
    assert "s3cret" not in line
    assert line == (
        "error: cannot open the database postgresql://ops:***@127.0.0.1:1/mcoflow: "
        "connection refused; is PostgreSQL running and listening on 127.0.0.1:1?"
    )


def test_an_executor_whose_broker_does_not_answer_says_so(tmp_path: Path) -> None:
    done = mcoflow(
        "executor",
        "--db",
        f"sqlite:///{tmp_path / 'x.db'}",
        "--transport",
        "amqp://guest:s3cret@127.0.0.1:1/",
        "--log-level",
        "critical",
        cwd=tmp_path,
    )
    line = one_line_error(done)
    assert line == (
        "error: cannot connect to the broker amqp://guest:***@127.0.0.1:1/: connection "
        "refused; is RabbitMQ running and listening on 127.0.0.1:1?"
    )


def test_a_job_at_a_later_time_is_scheduled_and_a_past_time_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    job = ("install", "--filter", "identity:/^web-/  os_family=debian", "nginx", "--db", db)
    past = mcoflow(*job, "--at", "2001-01-01T10:00", cwd=tmp_path)
    assert past.returncode == 2, past.stdout + past.stderr
    assert re.search(r"error: --at: 2001-01-01 10:00:00\S* is in the past", past.stdout)
    unreadable = mcoflow(*job, "--at", "soon", cwd=tmp_path)
    assert unreadable.returncode == 2
    assert "--at: cannot read 'soon' as a time" in unreadable.stdout

    later = mcoflow(*job, "--at", "+2h", "--before", "+3h", cwd=tmp_path)
    assert later.returncode == 0, later.stdout + later.stderr
    label = "install nginx on hosts matching identity:/^web-/ os_family=debian"
    found = re.search(r"plan ([0-9a-f]{32}): (.*)", later.stdout)
    assert found is not None, later.stdout
    assert found.group(2) == label
    assert "scheduled: starts at" in later.stdout
    listing = mcoflow("plans", "list", "--db", db, cwd=tmp_path, columns=200)
    assert "scheduled" in listing.stdout
    assert re.search(r"at \d{4}-\d\d-\d\d", listing.stdout), listing.stdout
    shown = mcoflow("plans", "show", found.group(1), "--db", db, cwd=tmp_path, columns=200)
    assert label in shown.stdout
    assert "scheduled to start at" in shown.stdout
    assert "given up if not started by" in shown.stdout
