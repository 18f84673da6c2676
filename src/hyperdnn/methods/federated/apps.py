"""Flower apps for the federated methods, built by small factories that import ``flwr`` only
when called (the ``federated`` extra: ``pip install 'hyperdnn[federated]'``).

- pFedHN: :func:`pfedhn_strategy` (a Flower ``Strategy``), :func:`pfedhn_server_app`,
  :func:`pfedhn_client_app`;
- HyperFL: :func:`hyperfl_server_app` (Flower's ``FedAvg`` over the hypernetwork),
  :func:`hyperfl_client_app`;
- FedAvg and FedAvg + fine-tuning: :func:`fedavg_server_app`, :func:`fedavg_client_app`;
- :func:`simulate`: Flower's simulation engine (``flwr.simulation.run_simulation``, Ray).

The same app objects run in deployment mode (a SuperLink and SuperNodes): see
:mod:`hyperdnn.methods.federated.deployment`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from hyperdnn.errors import ConfigError

from .clients import ClientData
from .pfedhn import PFedHN

__all__ = ["combined_client_app", "combined_server_app", "fedavg_client_app", "fedavg_server_app", "hyperfl_client_app", "hyperfl_server_app", "pfedhn_client_app",
           "pfedhn_server_app", "pfedhn_strategy", "simulate"]


def _flwr() -> None:
    try:
        import flwr  # noqa: F401
    except ImportError as e:  # the extra is optional
        raise ImportError("hyperdnn.methods.federated needs Flower: pip install 'hyperdnn[federated]'") from e


def pfedhn_strategy(server: PFedHN, *, clients_per_round: int = 1, inner: dict | None = None,
                    fraction_evaluate: float = 1.0, seed: int = 0, min_available_nodes: int | None = None,
                    evaluate_every: int = 1) -> Any:
    """pFedHN as a Flower ``Strategy`` (``flwr.serverapp.strategy.Strategy``).

    Args:
        server: the :class:`PFedHN` holding the hypernetwork and the client embeddings.
        clients_per_round: nodes sampled per round (1: the paper's Algorithm 1); the
            hypernetwork takes one step per reply.
        inner: the clients' inner-loop settings sent in each train message
            (``inner-steps``, ``inner-lr``, ``inner-momentum``, ``inner-weight-decay``,
            ``batch-size``, ``seed``); absent keys take :func:`pfedhn_local_update`'s defaults.
        fraction_evaluate: share of the nodes evaluated each round (each on its own weights).
        seed: the client sampling's seed.
        min_available_nodes: the first round waits for this many nodes (None: one per
            embedding row); node ids then map to embedding rows in sorted order.
        evaluate_every: evaluate every this many rounds (and after the last).

    Returns:
        a ``Strategy``; ``strategy.start(grid=..., initial_arrays=ArrayRecord(), num_rounds=R)``
        runs it; ``strategy.bytes_per_round`` holds ``{round: {"down": B, "up": B}}``.
    """
    _flwr()
    from .flower_pfedhn import PFedHNStrategy

    return PFedHNStrategy(server, clients_per_round=clients_per_round, inner=inner, fraction_evaluate=fraction_evaluate, seed=seed,
                          min_available_nodes=min_available_nodes, evaluate_every=evaluate_every)


def pfedhn_server_app(strategy_fn: Callable[[], Any], *, num_rounds: int, history: dict | None = None) -> Any:
    """A Flower ``ServerApp`` that runs ``strategy_fn()`` (a :func:`pfedhn_strategy`) for ``num_rounds``
    (``run_config["num-server-rounds"]`` overrides). ``history`` (a dict) receives the
    evaluation metrics per round, ``bytes_per_round`` and the strategy itself; with run-config
    ``result-file`` the metrics are also written to ``<result-file>.pfedhn.json``."""
    _flwr()
    from flwr.app import ArrayRecord, Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = strategy_fn()
        rounds = int(context.run_config.get("num-server-rounds", num_rounds))
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(), num_rounds=rounds)
        if history is not None:
            history["evaluate"] = {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
            history["train"] = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
            history["bytes_per_round"] = dict(strategy.bytes_per_round)
            history["strategy"] = strategy
        if "result-file" in context.run_config:  # deployment mode: the ServerApp runs in its own process
            import json

            with open(f"{context.run_config['result-file']}.pfedhn.json", "w") as f:
                json.dump({"evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
                           "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()}}, f)

    app.hyperdnn_main = main  # lets combined_server_app run several methods in one Flower run
    return app


def pfedhn_client_app(target_fn: Callable[[], nn.Module], data: Callable[[Any], ClientData]) -> Any:
    """pFedHN's ``ClientApp``: on ``train``, inner SGD from the received weights, replies
    ``delta = theta - theta~``; on ``evaluate``, the received weights' accuracy on the local test set.

    Args:
        target_fn: makes the target network (the architecture the hypernetwork generates for).
        data: ``context -> ClientData`` for the node (e.g. :class:`MNISTPartition`).
    """
    _flwr()
    from .flower_pfedhn import make_pfedhn_client_app

    return make_pfedhn_client_app(target_fn, data)


def hyperfl_client_app(target_fn: Callable[[], nn.Module], generate: Any, data: Callable[[Any], ClientData], *,
                       embed_dim: int = 64, hidden: int = 128, threads: int | None = None) -> Any:
    """HyperFL's ``ClientApp``: the client embedding and classifier stay in the node's
    ``context.state``; on ``train`` it runs :func:`hyperfl_local_training` from the received
    hypernetwork and replies with the hypernetwork only; on ``evaluate`` it reports the
    accuracy of (received hypernetwork, own embedding, own classifier) on its test set.

    Args:
        target_fn: makes the client network; generate: its feature-extractor selector.
        data: ``context -> ClientData``.
        embed_dim: as :func:`hyperfl_model`.
        hidden: as :func:`hyperfl_model`.
        threads: torch threads in the client (None: leave as is).

    Train-message config keys: ``local-epochs``, ``batch-size``, ``lr``, ``lr-classifier``,
    ``max-steps``, ``seed``.
    """
    _flwr()
    from .flower_hyperfl import make_hyperfl_client_app

    return make_hyperfl_client_app(target_fn, generate, data, embed_dim=embed_dim, hidden=hidden, threads=threads)


def hyperfl_server_app(target_fn: Callable[[], nn.Module], generate: Any, *, num_rounds: int, fraction_train: float = 1.0,
                       fraction_evaluate: float = 1.0, embed_dim: int = 64, hidden: int = 128, seed: int = 0,
                       train_config: dict | None = None, evaluate_config: dict | None = None,
                       history: dict | None = None, min_nodes: int = 2, evaluate_every: int = 1) -> Any:
    """HyperFL's ``ServerApp``: Flower's ``FedAvg`` (weighted by ``num-examples``) over the
    hypernetwork, starting from a hypernetwork made with ``torch.manual_seed(seed)``.

    ``history`` (a dict) receives the train and evaluate metrics per round, the final
    hypernetwork (``"arrays"``) and the bytes one client receives per round. Run-config keys
    ``num-server-rounds``, ``fraction-train``, ``fraction-evaluate``, ``min-nodes`` override the
    arguments; with ``result-file`` the metrics are also written there as JSON (deployment mode).
    Clients are evaluated every ``evaluate_every`` rounds and after the last; ``min_nodes``
    is the number of nodes each round waits for.
    """
    _flwr()
    from .flower_hyperfl import make_server_app
    from .hyperfl import hyperfl_model, shared_state

    def initial() -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return shared_state(hyperfl_model(target_fn(), generate, embed_dim=embed_dim, hidden=hidden))

    return make_server_app(initial, num_rounds=num_rounds, fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
                           train_config=train_config, evaluate_config=evaluate_config, history=history, min_nodes=min_nodes,
                           evaluate_every=evaluate_every)


def fedavg_client_app(target_fn: Callable[[], nn.Module], data: Callable[[Any], ClientData], *, threads: int | None = None) -> Any:
    """FedAvg's ``ClientApp``: ``local-steps`` SGD steps from the global model (config keys
    ``lr``, ``momentum``, ``weight-decay``, ``batch-size``, ``seed``); at evaluation the global
    model's accuracy and, with ``finetune-steps > 0``, the accuracy after local fine-tuning
    (``accuracy-finetuned``)."""
    _flwr()
    from .flower_fedavg import make_fedavg_client_app

    return make_fedavg_client_app(target_fn, data, threads=threads)


def fedavg_server_app(target_fn: Callable[[], nn.Module], *, num_rounds: int, fraction_train: float = 1.0,
                      fraction_evaluate: float = 1.0, seed: int = 0, train_config: dict | None = None,
                      evaluate_config: dict | None = None, history: dict | None = None, min_nodes: int = 2,
                      evaluate_every: int = 1) -> Any:
    """FedAvg's ``ServerApp``: Flower's built-in ``FedAvg`` strategy from ``target_fn()`` made
    with ``torch.manual_seed(seed)``; ``history`` as in :func:`hyperfl_server_app`."""
    _flwr()
    from .flower_hyperfl import make_server_app

    def initial() -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return {k: v.detach() for k, v in target_fn().state_dict().items()}

    return make_server_app(initial, num_rounds=num_rounds, fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
                           train_config=train_config, evaluate_config=evaluate_config, history=history, min_nodes=min_nodes,
                           evaluate_every=evaluate_every, method="fedavg")


def simulate(server_app: Any, client_app: Any, num_clients: int, *, workers: int = 1, verbose: bool = False) -> None:
    """Runs the apps in Flower's simulation engine (``flwr.simulation.run_simulation`` with its
    Ray backend; needs ``flwr[simulation]``), ``num_clients`` virtual SuperNodes with
    partition ids ``0..num_clients-1``, at most ``workers`` ClientApps at a time (one CPU each).
    The ServerApp runs in this process, so a ``history`` dict given to it is filled here."""
    _flwr()
    if not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError(f"simulate: num_clients must be an int >= 1 (got {num_clients!r})")
    import importlib.util
    import logging

    if importlib.util.find_spec("ray") is None:
        raise ImportError("simulate needs Flower's Ray backend: pip install 'hyperdnn[federated]' (flwr[simulation])")
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.WARNING)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": workers, "num_gpus": 0, "include_dashboard": False,
                                                 "logging_level": "error", "log_to_driver": False}},
                   verbose_logging=False)


def combined_server_app(*apps: Any) -> Any:
    """One ``ServerApp`` that runs the given server apps (from this module's factories) one
    after the other on the same nodes, so several methods share one Flower run (and one
    start of the simulation engine)."""
    _flwr()
    from flwr.serverapp import ServerApp

    for a in apps:
        if not hasattr(a, "hyperdnn_main"):
            raise ConfigError("combined_server_app: every app must come from a hyperdnn.methods.federated factory "
                              f"(got {type(a).__name__} without one)")
    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        for a in apps:
            a.hyperdnn_main(grid, context)

    app.hyperdnn_main = main
    return app


def combined_client_app(**apps: Any) -> Any:
    """One ``ClientApp`` that hands each message to ``apps[method]``, ``method`` being the
    ``"method"`` entry of the message's config (``"pfedhn"``, ``"hyperfl"``, ``"fedavg"``: what
    this module's server apps send)."""
    _flwr()
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def route(msg: Any, context: Any) -> Any:
        method = str(msg.content["config"].get("method", "")) if "config" in msg.content else ""
        if method not in apps:
            raise ConfigError(f"combined_client_app: a message for method {method!r}; this app serves {sorted(apps)}")
        return apps[method](msg, context)

    app.train()(route)
    app.evaluate()(route)
    return app
