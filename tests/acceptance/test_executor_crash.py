"""Acceptance (issue 2): SIGKILL the executor at random points, restart it, and check
that every plan finishes and each non-idempotent step's effect commits exactly once.

The executor runs as a real subprocess (`mcoflow executor`) on a SQLite file and on the
real PostgreSQL. The test process is the operator and the outside world: it triggers
waves of plans, delivers the events external steps wait for (some while no executor
is running), answers requests found in the outbox as an agent would, and resumes
plans paused by an "abnormal termination". Kills come at seeded random points; some
wait until a non-idempotent run is in flight so the abnormal-termination path is
always exercised. ``CRASH_TEST_SEED=<n>`` repeats a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcoflow.engine import PlanFilter, PlanResult, PlanState, Step, StepState, World
from mcoflow.testing import assert_eventually
from tests.acceptance import crash_actions as C

REPO = Path(__file__).resolve().parents[2]
MCOFLOW = Path(sys.executable).parent / "mcoflow"
ACTIONS_MODULE = "tests.acceptance.crash_actions"

# the first before any executor runs, the others during the kills (and one more before
# any later kill that waits for a run in flight)
WAVES = 5
PLANS_PER_WAVE = 16
# how each kill picks its moment: a random delay after the executor registered; a
# random delay, then wait until a non-idempotent run is in flight; or a random delay
# after spawning (during start-up, before it may have registered)
KILL_MODES = ["random", "random", "in_flight", "in_flight", "in_flight", "startup"]

NON_IDEMPOTENT = {C.Effect.name, C.RequestReply.name, C.DelayedEffect.name}
TIMERS = {C.TimerWait.name, C.DelayedEffect.name}
# claims of a step when nothing goes wrong: the first run, and one per wake-up
NORMAL_CLAIMS = {
    C.Noop.name: 1,
    C.Effect.name: 1,
    C.TimerWait.name: 2,
    C.ExternalWait.name: 2,
    C.RequestReply.name: 2,
    C.DelayedEffect.name: 2,
}
# at most this many runs follow a resume: the run again, and for a step that suspends, the
# run its wake-up event makes
RUNS_PER_RESUME = {C.Effect.name: 1, C.RequestReply.name: 2, C.DelayedEffect.name: 2}
ABNORMAL = "abnormal termination"


class BackgroundFailure(Exception):
    """A helper task failed; not an AssertionError so assert_eventually stops at once."""


# ---- the executor subprocess ----------------------------------------------------------


class ExecutorProcess:
    def __init__(self, url: str, number: int, workdir: Path, env: dict[str, str]) -> None:
        self.number = number
        self.log = workdir / f"executor-{number}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(MCOFLOW),
                    "executor",
                    "--db",
                    url,
                    "--import",
                    ACTIONS_MODULE,
                    "--poll-interval",
                    "0.05",
                    "--heartbeat-interval",
                    "0.5",
                    "--dead-after",
                    "5",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
            )
        self.spawned = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL and reap (a zombie's pid still looks alive to the dead-executor check)."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=10)

    def terminate(self, timeout: float) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def ensure_dead(self) -> None:
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def output(self, tail: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-tail:]


def executor_env(run_log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCOFLOW_")}
    # the repository root makes `tests.acceptance.crash_actions` importable; a
    # PYTHONPATH already set stays first
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    env[C.RUN_LOG_ENV] = str(run_log)
    return env


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ", re.MULTILINE)


def log_problems(text: str) -> tuple[list[str], int]:
    """Error records and tracebacks in an executor's log: (unexpected ones, how many
    were the publisher refusing this test's outbox destination). The test's effects
    are outbox rows; whether a broker takes them is not what this test is about."""
    starts = [m.start() for m in LOG_RECORD.finditer(text)]
    records = [text[a:b] for a, b in zip([0, *starts], [*starts, len(text)], strict=True)]
    unexpected: list[str] = []
    publish = 0
    for record in records:
        level = LOG_RECORD.match(record)
        if not ("Traceback" in record or (level and level[1] in ("ERROR", "CRITICAL"))):
            continue
        if "publish" in record and "outbox" in record and repr(C.EFFECTS) in record:
            publish += 1
        else:
            unexpected.append(record.strip())
    return unexpected, publish


# ---- the run log ----------------------------------------------------------------------


def read_run_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def in_flight(
    records: list[dict[str, Any]], pid: int, only_non_idempotent: bool = False
) -> list[tuple[str, int, str]]:
    """Runs this pid started and has not ended: (plan, step, action)."""
    open_runs: Counter[tuple[str, int, str]] = Counter()
    for r in records:
        if r["pid"] != pid or r["what"] not in ("start", "end"):
            continue
        if only_non_idempotent and r["idempotent"]:
            continue
        key = (r["plan"], r["step"], r["action"])
        open_runs[key] += 1 if r["what"] == "start" else -1
    return sorted(k for k, n in open_runs.items() if n > 0)


# ---- the test -------------------------------------------------------------------------


@dataclass
class Kill:
    number: int
    mode: str
    pid: int
    after: float  # seconds after spawning
    registered: bool
    at: float = field(default_factory=time.time)
    interrupted: list[tuple[str, int, str]] = field(default_factory=list)
    last_activity: float | None = None  # the last run log line of this executor


class CrashTest:
    def __init__(self, world: World, url: str, workdir: Path, seed: int) -> None:
        self.world = world
        self.url = url
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.run_log = workdir / "runs.jsonl"
        self.env = executor_env(self.run_log)
        self.executors: list[ExecutorProcess] = []
        self.kills: list[Kill] = []
        self.plan_ids: list[str] = []
        self.waves = 0
        # the outside world's side
        self.external_due: dict[tuple[str, int], float] = {}
        self.external_sent: dict[tuple[str, int], dict[str, Any]] = {}
        self.replies_sent: dict[tuple[str, int], dict[str, Any]] = {}
        self.delivered_while_down = 0
        self.resumes: list[tuple[str, list[tuple[int, str, str]]]] = []
        self.stopping = asyncio.Event()
        self.failure: BaseException | None = None
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}

    # -- executors

    def spawn(self) -> ExecutorProcess:
        ex = ExecutorProcess(self.url, len(self.executors) + 1, self.workdir, self.env)
        self.executors.append(ex)
        return ex

    @property
    def current(self) -> ExecutorProcess:
        return self.executors[-1]

    async def registered(self, ex: ExecutorProcess) -> None:
        """Wait until ``ex`` is the one executor in the table (a killed one is released
        by its successor's start: no dead executor stays)."""

        async def check() -> None:
            self.raise_background()
            if not ex.alive():
                raise BackgroundFailure(
                    f"executor {ex.number} exited with {ex.proc.returncode}:\n{ex.output()}"
                )
            pids = sorted(e.pid for e in await self.world.executors())
            assert pids == [ex.pid], f"executors table holds pids {pids}, want [{ex.pid}]"

        await assert_eventually(check, timeout=30, interval=0.05)

    # -- plans

    async def trigger_wave(self) -> None:
        args = []
        for _ in range(PLANS_PER_WAVE):
            args.append(
                {
                    "work": [round(self.rng.uniform(0.05, 0.4), 3) for _ in range(6)],
                    "timer": round(self.rng.uniform(0.2, 1.0), 3),
                    "delay": round(self.rng.uniform(0.2, 1.0), 3),
                }
            )
        ids = await self.world.trigger_many(C.CrashPlan, args, by="crash-test")
        self.waves += 1
        now = time.monotonic()
        for plan_id in ids:
            for s in await self.world.steps(plan_id):
                if s.action == C.ExternalWait.name:
                    self.external_due[(plan_id, s.idx)] = now + self.rng.uniform(0.0, 2.5)
        self.plan_ids.extend(ids)

    # -- background: the outside world and the operator

    def raise_background(self) -> None:
        if self.failure is not None:
            raise BackgroundFailure(f"a helper task failed: {self.failure!r}") from self.failure

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        try:
            while not self.stopping.is_set():
                await loop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 0.05)
        except Exception as exc:
            self.failure = exc
            raise

    async def deliver_once(self) -> None:
        """External events when due (with a duplicate that must be dropped), and a reply
        to every request the outbox holds."""
        now = time.monotonic()
        down = not self.current.alive() if self.executors else True
        for key, due in sorted(self.external_due.items()):
            if due > now:
                continue
            plan_id, idx = key
            payload = {"external": f"ext:{plan_id}:{idx}"}
            dedupe = f"ext:{plan_id}:{idx}"
            assert await self.world.event(plan_id, idx, payload, dedupe_key=dedupe)
            duplicate = await self.world.event(plan_id, idx, {"external": "dup"}, dedupe_key=dedupe)
            assert not duplicate, f"a duplicate event to {key} was accepted"
            del self.external_due[key]
            self.external_sent[key] = payload
            self.delivered_while_down += down
        for m in await self.world.store.outbox_messages():
            key = (m["plan_id"], m["step_idx"])
            if m["message"].get("what") != "request" or key in self.replies_sent:
                continue
            payload = {"reply": f"reply:{key[0]}:{key[1]}"}
            assert await self.world.event(*key, payload, dedupe_key=f"reply:{key[0]}:{key[1]}")
            self.replies_sent[key] = payload

    async def operate_once(self) -> None:
        """Resume paused plans, after checking that each failed only by a crash."""
        page = await self.world.list_plans(PlanFilter(state=PlanState.PAUSED), limit=10_000)
        for plan in page.items:
            errored = [s for s in await self.world.steps(plan.id) if s.state is StepState.ERROR]
            assert errored, f"plan {plan.id} paused ({plan.error}) with no failed step"
            for s in errored:
                error = s.error or {}
                assert error.get("type") == "AbnormalTermination" and str(
                    error.get("message", "")
                ).startswith(ABNORMAL), f"plan {plan.id} step {s.idx} {s.action}: {error}"
                assert not s.idempotent, f"idempotent step {s.idx} of {plan.id} errored: {error}"
            failed = [(s.idx, s.action, str((s.error or {}).get("message"))) for s in errored]
            self.resumes.append((plan.id, failed))
            await self.world.resume(plan.id, by="crash-test operator")

    # -- the scenario

    async def kill_current(self, number: int, mode: str) -> None:
        ex = self.current
        registered = mode != "startup"
        if registered:
            await self.registered(ex)
        # a kill waiting for a run in flight needs work left: without a new wave, the
        # plans may all be done or waiting by then, and nothing would ever run
        if number < WAVES - 1 or mode == "in_flight":
            await self.trigger_wave()
        if mode == "startup":
            await asyncio.sleep(self.rng.uniform(0.0, 0.8))
        else:
            await asyncio.sleep(self.rng.uniform(0.2, 1.2))  # the random point
        if mode == "in_flight":

            def busy() -> bool:
                self.raise_background()
                return bool(in_flight(read_run_log(self.run_log), ex.pid, True))

            await assert_eventually(busy, timeout=15, interval=0.01)
        code = ex.kill()
        kill = Kill(number, mode, ex.pid, time.monotonic() - ex.spawned, registered)
        records = read_run_log(self.run_log)
        kill.interrupted = in_flight(records, ex.pid)
        kill.last_activity = max((r["t"] for r in records if r["pid"] == ex.pid), default=None)
        self.kills.append(kill)
        assert code == -signal.SIGKILL, f"executor {ex.number} exited with {code} before the kill"
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))  # down for a while: events still come

    async def scenario(self) -> None:
        await self.trigger_wave()  # waiting in the database before any executor starts
        self.spawn()
        helpers = [
            asyncio.create_task(self._guarded(self.deliver_once)),
            asyncio.create_task(self._guarded(self.operate_once)),
        ]
        try:
            modes = list(KILL_MODES)
            self.rng.shuffle(modes)
            for number, mode in enumerate(modes):
                await self.kill_current(number, mode)
                self.spawn()
            await self.registered(self.current)
            self.timings["kill phase"] = time.monotonic() - self.started
            await self.wait_all_stopped()
            self.timings["all stopped"] = time.monotonic() - self.started
        finally:
            self.stopping.set()
            await asyncio.gather(*helpers, return_exceptions=True)
        self.raise_background()

    async def wait_all_stopped(self) -> None:
        async def check() -> None:
            self.raise_background()
            if not self.current.alive():
                raise BackgroundFailure(f"the last executor exited:\n{self.current.output()}")
            page = await self.world.list_plans(limit=10_000)
            live = [p for p in page.items if p.state is not PlanState.STOPPED]
            assert not live, f"{len(live)} plans not stopped yet"

        try:
            await assert_eventually(check, timeout=60, interval=0.1)
        except AssertionError:
            print(await self.describe_unfinished())
            raise

    async def describe_unfinished(self) -> str:
        lines = []
        page = await self.world.list_plans(limit=10_000)
        live = [p for p in page.items if p.state is not PlanState.STOPPED]
        for p in live[:5]:
            lines.append(f"plan {p.id}: {p.state.value} {p.result.value} {p.error or ''}")
            for s in await self.world.steps(p.id):
                lines.append(
                    f"  step {s.idx} {s.action} {s.state.value} attempts={s.attempts} "
                    f"claimed_by={s.claimed_by} error={s.error and s.error.get('message')}"
                )
            for e in await self.world.store.get_events(p.id):
                lines.append(
                    f"  event {e['id']} step {e['step_idx']} {e['kind']} {e['payload']} "
                    f"due={e['due_at']:.2f} consumed={e['consumed_at']}"
                )
        return "\n".join(lines)

    def stop_last(self) -> int:
        return self.current.terminate(timeout=40)

    def cleanup(self) -> None:
        for ex in self.executors:
            ex.ensure_dead()

    # -- the verdict

    async def verify(self) -> dict[str, Any]:
        world = self.world
        total = self.waves * PLANS_PER_WAVE
        assert len(self.plan_ids) == total
        page = await world.list_plans(limit=10_000)
        assert page.total == total
        not_ok = [
            p for p in page.items if (p.state, p.result) != (PlanState.STOPPED, PlanResult.SUCCESS)
        ]
        assert not not_ok, (
            f"plans not stopped with success: {[(p.id, p.state, p.result) for p in not_ok]}"
        )

        outbox = await world.store.outbox_messages()
        committed = Counter((m["plan_id"], m["step_idx"]) for m in outbox)
        messages = {(m["plan_id"], m["step_idx"]): m["message"] for m in outbox}
        extra_claims = 0
        timer_events = 0
        problems: list[str] = []
        for plan_id in self.plan_ids:
            steps = await world.steps(plan_id)
            events = await world.store.get_events(plan_id)
            history = await world.history(plan_id)
            tokens = {
                s.idx: (s.output or {}).get("token") for s in steps if s.action == C.Noop.name
            }
            for s in steps:
                if not s.has_run:
                    continue
                key = (plan_id, s.idx)
                where = f"plan {plan_id} step {s.idx} {s.action}"
                if s.state is not StepState.SUCCESS or s.claimed_by is not None:
                    problems.append(f"{where}: {s.state.value}, claimed by {s.claimed_by}")
                extra_claims += s.attempts - NORMAL_CLAIMS[s.action]
                effects = committed[key]
                want = 1 if s.action in NON_IDEMPOTENT else 0
                if effects != want:
                    problems.append(f"{where}: {effects} committed effects, want {want}")
                if s.action in TIMERS:
                    timers = [e for e in events if e["step_idx"] == s.idx]
                    timer_events += len(timers)
                    if len(timers) != 1:
                        problems.append(f"{where}: {len(timers)} timer events, want 1")
                problems.extend(self._check_output(where, key, s, messages, tokens))
            problems.extend(
                f"plan {plan_id}: event {e['id']} for step {e['step_idx']} never consumed"
                for e in events
                if e["consumed_at"] is None
            )
            if not any(h.what == "stopped" for h in history):
                problems.append(f"plan {plan_id}: no 'stopped' in its history")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])

        records = read_run_log(self.run_log)
        finalized = {r["plan"] for r in records if r["what"] == "finalize"}
        assert finalized == set(self.plan_ids), "some plans never ran their finalize phase"

        # every non-idempotent run a kill interrupted was reported as an abnormal
        # termination, and the operator resumed exactly the plans that had one
        abnormal_count: Counter[tuple[str, int]] = Counter()
        for plan_id in self.plan_ids:
            for h in await world.history(plan_id):
                if h.what == ABNORMAL:
                    found = re.fullmatch(r"step (\d+)", h.detail or "")
                    assert found, f"plan {plan_id}: history {h} does not name the step"
                    abnormal_count[(plan_id, int(found[1]))] += 1
        abnormal = set(abnormal_count)
        # the engine never re-runs a non-idempotent step by itself: beyond its normal runs,
        # it starts again only after an abnormal termination and the operator's resume
        starts = Counter(
            (r["plan"], r["step"], r["action"]) for r in records if r["what"] == "start"
        )
        rerun = [
            f"plan {p} step {i} {a}: {n} runs with {abnormal_count[(p, i)]} abnormal terminations"
            for (p, i, a), n in sorted(starts.items())
            if a in NON_IDEMPOTENT
            and n > NORMAL_CLAIMS[a] + RUNS_PER_RESUME[a] * abnormal_count[(p, i)]
        ]
        assert not rerun, "non-idempotent steps re-run without the operator:\n" + "\n".join(rerun)
        interrupted = [(k, run) for k in self.kills for run in k.interrupted]
        non_idempotent_hits = {(p, i) for _, (p, i, a) in interrupted if a in NON_IDEMPOTENT}
        missing = non_idempotent_hits - abnormal
        assert not missing, (
            f"interrupted non-idempotent runs with no abnormal termination: {missing}"
        )
        resumed_steps = {(p, idx) for p, errs in self.resumes for idx, _, _ in errs}
        assert resumed_steps == abnormal, (
            f"resumed {sorted(resumed_steps - abnormal)} without an abnormal termination, "
            f"never resumed {sorted(abnormal - resumed_steps)}"
        )
        last = self.current.pid
        assert not in_flight(records, last), "the SIGTERMed executor left runs unfinished"

        # the kills really hit work in flight
        assert len(self.kills) >= 5
        assert interrupted, "no kill landed while a step was running"
        assert non_idempotent_hits, "no kill caught a non-idempotent step running"
        return {
            "runs": sum(1 for r in records if r["what"] == "start"),
            "interrupted": len(interrupted),
            "interrupted_non_idempotent": len(non_idempotent_hits),
            "abnormal": len(abnormal),
            "resumes": len(self.resumes),
            "extra_claims": extra_claims,
            "timer_events": timer_events,
            "effects": len(outbox),
        }

    def _check_output(
        self,
        where: str,
        key: tuple[str, int],
        s: Step,
        messages: dict[tuple[str, int], dict[str, Any]],
        tokens: dict[int, Any],
    ) -> list[str]:
        out = s.output or {}
        plan_id, idx = key
        expected: Any
        if s.action == C.ExternalWait.name:
            got, expected = out.get("got"), self.external_sent.get(key)
        elif s.action == C.RequestReply.name:
            got, expected = out.get("reply"), self.replies_sent.get(key)
        elif s.action in TIMERS:
            got, expected = out.get("fired"), {"timer": f"timer:{plan_id}:{idx}"}
        elif s.action == C.Effect.name and out.get("tag") == "late":
            # its input referred to the first Noop's output, resolved at run time
            got, expected = messages.get(key, {}).get("token"), tokens[min(tokens)]
        else:
            return []
        if got is None or got != expected:
            return [f"{where}: output {got!r}, want {expected!r}"]
        return []


