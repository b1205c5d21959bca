"""`python -m mcoflow.agent --config FILE`: run the agent daemon in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from mcoflow.agent.daemon import run_agent
from mcoflow.agent.refusals import serve_agent_metrics
from mcoflow.agent.settings import AgentSettings, ConfigError, config_path_from_env
from mcoflow.rpc.transport import TransportError
from mcoflow.runtime import tune_gc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcoflow.agent", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML file (default: $MCOFLOW_AGENT_CONFIG)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the config, the keys and the broker, a line each; the exit "
        "status says whether all passed",
    )
    args = parser.parse_args(argv)
    if args.check:
        from mcoflow.checks.agent import check_agent

        return check_agent(args.config or config_path_from_env())
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = AgentSettings.load(args.config or config_path_from_env())
        if config.metrics_listen:
            serve_agent_metrics(config.metrics_listen)
        tune_gc()
        asyncio.run(run_agent(config))
    except ConfigError as exc:
        print(f"mcoflow agent: {exc}", file=sys.stderr)
        return 2
    except TransportError as exc:  # the broker does not answer: say so in one line
        print(f"mcoflow agent: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        # Unreadable key or policy file, bad facts, unknown agent name, broker refused …
        print(f"mcoflow agent: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
