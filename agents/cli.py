"""The ``shrinkml`` command line: parses arguments once, builds configs, calls the libraries.

Subcommands live in small modules (``agents/commands_*.py``); each registers its parser here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agents import commands_asr, commands_demo, commands_finetune, commands_search
from agents.run_dir import RunDirInUse

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shrinkml",
        description="Compress LSTM speech recognisers with reinforcement-learned SVD ranks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands_asr.register(sub)
    commands_demo.register(sub)
    commands_search.register(sub)
    commands_finetune.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, RunDirInUse) as e:
        print(f"shrinkml {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"shrinkml {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