async def _run(crash: CrashTest, store: str, seed: int) -> None:
    started = time.monotonic()
    await crash.scenario()
    code = await asyncio.to_thread(crash.stop_last)
    assert code == 0, f"the last executor exited with {code} on SIGTERM:\n{crash.current.output()}"
    assert await crash.world.executors() == [], "an executor is still registered"
    publish_failures = 0
    for ex in crash.executors:
        unexpected, publish = log_problems(ex.output(tail=10**8))
        assert not unexpected, f"executor {ex.number} logged:\n" + "\n".join(unexpected[:3])
        publish_failures += publish
    summary = await crash.verify()
    print(
        f"\ncrash test [{store}] seed {seed}: {len(crash.plan_ids)} plans, "
        f"{len(crash.kills)} kills, {time.monotonic() - started:.1f} s"
    )
    for k in crash.kills:
        non_idem = sum(1 for _, _, a in k.interrupted if a in NON_IDEMPOTENT)
        print(
            f"  kill {k.number + 1} ({k.mode}) pid {k.pid} {k.after:.2f} s after spawn: "
            f"{len(k.interrupted)} runs in flight ({non_idem} non-idempotent)"
            + (
                f", last run activity {k.at - k.last_activity:.2f} s before"
                if k.last_activity is not None
                else ""
            )
        )
    print(
        "  runs started {runs}, interrupted {interrupted} ({interrupted_non_idempotent} "
        "non-idempotent); abnormal terminations {abnormal}; operator resumes {resumes}; "
        "extra claims (re-runs) {extra_claims}; timer events {timer_events}; "
        "committed effects {effects}".format(**summary)
        + f"; external events delivered while no executor ran: {crash.delivered_while_down}"
    )
    print("  " + ", ".join(f"{k} after {v:.1f} s" for k, v in crash.timings.items()))
    if publish_failures:
        print(
            f"  ({publish_failures} attempts to publish outbox messages for {C.EFFECTS!r} "
            "failed: the broker has no route for it; the rows are what this test counts)"
        )


async def test_executor_survives_repeated_kill_9(db_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_TEST_SEED") or secrets.randbits(32))
    store = db_url.split(":", 1)[0]
    print(f"\ncrash test [{store}] seed {seed} (CRASH_TEST_SEED={seed} repeats it)")
    world = await World.open(db_url)  # creates the schema before any executor starts
    crash = CrashTest(world, db_url, tmp_path, seed)
    try:
        async with asyncio.timeout(170):
            await _run(crash, store, seed)
    except BaseException:
        for ex in crash.executors[-2:]:
            print(f"--- executor {ex.number} (pid {ex.pid}), end of its log:\n{ex.output()}")
        raise
    finally:
        crash.cleanup()
        await world.close()
