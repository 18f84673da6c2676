"""pFedHN on Flower: a server strategy that holds the hypernetwork, and the client app.

Imported only through :func:`hyperdnn.methods.federated.pfedhn_strategy` and
:func:`~hyperdnn.methods.federated.pfedhn_client_app`, since it imports ``flwr`` (the
``federated`` extra).
"""

from __future__ import annotations

import random
import time
from logging import INFO, WARNING
from typing import Callable, Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from torch import nn

from hyperdnn.errors import ConfigError

from .clients import ClientData
from .local import accuracy
from .pfedhn import PFedHN, pfedhn_local_update


def nbytes(record: ArrayRecord) -> int:
    """Bytes of the numbers in a record (the payload; Flower adds a .npy header of ~128 bytes per array)."""
    return sum(int(a.numpy().nbytes) for a in record.values())


class PFedHNStrategy(Strategy):
    """A Flower ``Strategy`` running pFedHN (Algorithm 1) on the server.

    Each round it samples ``clients_per_round`` nodes, sends each its generated weights
    ``theta_i`` (an ``ArrayRecord`` under ``"arrays"``) and the inner-loop settings, and
    applies one :meth:`PFedHN.update` per reply, in node-id order (with one client a round:
    the paper's algorithm exactly). Evaluation sends every node its current weights and
    aggregates correct / total (every ``evaluate_every`` rounds and the last). Node ids map to embedding rows in sorted order, fixed at the
    first round, once ``min_available_nodes`` nodes (default: one per embedding) are connected.

    The ``arrays`` Flower passes between rounds are ignored: the hypernetwork lives here
    (``strategy.server.model``); the returned arrays are its state dict after the round.
    """

    def __init__(self, server: PFedHN, *, clients_per_round: int = 1, inner: dict | None = None,
                 fraction_evaluate: float = 1.0, seed: int = 0, min_available_nodes: int | None = None,
                 evaluate_every: int = 1) -> None:
        if not isinstance(clients_per_round, int) or clients_per_round < 1:
            raise ConfigError(f"pfedhn_strategy: clients_per_round must be an int >= 1 (got {clients_per_round!r})")
        self.server = server
        self.clients_per_round = clients_per_round
        self.inner = dict(inner or {})
        self.fraction_evaluate = fraction_evaluate
        self.rng = random.Random(seed)
        self.node_client: dict[int, int] = {}
        self.bytes_per_round: dict[int, dict[str, int]] = {}
        self.steps: list = []
        self.min_available_nodes = server.num_clients if min_available_nodes is None else min_available_nodes
        self.evaluate_every = evaluate_every
        self.num_rounds = 0

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, **kwargs) -> Result:
        """Flower's ``Strategy.start``; remembers ``num_rounds`` so the last round is always evaluated."""
        self.num_rounds = num_rounds
        return super().start(grid, initial_arrays, num_rounds, **kwargs)

    def _map(self, grid: Grid) -> list[int]:
        nodes = sorted(grid.get_node_ids())
        while not self.node_client and len(nodes) < self.min_available_nodes:  # nodes may still be connecting
            log(INFO, "pFedHN: waiting for nodes: %s connected (minimum %s)", len(nodes), self.min_available_nodes)
            time.sleep(1)
            nodes = sorted(grid.get_node_ids())
        if not self.node_client:
            if len(nodes) > self.server.num_clients:
                raise ConfigError(f"pfedhn_strategy: {len(nodes)} nodes but the hypernetwork has "
                                  f"{self.server.num_clients} client embeddings; build it with num_clients >= {len(nodes)}")
            self.node_client = {n: i for i, n in enumerate(nodes)}
        return [n for n in nodes if n in self.node_client]

    def _messages(self, nodes: Iterable[int], kind: str, config: ConfigRecord) -> list[Message]:
        out = []
        for node in nodes:
            arrays = ArrayRecord({k: v for k, v in self.server.weights_for(self.node_client[node]).items()})
            out.append(Message(RecordDict({"arrays": arrays, "config": config}), message_type=kind, dst_node_id=node))
        return out

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        nodes = self._map(grid)
        picked = sorted(self.rng.sample(nodes, min(self.clients_per_round, len(nodes))))
        cfg = ConfigRecord({**dict(config), **self.inner, "server-round": server_round, "method": "pfedhn"})
        msgs = self._messages(picked, MessageType.TRAIN, cfg)
        self.bytes_per_round[server_round] = {"down": sum(nbytes(m.content["arrays"]) for m in msgs), "up": 0}
        log(INFO, "pFedHN round %s: %s client(s)", server_round, len(msgs))
        return msgs

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        losses = []
        for reply in sorted(replies, key=lambda m: m.metadata.src_node_id):
            if reply.has_error():
                log(WARNING, "pFedHN: node %s failed: %s", reply.metadata.src_node_id, reply.error.reason)
                continue
            delta_rec = reply.content["arrays"]
            self.bytes_per_round.setdefault(server_round, {"down": 0, "up": 0})["up"] += nbytes(delta_rec)
            delta = delta_rec.to_torch_state_dict()
            self.steps.append(self.server.update(self.node_client[reply.metadata.src_node_id], delta))
            losses.append(float(reply.content["metrics"]["train-loss"]))
        if not losses:
            return None, None
        state = {k: v.detach() for k, v in self.server.model.state_dict().items()}
        return ArrayRecord(state), MetricRecord({"train-loss": sum(losses) / len(losses)})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        if self.fraction_evaluate <= 0 or (server_round % self.evaluate_every and server_round != self.num_rounds):
            return []
        nodes = self._map(grid)
        k = max(1, int(round(len(nodes) * self.fraction_evaluate)))
        picked = nodes if k >= len(nodes) else sorted(self.rng.sample(nodes, k))
        return self._messages(picked, MessageType.EVALUATE, ConfigRecord({**dict(config), "server-round": server_round, "method": "pfedhn"}))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        ok = [r for r in replies if not r.has_error()]
        if not ok:
            return None
        correct = sum(int(r.content["metrics"]["correct"]) for r in ok)
        total = sum(int(r.content["metrics"]["num-examples"]) for r in ok)
        per = [int(r.content["metrics"]["correct"]) / max(1, int(r.content["metrics"]["num-examples"])) for r in ok]
        return MetricRecord({"accuracy": correct / max(1, total), "client-mean-accuracy": sum(per) / len(per),
                             "clients": len(ok)})

    def summary(self) -> None:
        log(INFO, "\t├──> pFedHN: %s client embeddings, %s client(s) per round, inner settings %s",
            self.server.num_clients, self.clients_per_round, self.inner)


