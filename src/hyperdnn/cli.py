"""The ``hyperdnn`` command: ``run RECIPE``, ``list``, ``bench``.

Examples::

    hyperdnn list
    hyperdnn run toy-regression
    hyperdnn run split-mnist --steps 500 --threads 2 --data-dir ~/mnist
    hyperdnn run permuted-mnist --tasks 3 --steps 1000 --device cuda
    hyperdnn run --resume runs/split-mnist-20250101-120000
    hyperdnn run split-mnist --help         # shows the recipe's own options
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from hyperdnn.errors import HyperDNNError

__all__ = ["main"]


def _default_threads() -> int:
    # One thread: the recipes' small matrices run slower with more (toy-regression took 5 min
    # with 2 threads against 45 s with 1 on a 2-core machine); raise it by hand for big targets.
    return 1


def _field_parser(tp: Any) -> tuple[Any, str]:
    """(argparse type callable, metavar) for a config field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, meta = _field_parser(args[0])
        return (lambda s: None if s.lower() == "none" else inner(s)), meta + "|none"
    if origin is tuple:
        args = typing.get_args(tp)
        elem = args[0] if args else str
        conv = _field_parser(elem)[0]
        return (lambda s: tuple(conv(p) for p in s.split(",") if p.strip() != "")), "A,B,..."
    if tp is int:
        return int, "INT"
    if tp is float:
        return float, "FLOAT"
    return str, "STR"


def _add_recipe_options(parser: argparse.ArgumentParser, recipe: Any) -> None:
    group = parser.add_argument_group(f"options of recipe '{recipe.name}' (defaults: the published configuration)")
    hints = typing.get_type_hints(recipe.config)
    for f in fields(recipe.config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = f.metadata.get("help", "") if f.metadata else ""
        text = f"{text} (default: {shown})".strip()
        tp = hints.get(f.name, str)
        if tp is bool:
            group.add_argument(flag, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            conv, meta = _field_parser(tp)
            group.add_argument(flag, dest=f"cfg_{f.name}", type=conv, metavar=meta, default=None, help=text)


def _build_parser(recipe: Any = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperdnn", description="Hypernetworks on PyTorch: run published experiments.", epilog="Run 'hyperdnn COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="train and evaluate a recipe into a run directory", description="Train and evaluate a recipe; writes runs/RECIPE-<time>/ (config.json, metrics.jsonl, results.json/.md, plots, checkpoints). Ctrl-C writes a checkpoint; continue with --resume RUN_DIR.")
    run.add_argument("recipe", nargs="?", help="recipe name (see 'hyperdnn list'); may be left out with --resume")
    run.add_argument("--seed", type=int, default=0, help="seed for every RNG (default: 0)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1, fastest for these small networks; on --resume the run's own)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    run.add_argument("--data-dir", default=None, help="directory with the data files (default: $HYPERDNN_DATA, else ~/.cache/hyperdnn)")
    run.add_argument("--out-dir", default="runs", help="where run directories are made (default: runs)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted run from its last checkpoint (its config.json is used)")
    run.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS", help="steps between checkpoints, 0 = only at the end and on Ctrl-C (default: 500)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    if recipe is not None:
        _add_recipe_options(run, recipe)

    sub.add_parser("list", help="list the recipes, one line each", description="List the recipes, one line each.")

    bench = sub.add_parser("bench", help="run the benchmarks (python -m benchmarks ARGS)", description="Run the project's benchmarks: 'python -m benchmarks ARGS' from a checkout.")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed on to python -m benchmarks")
    return parser


def _peek_recipe(argv: list[str]) -> Any:
    """The recipe named after 'run' (or in --resume RUN_DIR's config.json), to add its options."""
    from hyperdnn.recipes import all_recipes

    if not argv or argv[0] != "run":
        return None
    names = {r.name: r for r in all_recipes()}
    for tok in argv[1:]:
        if tok in names:
            return names[tok]
    if "--resume" in argv:
        i = argv.index("--resume")
        if i + 1 < len(argv):
            cfg = Path(argv[i + 1]) / "config.json"
            if cfg.is_file():
                try:
                    return names.get(json.loads(cfg.read_text()).get("recipe"))
                except (json.JSONDecodeError, AttributeError):
                    return None
    return None


def _cmd_list() -> int:
    from hyperdnn.recipes import all_recipes, broken_recipe_modules

    recipes = all_recipes()
    width = max((len(r.name) for r in recipes), default=0)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.summary}")
    for mod, err in broken_recipe_modules().items():
        print(f"(recipes/{mod}.py failed to import: {err})", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace, recipe: Any, argv: list[str]) -> int:
    from hyperdnn.recipes import get_recipe
    from hyperdnn.runs import RunInterrupted, run_recipe

    if args.recipe is None and args.resume is None:
        print("hyperdnn run: give a recipe name (see 'hyperdnn list') or --resume RUN_DIR", file=sys.stderr)
        return 2
    if recipe is None:
        recipe = get_recipe(args.recipe) if args.recipe else None
        if recipe is None:
            print(f"hyperdnn run --resume: {args.resume} has no readable config.json naming a known recipe", file=sys.stderr)
            return 2
    if args.recipe is not None and args.recipe != recipe.name:
        get_recipe(args.recipe)  # raises the unknown-name error
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    if args.resume is not None and overrides:
        print(f"hyperdnn run --resume: the run's config.json is used; drop the options {sorted(overrides)}", file=sys.stderr)
        return 2
    config = recipe.config(**{**_defaults(recipe.config), **overrides}) if args.resume is None else None
    try:
        run_recipe(
            recipe,
            config,
            seed=args.seed,
            threads=args.threads if args.threads is not None else (None if args.resume else _default_threads()),
            device=args.device,
            data_dir=args.data_dir,
            out_dir=args.out_dir,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            show_progress=not args.no_progress,
            argv=["hyperdnn", *argv],
        )
    except RunInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    return 0


def _defaults(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    # `python -m benchmarks` finds the package in the current directory (a checkout)
    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        print("hyperdnn bench: no 'benchmarks' package here; run it from a checkout of the hyperdnn repository (the benchmarks/ folder is not installed)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "benchmarks", *args.args])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hyperdnn`` command. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        recipe = _peek_recipe(argv)
        args = _build_parser(recipe).parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        if args.command == "bench":
            return _cmd_bench(args)
        return _cmd_run(args, recipe, argv)
    except HyperDNNError as e:
        print(f"hyperdnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nhyperdnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
