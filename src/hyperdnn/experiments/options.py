"""Command-line options made from a recipe's config dataclass: types, metavars, help and choices.

Each field ``name: T = default`` becomes ``--name`` (underscores as dashes). The help
text comes from ``field(metadata={"help": ...})``, else from :data:`COMMON_HELP` (the
fields many recipes share); allowed values from ``metadata={"choices": [...]}``, else
from :data:`COMMON_CHOICES`.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Callable

# descriptions of the fields that several recipes share, for fields without metadata["help"]
COMMON_HELP = {
    "steps": "optimizer steps per task",
    "epochs": "passes over the training set per model",
    "batch_size": "training minibatch size",
    "lr": "Adam learning rate",
    "clip": "largest gradient norm (clipped above)",
    "hidden": "hidden units of the recurrent layer",
    "hyper_size": "hidden units of the HyperLSTM's small hyper cell",
    "seq_len": "characters per truncated-BPTT chunk",
    "eval_batch": "parallel streams when evaluating",
    "target_hidden": "widths of the target network's hidden layers, comma-separated",
    "hnet_hidden": "widths of the hypernetwork's hidden layers, comma-separated",
    "hnet_activation": "the hypernetwork's nonlinearity",
    "target_activation": "the target network's nonlinearity",
    "chunk_size": "target weights made per chunk by the chunked hypernetwork",
    "padding": "pixels of zero padding around each image (28 -> 28 + 2 * padding)",
    "layer_norm": "layer normalisation inside the LSTM cells",
    "num_train": "training points per task",
    "num_test": "test points per task",
    "noise_std": "standard deviation of the Gaussian noise on the targets",
    "data_seed": "seed of the generated data (fixed across runs)",
}


def _activations() -> list[str]:
    from hyperdnn.bodies import ACTIVATIONS

    return list(ACTIVATIONS)


def _target_activations() -> list[str]:
    from hyperdnn.experiments.recipes.toy_regression import TARGET_ACTIVATIONS

    return list(TARGET_ACTIVATIONS)


COMMON_CHOICES: dict[str, Callable[[], list[str]]] = {
    "hnet_activation": _activations,
    "target_activation": _target_activations,
    "hnet_init": lambda: ["xavier", "target"],
}

_NAMES = {int: "int", float: "number", str: "string"}


def scalar(tp: Any) -> Callable[[str], Any]:
    """An argparse type for int or float whose error says what was expected."""

    def conv(s: str) -> Any:
        try:
            return tp(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an' if tp is int else 'a'} {_NAMES.get(tp, tp.__name__)} (got {s!r})") from None

    return conv


def field_parser(tp: Any, default: Any = None) -> tuple[Callable[[str], Any], str]:
    """(argparse type callable, metavar) for a config field annotation; bad values give an argparse error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner, meta = field_parser(args[0], default)

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
        return scalar(tp), "INT" if tp is int else "FLOAT"
    return str, "STR"


def add_recipe_options(parser: argparse.ArgumentParser, recipe: Any) -> None:
    """Add one ``--field-name`` option per field of ``recipe.config`` (dest ``cfg_<field>``)."""
    group = parser.add_argument_group(f"options of recipe '{recipe.name}' (defaults: the published configuration)")
    hints = typing.get_type_hints(recipe.config)
    for f in fields(recipe.config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        meta = f.metadata or {}
        text = meta.get("help") or COMMON_HELP.get(f.name) or f.name.replace("_", " ")
        choices = meta.get("choices") or (COMMON_CHOICES[f.name]() if f.name in COMMON_CHOICES else None)
        tp = hints.get(f.name, str)
        if choices and tp is str:
            text = f"{text}; one of {', '.join(map(str, choices))}"
        text = f"{text} (default: {shown})"
        if tp is bool:
            group.add_argument(flag, dest=f"cfg_{f.name}", action=argparse.BooleanOptionalAction, default=None, help=text)
        elif choices and tp is str:  # the config checks the value (one message for the CLI and the API)
            group.add_argument(flag, dest=f"cfg_{f.name}", metavar="{" + ",".join(map(str, choices)) + "}", default=None, help=text)
        else:
            conv, metavar = field_parser(tp, default)
            group.add_argument(flag, dest=f"cfg_{f.name}", type=conv, metavar=metavar, default=None, help=text)


def option_kinds(recipe: Any) -> dict[str, str]:
    """``{flag: field name}`` for every option of ``recipe``, ``--no-x`` forms of flags included."""
    hints = typing.get_type_hints(recipe.config)
    out: dict[str, str] = {}
    for f in fields(recipe.config):
        flag = "--" + f.name.replace("_", "-")
        out[flag] = f.name
        if hints.get(f.name) is bool:
            out["--no-" + flag[2:]] = f.name
    return out
