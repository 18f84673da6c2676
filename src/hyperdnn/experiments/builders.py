"""The untrained skeletons of the recipes' tracked modules, rebuilt from a run's config for :func:`load_run`.

Each ``build(config, results)`` returns ``{tracked name: module}`` with the shapes the
recipe trained; :func:`hyperdnn.experiments.loading.load_run` then loads the run's
final checkpoint into them (strictly: a builder that drifts from its recipe fails
there, naming the tensor).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def _continual(model: nn.Module, target: nn.Module) -> dict[str, nn.Module]:
    return {"model": model, "baseline": target}


def _chunked(cfg: Any, num_tasks: int, sizes: list[int]) -> dict[str, nn.Module]:
    from hyperdnn.experiments.recipes._continual import chunked_spec
    from hyperdnn.experiments.recipes.toy_regression import make_mlp

    spec = chunked_spec(cfg, [None] * num_tasks, lambda: make_mlp(sizes, "relu"), paper={})  # only len(tasks) is read
    return _continual(spec.make_model(spec.make_target()), spec.make_target())


def split_mnist(cfg: Any, results: dict[str, Any]) -> dict[str, nn.Module]:
    """``model`` (the HyperDNN) and ``baseline`` of a split-mnist run."""
    return _chunked(cfg, cfg.tasks, [784, *cfg.target_hidden, 2 * cfg.tasks if cfg.multi_head else 2])


def permuted_mnist(cfg: Any, results: dict[str, Any]) -> dict[str, nn.Module]:
    """``model`` (the HyperDNN) and ``baseline`` of a permuted-mnist run."""
    side = 28 + 2 * cfg.padding
    return _chunked(cfg, cfg.tasks, [side * side, *cfg.target_hidden, 10 * cfg.tasks if cfg.multi_head else 10])


def toy_regression(cfg: Any, results: dict[str, Any]) -> dict[str, nn.Module]:
    """``model`` (the HyperDNN) and ``baseline`` of a toy-regression run."""
    from hyperdnn.bodies import MLP
    from hyperdnn.conditioning import TaskEmbedding
    from hyperdnn.hyperdnn import HyperDNN
    from hyperdnn.outputs import GenerateOnce
    from hyperdnn.experiments.recipes.toy_regression import make_mlp

    sizes = [1, *cfg.target_hidden, 1]
    model = HyperDNN(make_mlp(sizes, cfg.target_activation), inputs=TaskEmbedding(3, cfg.emb_dim), outputs=GenerateOnce(), body=MLP(cfg.hnet_hidden, cfg.hnet_activation))
    return _continual(model, make_mlp(sizes, cfg.target_activation))
