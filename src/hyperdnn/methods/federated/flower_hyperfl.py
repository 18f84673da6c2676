"""HyperFL on Flower: the client app (private embedding and classifier kept in the node's
state, only the hypernetwork sent) and the server app (Flower's FedAvg over hypernetworks).

Imported only through the factories in :mod:`hyperdnn.methods.federated.apps` (it imports ``flwr``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from torch import nn

from .clients import ClientData
from .hyperfl import hyperfl_evaluate, hyperfl_local_training, hyperfl_model, private_state, shared_state

PRIVATE = "hyperfl-private"


class PeriodicFedAvg(FedAvg):
    """Flower's FedAvg, evaluating the clients only every ``every`` rounds and after round ``last``."""

    def __init__(self, every: int, last: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.every, self.last = every, last

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        if server_round % self.every and server_round != self.last:
            return []
        return super().configure_evaluate(server_round, arrays, config, grid)


def make_hyperfl_client_app(target_fn: Callable[[], nn.Module], generate: Any, data: Callable[[Context], ClientData], *,
                            embed_dim: int = 64, hidden: int = 128, threads: int | None = None) -> ClientApp:
    """See :func:`hyperdnn.methods.federated.hyperfl_client_app`."""
    app = ClientApp()
    cache: dict[str, Any] = {}

    def model_for(context: Context, shared: dict[str, torch.Tensor]):
        if threads is not None:
            torch.set_num_threads(threads)
        if "model" not in cache:  # one model per worker process; each node's state is loaded into it
            cache["model"] = hyperfl_model(target_fn(), generate, embed_dim=embed_dim, hidden=hidden)
        model = cache["model"]
        if PRIVATE in context.state:
            private = context.state[PRIVATE].to_torch_state_dict()
        else:  # first contact: this node's own embedding and classifier, from its own seed
            torch.manual_seed(1_000_003 + int(context.node_config.get("partition-id", context.node_id % 100_000)))
            fresh = hyperfl_model(target_fn(), generate, embed_dim=embed_dim, hidden=hidden)
            private = private_state(fresh)
        model.load_state_dict({**private, **shared}, strict=True)
        return model

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        d = data(context)
        cfg = msg.content["config"]
        model = model_for(context, msg.content["arrays"].to_torch_state_dict())
        seed = int(cfg.get("seed", 0)) * 1_000_003 + int(cfg.get("server-round", 0)) * 1009 + context.node_id % 1009
        settings = {k.replace("-", "_"): v for k, v in cfg.items() if k in ("local-epochs", "batch-size", "lr", "lr-classifier", "max-steps")}
        loss = hyperfl_local_training(model, d.train_x, d.train_y, generator=torch.Generator().manual_seed(seed), **settings)
        context.state[PRIVATE] = ArrayRecord(private_state(model))
        metrics = MetricRecord({"train-loss": loss, "num-examples": len(d.train_x)})
        return Message(RecordDict({"arrays": ArrayRecord(shared_state(model)), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        d = data(context)
        model = model_for(context, msg.content["arrays"].to_torch_state_dict())
        correct, total = hyperfl_evaluate(model, d.test_x, d.test_y)
        return Message(RecordDict({"metrics": MetricRecord({"accuracy": correct / max(1, total), "num-examples": total})}),
                       reply_to=msg)

    return app


def make_server_app(initial: Callable[[], dict[str, torch.Tensor]], *, num_rounds: int, fraction_train: float,
                    fraction_evaluate: float, train_config: dict | None, evaluate_config: dict | None,
                    history: dict | None, min_nodes: int = 2, method: str = "hyperfl", evaluate_every: int = 1) -> ServerApp:
    """A ServerApp running Flower's FedAvg from ``initial()`` (HyperFL: the hypernetwork; FedAvg: the model).

    Settings under ``context.run_config`` (``num-server-rounds``, ``fraction-train``,
    ``fraction-evaluate``, ``min-nodes``) override the arguments, so a deployed app is
    configured by ``flwr run --run-config``; with ``result-file`` the metrics are written to
    ``<result-file>.<method>.json``. The configs carry ``method`` (for :func:`combined_client_app`).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        rc = context.run_config
        rounds = int(rc.get("num-server-rounds", num_rounds))
        ft = float(rc.get("fraction-train", fraction_train))
        fe = float(rc.get("fraction-evaluate", fraction_evaluate))
        nodes = int(rc.get("min-nodes", min_nodes))
        strategy = PeriodicFedAvg(evaluate_every, rounds, fraction_train=ft, fraction_evaluate=fe, min_train_nodes=1, min_evaluate_nodes=1 if fe > 0 else 0,
                          min_available_nodes=nodes)
        arrays = ArrayRecord(initial())
        result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=rounds,
                                train_config=ConfigRecord({**(train_config or {}), "method": method}),
                                evaluate_config=ConfigRecord({**(evaluate_config or {}), "method": method}))
        if history is not None:
            history["train"] = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
            history["evaluate"] = {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
            history["arrays"] = result.arrays.to_torch_state_dict() if result.arrays is not None else None
            history["bytes_per_client"] = sum(int(a.numpy().nbytes) for a in arrays.values())
        if "result-file" in rc:  # deployment mode: the ServerApp runs in its own process
            import json

            with open(f"{rc['result-file']}.{method}.json", "w") as f:
                json.dump({"evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
                           "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()}}, f)

    app.hyperdnn_main = main  # lets combined_server_app run several methods in one Flower run
    return app
