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


_NAMES = {int: "int", float: "number", str: "string"}


def _scalar(tp: Any) -> Any:
    def conv(s: str) -> Any:
        try:
            return tp(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an' if tp is int else 'a'} {_NAMES.get(tp, tp.__name__)} (got {s!r})") from None

    return conv


def _field_parser(tp: Any, default: Any = None) -> tuple[Any, str]:
    """(argparse type callable, metavar) for a config field annotation; bad values give an argparse error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, meta = _field_parser(args[0], default)

        def optional(s: str) -> Any:
            if s.lower() == "none":
                return None
            try:
                return inner(s)
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"{e} or 'none'") from None

        return optional, meta + "|none"
    if origin is tuple:
        args = typing.get_args(tp)
        elem = args[0] if args else str
        word = _NAMES.get(elem, "value") + "s"
        example = ",".join(map(str, default)) if isinstance(default, tuple) and default else {int: "400,400", float: "0.1,0.2"}.get(elem, "a,b")

        def many(s: str) -> tuple:
            try:
                return tuple(elem(p.strip()) for p in s.split(",") if p.strip() != "")
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated {word}, e.g. {example} (got {s!r})") from None

        return many, "A,B,..."
    if tp in (int, float):
        return _scalar(tp), "INT" if tp is int else "FLOAT"
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
            conv, meta = _field_parser(tp, default)
            group.add_argument(flag, dest=f"cfg_{f.name}", type=conv, metavar=meta, default=None, help=text)


def _build_parser(recipe: Any = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperdnn", description="Hypernetworks on PyTorch: run published experiments.", epilog="Run 'hyperdnn COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # no abbreviated options: the recipe's options are added after its name is found (_peek_recipe)
    run = sub.add_parser("run", allow_abbrev=False, help="train and evaluate a recipe into a run directory", description="Train and evaluate a recipe; writes runs/RECIPE-<time>/ (config.json, metrics.jsonl, results.json/.md, plots, checkpoints). Ctrl-C writes a checkpoint; continue with --resume RUN_DIR (which takes only --threads, --data-dir and --no-progress besides: the run's config.json fixes the rest).")
    run.add_argument("recipe", nargs="?", help="recipe name (see 'hyperdnn list'); may be left out with --resume")
    run.add_argument("--seed", type=_scalar(int), default=None, help="seed for every RNG (default: 0)")
    run.add_argument("--threads", type=_scalar(int), default=None, help="torch CPU threads (default: 1, fastest for these small networks; on --resume the run's own)")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument("--data-dir", default=None, help="directory with the data files (default: $HYPERDNN_DATA, else ~/.cache/hyperdnn); on --resume the run's own unless given")
    run.add_argument("--out-dir", default=None, help="where run directories are made (default: runs)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted run from its last checkpoint (its config.json is used)")
    run.add_argument("--checkpoint-every", type=_scalar(int), default=None, metavar="STEPS", help="steps between checkpoints, 0 = only at the ends of phases, on Ctrl-C and at the end (default: 500)")
    run.add_argument("--log-every", type=_scalar(int), default=None, metavar="STEPS", help="steps between rows of metrics.jsonl (default: 1, every step)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    if recipe is not None:
        _add_recipe_options(run, recipe)

    sub.add_parser("list", help="list the recipes, one line each", description="List the recipes, one line each.")

    bench = sub.add_parser("bench", help="run the benchmarks (python -m benchmarks ARGS)", description="Run the project's benchmarks: 'python -m benchmarks ARGS' from a checkout. Every argument after 'bench' is passed on, e.g. 'hyperdnn bench --quick' (see 'python -m benchmarks --help').")
    # only for the help text: main() passes everything after 'bench' on before argparse sees it
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed on to python -m benchmarks")
    return parser


# options of 'run' itself: those that take a value, and flags
_RUN_VALUE_OPTIONS = {"--seed", "--threads", "--device", "--data-dir", "--out-dir", "--resume", "--checkpoint-every", "--log-every"}
_RUN_FLAGS = {"-h", "--help", "--no-progress"}


def _recipe_option_kinds() -> tuple[set[str], set[str]]:
    """(flags, options taking a value) over every recipe; an option of both kinds is in neither."""
    from hyperdnn.experiments.recipes import all_recipes

    flags: set[str] = set()
    valued: set[str] = set()
    for r in all_recipes():
        hints = typing.get_type_hints(r.config)
        for f in fields(r.config):
            flag = "--" + f.name.replace("_", "-")
            if hints.get(f.name) is bool:
                flags |= {flag, "--no-" + flag[2:]}
            else:
                valued.add(flag)
    both = flags & valued
    return flags - both, valued - both


def _recipe_token(argv: list[str]) -> str | None:
    """The recipe name after 'run': the first token that is neither an option nor an option's value.

    Stops (None) at an option it cannot classify, rather than guess which token is the name.
    """
    flags, valued = _recipe_option_kinds()
    flags |= _RUN_FLAGS
    valued |= _RUN_VALUE_OPTIONS
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not tok.startswith("-"):
            return tok
        opt = tok.split("=", 1)[0]
        if opt in flags or ("=" in tok and opt in valued):
            i += 1
        elif opt in valued:
            i += 2
        else:
            return None
    return None


def _option_value(argv: list[str], option: str) -> str | None:
    for i, tok in enumerate(argv):
        if tok == option and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(option + "="):
            return tok.split("=", 1)[1]
    return None


def _peek_recipe(argv: list[str]) -> Any:
    """The recipe that 'run' names (or that --resume RUN_DIR's config.json names), to add its options.

    Raises:
        ConfigError: the named recipe does not exist (also when options follow the name).
        CheckpointError: no recipe name and RUN_DIR's config.json is damaged.
    """
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.runs import read_run_config

    if not argv or argv[0] != "run":
        return None
    name = _recipe_token(argv)
    if name is not None:
        return get_recipe(name)
    resume = _option_value(argv, "--resume")
    if resume is not None and (Path(resume) / "config.json").is_file():
        return get_recipe(read_run_config(resume)["recipe"])
    return None


def _cmd_list() -> int:
    from hyperdnn.experiments.recipes import all_recipes, broken_recipe_modules

    recipes = all_recipes()
    width = max((len(r.name) for r in recipes), default=0)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.summary}")
    for mod, err in broken_recipe_modules().items():
        print(f"(recipes/{mod}.py failed to import: {err})", file=sys.stderr)
    return 0


# options that config.json fixes for a run: refused with --resume rather than ignored
_FIXED_ON_RESUME = ("seed", "device", "out_dir", "checkpoint_every", "log_every")


def _cmd_run(args: argparse.Namespace, recipe: Any, argv: list[str]) -> int:
    from hyperdnn.experiments.runs import RunInterrupted, read_run_config, run_recipe

    if args.recipe is None and args.resume is None:
        print("hyperdnn run: give a recipe name (see 'hyperdnn list') or --resume RUN_DIR", file=sys.stderr)
        return 2
    if recipe is None:  # --resume without a name: a missing config.json is reported here
        read_run_config(args.resume)
        print(f"hyperdnn run --resume: cannot tell the recipe of {args.resume}", file=sys.stderr)
        return 2
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    if args.resume is not None:
        fixed = [k for k in _FIXED_ON_RESUME if getattr(args, k) is not None] + sorted(overrides)
        if fixed:
            flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
            print(f"hyperdnn run --resume: the run's config.json fixes {flags}; drop them (only --threads, --data-dir and --no-progress may be given with --resume)", file=sys.stderr)
            return 2
    config = recipe.config(**overrides) if args.resume is None else None
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
            log_every=args.log_every,
            show_progress=not args.no_progress,
            argv=["hyperdnn", *argv],
        )
    except RunInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    return 0


def _cmd_bench(args: list[str]) -> int:
    # `python -m benchmarks` finds the package in the current directory (a checkout)
    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        print("hyperdnn bench: no 'benchmarks' package here; run it from a checkout of the hyperdnn repository (the benchmarks/ folder is not installed)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "benchmarks", *args])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hyperdnn`` command. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["bench"] and argv[1:] not in (["-h"], ["--help"]):
            # everything after 'bench' belongs to the benchmarks, options included (no '--' needed)
            rest = argv[2:] if argv[1:2] == ["--"] else argv[1:]
            return _cmd_bench(rest)
        recipe = _peek_recipe(argv)
        args = _build_parser(recipe).parse_args(argv)
        if args.command == "run" and args.recipe is not None and (recipe is None or args.recipe != recipe.name):
            # the name argparse found is not the one peeked at: parse again with that recipe's options
            from hyperdnn.experiments.recipes import get_recipe

            recipe = get_recipe(args.recipe)
            args = _build_parser(recipe).parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        return _cmd_run(args, recipe, argv)
    except HyperDNNError as e:
        print(f"hyperdnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nhyperdnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
