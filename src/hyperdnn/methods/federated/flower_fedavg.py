"""The FedAvg baseline's client app on Flower: train the whole network locally; at evaluation
report the global model's accuracy and, after ``finetune-steps`` local steps, the fine-tuned
one's (FedAvg + local fine-tuning).

Imported only through the factories in :mod:`hyperdnn.methods.federated.apps` (it imports ``flwr``).
"""

from __future__ import annotations

from typing import Callable

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from .clients import ClientData
from .local import accuracy, cross_entropy, sgd_steps


def _sgd(cfg) -> dict:
    return {"lr": float(cfg.get("lr", 0.02)), "momentum": float(cfg.get("momentum", 0.5)),
            "weight_decay": float(cfg.get("weight-decay", 5e-4)), "batch_size": int(cfg.get("batch-size", 50))}


def make_fedavg_client_app(target_fn: Callable[[], nn.Module], data: Callable[[Context], ClientData], *,
                           threads: int | None = None) -> ClientApp:
    """See :func:`hyperdnn.methods.federated.fedavg_client_app`."""
    app = ClientApp()

    def net_from(msg: Message) -> nn.Module:
        if threads is not None:
            torch.set_num_threads(threads)
        net = target_fn()
        net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        return net

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        d = data(context)
        cfg = msg.content["config"]
        net = net_from(msg)
        net.train()
        seed = int(cfg.get("seed", 0)) * 1_000_003 + int(cfg.get("server-round", 0)) * 1009 + context.node_id % 1009
        loss = sgd_steps(cross_entropy(net), net.parameters(), d.train_x, d.train_y, steps=int(cfg.get("local-steps", 50)),
                         generator=torch.Generator().manual_seed(seed), **_sgd(cfg))
        state = {k: v.detach() for k, v in net.state_dict().items()}
        return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord({"train-loss": loss, "num-examples": len(d.train_x)})}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        d = data(context)
        cfg = msg.content["config"]
        net = net_from(msg)
        net.eval()
        correct, total = accuracy(net, d.test_x, d.test_y)
        metrics = {"accuracy": correct / max(1, total), "num-examples": total}
        steps = int(cfg.get("finetune-steps", 0))
        if steps:
            net.train()
            gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)) + context.node_id % 1009)
            sgd_steps(cross_entropy(net), net.parameters(), d.train_x, d.train_y, steps=steps, generator=gen, **_sgd(cfg))
            net.eval()
            metrics["accuracy-finetuned"] = accuracy(net, d.test_x, d.test_y)[0] / max(1, total)
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

    return app
