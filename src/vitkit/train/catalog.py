"""Named recipes: the package's own (shipped in the wheel) and, in a source checkout, those in ``recipes/``.

``resolve_recipe("cifar10_vit")`` finds a recipe by name; a path that exists is used as is, and a missing
``recipes/NAME.yaml`` (the layout before recipes moved into the package) resolves to the recipe ``NAME``.
Each recipe's header comment states its command, expected result and runtime (``# Command:`` ...).
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve()
_FIELDS = ("Command", "Expected", "Runtime")


def recipe_dirs() -> list[Path]:
    """Folders holding named recipes, the package's first."""
    dirs = [_HERE.parents[1] / "recipes", _HERE.parents[3] / "recipes"]  # vitkit/recipes; a checkout's recipes/
    return [d for d in dirs if d.is_dir()]


def named_recipes() -> dict[str, Path]:
    """Recipe name -> file; a packaged recipe wins over a checkout's of the same name."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def resolve_recipe(ref: str | Path) -> Path:
    """The recipe file that ``ref`` (a path or a recipe name) means."""
    path = Path(ref)
    if path.is_file():
        return path
    named = named_recipes()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    if (path.parent == Path(".") or path.parent.name == "recipes") and name in named:
        return named[name]
    raise FileNotFoundError(
        f"recipe {ref} not found: not a file, and not one of the named recipes ({', '.join(named) or 'none'}); "
        "`vitkit recipes` lists them (shipped in vitkit/recipes/)"
    )


def recipe_summary(path: str | Path) -> dict[str, str]:
    """``{"name", "command", "expected", "runtime"}`` from a recipe's header comment (one line per header line)."""
    out = {"name": Path(path).stem, **{f.lower(): "" for f in _FIELDS}}
    current = None
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        label, _, rest = text.partition(":")
        if label in _FIELDS:
            current = label.lower()
            out[current] = rest.strip()
        elif current and line.startswith("#   ") and text:
            out[current] += "\n" + text
        else:
            current = None
    return out