def _inner(config: ConfigRecord) -> dict:
    keys = {"inner-steps": ("steps", int), "inner-lr": ("lr", float), "inner-momentum": ("momentum", float),
            "inner-weight-decay": ("weight_decay", float), "batch-size": ("batch_size", int)}
    return {name: cast(config[k]) for k, (name, cast) in keys.items() if k in config}


def make_pfedhn_client_app(target_fn: Callable[[], nn.Module], data: Callable[[Context], ClientData]) -> ClientApp:
    """See :func:`hyperdnn.methods.federated.pfedhn_client_app`."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        d = data(context)
        cfg = msg.content["config"]
        seed = int(cfg.get("seed", 0)) * 1_000_003 + int(cfg.get("server-round", 0)) * 1009 + int(context.node_id % 1009)
        gen = torch.Generator().manual_seed(seed)
        delta, loss = pfedhn_local_update(target_fn(), msg.content["arrays"].to_torch_state_dict(), d.train_x, d.train_y,
                                          generator=gen, **_inner(cfg))
        metrics = MetricRecord({"train-loss": loss, "num-examples": len(d.train_x)})
        return Message(RecordDict({"arrays": ArrayRecord(delta), "metrics": metrics}), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        d = data(context)
        net = target_fn()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        net.eval()
        correct, total = accuracy(net, d.test_x, d.test_y)
        return Message(RecordDict({"metrics": MetricRecord({"correct": correct, "num-examples": total,
                                                            "accuracy": correct / max(1, total)})}), reply_to=msg)

    return app
