"""``vitkit`` entry point. Each module in this package that defines ``register(subparsers)`` adds a subcommand,
so a new command is one new file. Heavy imports stay inside the command functions to keep ``--help`` fast."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import vitkit.cli as cli_pkg


def build_parser() -> argparse.ArgumentParser:
    from vitkit.version import __version__

    parser = argparse.ArgumentParser(
        prog="vitkit", description="Vision Transformers: build, train, fine-tune, inspect, convert and run."
    )
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in ("main", "common"):
            continue
        module = importlib.import_module(f"vitkit.cli.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as err:
        print(f"vitkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:  # an optional part is missing: name the extra instead of a traceback
        from vitkit.utils.extras import missing_extra

        hint = missing_extra(err)
        if hint is None:
            raise
        print(f"vitkit {args.command}: error: this command {hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
