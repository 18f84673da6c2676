"""The ``hyperdnn`` command: ``run RECIPE``, ``list``, ``bench``.

Examples::

    hyperdnn list
    hyperdnn run toy-regression
    hyperdnn run split-mnist --steps 500 --threads 2 --data-dir ~/mnist
    hyperdnn run permuted-mnist --tasks 3 --steps 1000 --device cuda
    hyperdnn run path/to/my_recipe.py --steps 10     # a recipe file outside the package
    hyperdnn run --resume runs/split-mnist-20250101-120000
    hyperdnn run split-mnist --help                  # the recipe's own options
    torchrun --nproc_per_node 2 -m hyperdnn run toy-regression   # data-parallel
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from hyperdnn.errors import HyperDNNError
from hyperdnn.experiments.options import add_recipe_options, option_kinds, scalar

__all__ = ["main"]

# One thread: the recipes' small matrices run slower with more (toy-regression took 5 min
# with 2 threads against 45 s with 1 on a 2-core machine); raise it by hand for big targets.
DEFAULT_THREADS = 1

_RUN_DESCRIPTION = (
    "Train and evaluate a recipe; writes runs/RECIPE-<time>/ (config.json, metrics.jsonl, results.json/.md, figures, "
    "checkpoints). Ctrl-C writes a checkpoint; continue with --resume RUN_DIR (which takes only --threads, --data-dir and "
    "--no-progress besides: the run's config.json fixes the rest)."
)


def _add_run_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The options of 'run' itself, on the run parser (defaults None) and on each recipe's (not overriding)."""
    d = argparse.SUPPRESS if suppress else None
    g = p.add_argument_group("run options")
    g.add_argument("--seed", type=scalar(int), default=d, metavar="INT", help="seed for every RNG (default: 0)")
    g.add_argument("--threads", type=scalar(int), default=d, metavar="INT", help="torch CPU threads (default: 1, fastest for these small networks; on --resume the run's own)")
    g.add_argument("--device", default=d, metavar="{cpu,cuda,cuda:N}", help="where to train (default: cpu)")
    g.add_argument("--data-dir", default=d, metavar="DIR", help="directory with the data files (default: $HYPERDNN_DATA, else ~/.cache/hyperdnn); on --resume the run's own unless given")
    g.add_argument("--out-dir", default=d, metavar="DIR", help="where run directories are made (default: runs)")
    g.add_argument("--resume", metavar="RUN_DIR", default=d, help="continue an interrupted run from its last checkpoint (its config.json is used)")
    g.add_argument("--checkpoint-every", type=scalar(int), default=d, metavar="STEPS", help="steps between checkpoints, 0 = only at the ends of phases, on Ctrl-C and at the end (default: 500)")
    g.add_argument("--log-every", type=scalar(int), default=d, metavar="STEPS", help="steps between rows of metrics.jsonl (default: 1, every step)")
    g.add_argument("--skip-nonfinite", action="store_true", default=argparse.SUPPRESS if suppress else None, help="skip optimizer steps whose gradients hold NaN or infinities instead of stopping the run (default: a NaN loss stops it, exit status 3)")
    g.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS if suppress else False, help="no progress bar or periodic progress lines (a line per new phase/task still)")


