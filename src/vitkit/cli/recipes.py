"""``vitkit recipes``: the shipped training recipes, each with its command, expected result and runtime."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="list the shipped training recipes (use a name with train --config)")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.train.catalog import named_recipes, recipe_summary

    rows = [{**recipe_summary(path), "path": str(path)} for path in named_recipes().values()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        print(row["name"])
        for key in ("command", "expected", "runtime"):
            lines = (row[key] or "-").splitlines()
            print(f"  {key:9s} " + f"\n{' ' * 12}".join(lines))
    print("train one: vitkit train --config NAME (or a path to your own YAML)")
    return 0
