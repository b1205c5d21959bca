"""When Ruby is installed (as on the MCollective CI job), Ruby itself reads what we write."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from mcoflow.rpc.mcollective.marshal import RubyKey, RubyValue, Symbol, dumps, loads
from tests.unit.rpc.mcollective.test_mco_marshal import same

pytestmark = pytest.mark.skipif(
    shutil.which("ruby") is None,
    reason="needs ruby: it checks the Marshal writer against Ruby's own (apt-get install ruby)",
)

# Ruby reads each line's Marshal bytes and dumps the value again
RUBY = 'STDIN.each_line { |l| puts Marshal.dump(Marshal.load([l.strip].pack("H*"))).unpack1("H*") }'


def scalar(rng: random.Random) -> RubyKey:
    text = "".join(rng.choice("aé☃ \n:/\\\x00\U0001f600zZ09") for _ in range(rng.randrange(8)))
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randrange(-300, 300),
            rng.randrange(-(2**70), 2**70),
            rng.choice([0.0, -0.0, 1e300, 5e-324, 0.1, 123.0]) * rng.choice([1, -1, 3.7]),
            text,
            Symbol(text or "s"),
            text.encode("utf-8") + bytes([rng.randrange(256)]),
        ]
    )


def plain(rng: random.Random, depth: int = 0) -> RubyValue:
    kind = rng.random()
    if depth > 3 or kind < 0.5:
        return scalar(rng)
    if kind < 0.75:
        return [plain(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {scalar(rng): plain(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_ruby_reads_back_what_we_write() -> None:
    rng = random.Random(19)
    values = [plain(rng) for _ in range(300)]
    lines = "".join(dumps(value).hex() + "\n" for value in values)
    result = subprocess.run(
        ["ruby", "-e", RUBY], input=lines, capture_output=True, text=True, check=True, timeout=60
    )
    redumped = result.stdout.split()
    assert len(redumped) == len(values)
    for value, ruby_hex in zip(values, redumped, strict=True):
        # Ruby may add object links for equal Floats; the value must be the same
        assert same(loads(bytes.fromhex(ruby_hex)), value), value