class _Parser(argparse.ArgumentParser):
    """An unknown recipe name is the registry's error (one line, the nearest name suggested), not argparse's list."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if self.prog.endswith(" run") and isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            from hyperdnn.experiments.recipes import get_recipe

            get_recipe(value)  # raises ConfigError: unknown recipe ...; did you mean ...?
        super()._check_value(action, value)


def build_parser(files: dict[str, Any] | None = None, with_recipes: bool = True) -> argparse.ArgumentParser:
    """The parser of the ``hyperdnn`` command: one sub-parser per recipe under ``run``.

    Args:
        files: ``{path as given: recipe}`` for recipe files named on the command line.
        with_recipes: add the recipe sub-parsers (False: 'run' takes any recipe name, for --resume).
    """
    from hyperdnn.experiments.recipes import all_recipes

    parser = argparse.ArgumentParser(prog="hyperdnn", description="Hypernetworks on PyTorch: run published experiments.", epilog="Run 'hyperdnn COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run = sub.add_parser("run", allow_abbrev=False, help="train and evaluate a recipe into a run directory", description=_RUN_DESCRIPTION)
    _add_run_options(run, suppress=False)
    if with_recipes:
        recipes = run.add_subparsers(dest="recipe", metavar="RECIPE", parser_class=argparse.ArgumentParser, title="recipes", description="see 'hyperdnn list'; 'hyperdnn run RECIPE --help' shows a recipe's options; a path to a .py file runs the recipe it defines")
        for r in all_recipes():
            aliases = [path for path, fr in (files or {}).items() if fr is r]
            rp = recipes.add_parser(r.name, aliases=aliases, allow_abbrev=False, help=r.summary, description=f"{r.summary}. {_RUN_DESCRIPTION}")
            _add_run_options(rp, suppress=True)
            add_recipe_options(rp, r)
    else:
        run.add_argument("recipe", nargs="?", help="recipe name (see 'hyperdnn list'); may be left out with --resume")
    sub.add_parser("list", help="list the recipes, one line each", description="List the recipes, one line each.")
    bench = sub.add_parser("bench", help="run the benchmarks (python -m benchmarks ARGS, from a source checkout)", description="Run the project's benchmarks: 'python -m benchmarks ARGS' from a source checkout (the benchmarks/ folder is not installed with the package). Every argument after 'bench' is passed on, e.g. 'hyperdnn bench --quick' (see 'python -m benchmarks --help').")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="passed on to python -m benchmarks")
    return parser


def _cmd_list() -> int:
    from hyperdnn.experiments.recipes import all_recipes, broken_recipe_modules

    recipes = all_recipes()
    width = max((len(r.name) for r in recipes), default=0)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.summary}")
    for mod, err in broken_recipe_modules().items():
        print(f"(recipe {mod} failed to import: {err})", file=sys.stderr)
    return 0


def _load_files(argv: list[str]) -> dict[str, Any]:
    """Recipe files named after 'run' (a token ending in .py that is a file), loaded before parsing."""
    from hyperdnn.experiments.recipes import get_recipe

    return {tok: get_recipe(tok) for tok in argv[1:] if tok.endswith(".py") and Path(tok).is_file()}


def _resume_recipe(resume: str) -> Any:
    """The recipe of a run directory, from its config.json (a recipe file is loaded again)."""
    from hyperdnn.experiments.recipes import get_recipe, load_recipe_file
    from hyperdnn.experiments.run_dir import read_run_config

    saved = read_run_config(resume)
    source = saved.get("recipe_source")
    if isinstance(source, str):
        load_recipe_file(source)
    return get_recipe(saved["recipe"])


def _run(args: argparse.Namespace, recipe: Any, argv: list[str], fixed_extras: list[str]) -> int:
    from hyperdnn.experiments.resume import FIXED_ON_RESUME, refuse_fixed_options
    from hyperdnn.experiments.runs import RunInterrupted, run_recipe

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    if args.resume is not None:
        given = [k for k in FIXED_ON_RESUME if getattr(args, k, None) is not None] + fixed_extras
        refuse_fixed_options(given, as_flags=True)
    config = recipe.config(**overrides) if args.resume is None else None
    try:
        run_recipe(
            recipe,
            config,
            seed=args.seed,
            threads=args.threads if args.threads is not None else (None if args.resume else DEFAULT_THREADS),
            device=args.device,
            data_dir=args.data_dir,
            out_dir=args.out_dir,
            resume=args.resume,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            skip_nonfinite=args.skip_nonfinite,
            show_progress=not args.no_progress,
            argv=["hyperdnn", *argv],
        )
    except RunInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # under torchrun: leave the process group cleanly
            dist.destroy_process_group()
    return 0


def _cmd_run(argv: list[str]) -> int:
    resume = any(t == "--resume" or t.startswith("--resume=") for t in argv[1:])
    if not resume:
        files = _load_files(argv)
        args = build_parser(files).parse_args(argv)
        if args.recipe is None:
            print("hyperdnn run: give a recipe name (see 'hyperdnn list') or --resume RUN_DIR", file=sys.stderr)
            return 2
        from hyperdnn.experiments.recipes import get_recipe

        return _run(args, files.get(args.recipe) or get_recipe(args.recipe), argv, [])
    # --resume: the run's config.json names the recipe; its options are refused, not parsed
    parser = build_parser(with_recipes=False)
    args, extras = parser.parse_known_args(argv)
    recipe = _resume_recipe(args.resume)
    known = option_kinds(recipe)
    flags = [t.split("=", 1)[0] for t in extras if t.startswith("--")]
    unknown = [t for t in extras if t.startswith("-") and t.split("=", 1)[0] not in known]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.recipe is not None and not flags and args.recipe != recipe.name:
        from hyperdnn.errors import ConfigError

        raise ConfigError(f"run --resume: {args.resume} is a '{recipe.name}' run (asked to resume it as '{args.recipe}')")
    return _run(args, recipe, argv, flags)


def _cmd_bench(args: list[str]) -> int:
    # `python -m benchmarks` finds the package in the current directory (a checkout); it is not installed
    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        print(
            "hyperdnn bench: the benchmarks need a source checkout of hyperdnn (the benchmarks/ folder is not part of the "
            "installed package); run 'hyperdnn bench' from the checkout's top folder, e.g. after 'git clone' and 'pip install -e .'",
            file=sys.stderr,
        )
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
        if argv[:1] == ["run"]:
            return _cmd_run(argv)
        args = build_parser().parse_args(argv)
        if args.command == "list":
            return _cmd_list()
        return 2  # argparse handled --help / errors above
    except HyperDNNError as e:
        from hyperdnn.experiments.context import NonFiniteLossError

        print(f"hyperdnn: error: {e}", file=sys.stderr)
        return 3 if isinstance(e, NonFiniteLossError) else 2
    except KeyboardInterrupt:
        print("\nhyperdnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
