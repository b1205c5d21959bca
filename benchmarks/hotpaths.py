"""The per-message costs mcoflow chose a faster way for, each against the default way,
measured interleaved in one process (the machine's speed drifts; a ratio measured
side by side does not).

    python benchmarks/hotpaths.py [--json] [--rounds 30]

1. Array parameters of the engine's bulk UPDATE (PostgreSQL): psycopg's text dumper
   against mcoflow's (``mcoflow.engine.store.pgarrays``): client CPU per statement of
   500 outcomes, executed on the real server.
2. Ed25519: checking and signing a 400-byte body with OpenSSL (``cryptography``)
   against libsodium (PyNaCl, what ``mcoflow.rpc.security`` uses).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

CORES = os.cpu_count() or 1
PG_URL = os.environ.get("MCOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# what write_outcomes sends for a batch of suspended remote steps
STATEMENT = """
    SELECT count(*) FROM unnest(CAST(%s AS varchar[]), CAST(%s AS int[]),
        CAST(%s AS varchar[]), CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]),
        CAST(%s AS float8[]), CAST(%s AS float8[]), CAST(%s AS float8[]))
"""


def outcome_columns(rows: int) -> list[list[Any]]:
    data = json.dumps(
        {"request_id": f"{uuid.uuid4().hex}:1:1", "hosts": ["sim-00001"], "sent_at": 1.5e9}
    )
    output = json.dumps({"changed": True, "version": "1.2-3", "output": 'said "ok"\n'})
    return [
        [uuid.uuid4().hex for _ in range(rows)],
        list(range(rows)),
        ["suspended"] * rows,
        [output] * rows,
        [data] * rows,
        [None] * rows,
        [0.5] * rows,
        [None] * rows,
        [0.0012] * rows,
    ]


def interleaved(
    ways: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> dict[str, float]:
    """Median CPU seconds per call of each way, the ways taking turns every round."""
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, call in ways.items():
            started = time.process_time()
            for _ in range(per_round):
                call()
            samples[name].append((time.process_time() - started) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def array_parameters(rounds: int) -> list[tuple[str, float, str]]:
    import psycopg
    from psycopg.types.array import ListDumper

    from mcoflow.engine.store.pgarrays import FastListDumper

    columns = outcome_columns(500)
    connections = {}
    for name, dumper in (("psycopg", ListDumper), ("mcoflow", FastListDumper)):
        conn = psycopg.connect(PG_URL, autocommit=True)
        conn.adapters.register_dumper(list, dumper)
        connections[name] = conn

    def run(conn: Any) -> Callable[[], None]:
        def call() -> None:
            conn.execute(STATEMENT, columns).fetchone()

        return call

    try:
        costs = interleaved({n: run(c) for n, c in connections.items()}, rounds, 5)
    finally:
        for conn in connections.values():
            conn.close()
    return [
        ("bulk UPDATE params, 500 rows: psycopg dumper", costs["psycopg"] * 1e3, "ms CPU"),
        ("bulk UPDATE params, 500 rows: mcoflow dumper", costs["mcoflow"] * 1e3, "ms CPU"),
        ("bulk UPDATE params: mcoflow / psycopg", costs["mcoflow"] / costs["psycopg"] * 100, "%"),
    ]


def signatures(rounds: int) -> list[tuple[str, float, str]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from nacl.signing import SigningKey

    body = os.urandom(400)
    openssl = Ed25519PrivateKey.generate()
    openssl_public = openssl.public_key()
    signature = openssl.sign(body)
    sodium = SigningKey.generate()
    sodium_public = sodium.verify_key
    sodium_signature = sodium.sign(body).signature

    checks = interleaved(
        {
            "openssl": lambda: openssl_public.verify(signature, body),
            "sodium": lambda: sodium_public.verify(body, sodium_signature),
        },
        rounds,
        200,
    )
    signs = interleaved(
        {"openssl": lambda: openssl.sign(body), "sodium": lambda: sodium.sign(body)},
        rounds,
        200,
    )
    return [
        ("Ed25519 check: OpenSSL (cryptography)", checks["openssl"] * 1e6, "us CPU"),
        ("Ed25519 check: libsodium (PyNaCl)", checks["sodium"] * 1e6, "us CPU"),
        ("Ed25519 check: libsodium / OpenSSL", checks["sodium"] / checks["openssl"] * 100, "%"),
        ("Ed25519 sign: OpenSSL (cryptography)", signs["openssl"] * 1e6, "us CPU"),
        ("Ed25519 sign: libsodium (PyNaCl)", signs["sodium"] * 1e6, "us CPU"),
        ("Ed25519 sign: libsodium / OpenSSL", signs["sodium"] / signs["openssl"] * 100, "%"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="one JSON object per figure")
    parser.add_argument("--rounds", type=int, default=30, help="turns each way takes")
    args = parser.parse_args()
    rows = [*array_parameters(args.rounds), *signatures(args.rounds)]
    if args.json:
        for metric, value, unit in rows:
            print(
                json.dumps(
                    {
                        "benchmark": "hotpaths",
                        "metric": metric,
                        "value": round(value, 3),
                        "unit": unit,
                        "store": "postgresql",
                        "n": args.rounds,
                        "cores": CORES,
                    }
                )
            )
        return
    print(
        f"hot paths - {CORES} cores, {platform.machine()}, Python {platform.python_version()},"
        f" load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"{'metric':<50} {'value':>10}  unit")
    for metric, value, unit in rows:
        print(f"{metric:<50} {value:>10.2f}  {unit}")


if __name__ == "__main__":
    main()
