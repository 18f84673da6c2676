"""The Flower apps for deployment mode (a SuperLink and SuperNodes as separate processes):
``server_app`` and ``client_app``, configured by the run config and the node config.

A Flower App directory needs only a ``pyproject.toml`` naming them::

    [tool.flwr.app.components]
    serverapp = "hyperdnn.methods.federated.deployment:server_app"
    clientapp = "hyperdnn.methods.federated.deployment:client_app"

    [tool.flwr.app.config]
    method = "hyperfl"          # or "pfedhn", "fedavg"
    num-server-rounds = 2
    min-nodes = 2

Run-config keys (all optional): ``method``, ``num-server-rounds``, ``min-nodes``,
``split`` (``pathological`` / ``dirichlet``), ``alpha``, ``data-seed``, ``data-dir`` (else
``HYPERDNN_DATA``), ``local-steps`` (FedAvg / pFedHN inner steps), ``local-epochs`` and
``max-steps`` (HyperFL), ``result-file`` (the ServerApp writes its metrics to
``<result-file>.<method>.json``). Each SuperNode names its part of MNIST with
``--node-config 'partition-id=0 num-partitions=2'``. README gives the commands.

This module imports ``flwr`` (the ``federated`` extra); the package does not import it.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from hyperdnn.errors import ConfigError

from .apps import (
    combined_client_app,
    fedavg_client_app,
    fedavg_server_app,
    hyperfl_client_app,
    hyperfl_server_app,
    pfedhn_client_app,
    pfedhn_server_app,
    pfedhn_strategy,
)
from .clients import ClientData, MNISTPartition
from .pfedhn import PFedHN, pfedhn_model
from .targets import FederatedLeNet

METHODS = ("pfedhn", "hyperfl", "fedavg")


def node_data(context: Context) -> ClientData:
    """This node's MNIST part, from its node config (``partition-id``, ``num-partitions``) and the run config."""
    rc, nc = context.run_config, context.node_config
    if "num-partitions" not in nc:
        raise ConfigError("deployment: the SuperNode needs --node-config 'partition-id=<i> num-partitions=<n>'")
    data_dir = str(rc.get("data-dir", "")) or None
    return MNISTPartition(int(nc["num-partitions"]), split=str(rc.get("split", "pathological")), alpha=float(rc.get("alpha", 0.5)),
                          seed=int(rc.get("data-seed", 0)), data_dir=data_dir)(context)


client_app = combined_client_app(
    pfedhn=pfedhn_client_app(FederatedLeNet, node_data),
    hyperfl=hyperfl_client_app(FederatedLeNet, FederatedLeNet.FEATURE_EXTRACTOR, node_data, threads=1),
    fedavg=fedavg_client_app(FederatedLeNet, node_data, threads=1),
)

server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Runs the run config's ``method`` for ``num-server-rounds`` rounds on the connected nodes."""
    rc = context.run_config
    method = str(rc.get("method", "hyperfl"))
    rounds = int(rc.get("num-server-rounds", 2))
    nodes = int(rc.get("min-nodes", 2))
    app: Any
    if method == "pfedhn":
        def strategy() -> Any:
            return pfedhn_strategy(PFedHN(pfedhn_model(FederatedLeNet(), nodes)), clients_per_round=nodes,
                                   inner={"inner-steps": int(rc.get("local-steps", 50))})

        app = pfedhn_server_app(strategy, num_rounds=rounds)
    elif method == "hyperfl":
        app = hyperfl_server_app(FederatedLeNet, FederatedLeNet.FEATURE_EXTRACTOR, num_rounds=rounds, min_nodes=nodes,
                                 train_config={"local-epochs": int(rc.get("local-epochs", 1)), "max-steps": int(rc.get("max-steps", 10))})
    elif method == "fedavg":
        app = fedavg_server_app(FederatedLeNet, num_rounds=rounds, min_nodes=nodes,
                                train_config={"local-steps": int(rc.get("local-steps", 50))})
    else:
        raise ConfigError(f"deployment: run config method must be one of {METHODS} (got {method!r})")
    app.hyperdnn_main(grid, context)
