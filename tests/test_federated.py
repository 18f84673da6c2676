"""Federated hypernetworks (hyperdnn.methods.federated): partitions, pFedHN's update, HyperFL's
shared/private split, novel clients and the gradient-inversion attack, each against a hand
computation or a closed form. Flower's engines are in test_federated_flower.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hyperdnn as hd
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods import federated as fed

DATA = Path(os.environ.get("HYPERDNN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


# ---------------------------------------------------------------- partitions


def test_pathological_split_gives_each_client_exactly_its_two_classes_in_train_and_test() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(600)  # 600 of each class
    test_labels = torch.arange(10).repeat_interleave(100)
    shares = fed.pathological_shares(50, 10, 2, generator=gen)
    train = fed.split_by_shares(labels, shares, generator=gen)
    test = fed.split_by_shares(test_labels, shares, generator=gen)
    counts, tcounts = fed.class_counts(labels, train), fed.class_counts(test_labels, test)
    assert ((counts > 0).sum(1) == 2).all() and ((tcounts > 0).sum(1) == 2).all()
    assert torch.equal(counts > 0, shares > 0) and torch.equal(tcounts > 0, shares > 0)
    # every class serves 10 clients (2 * 50 / 10), and the counts are floor(share * 600), by a loop
    assert ((shares > 0).sum(0) == 10).all()
    for i in range(50):
        for k in range(10):
            assert counts[i, k] == int(shares[i, k].item() * 600)
    # disjoint clients; slots of one class drawn in [0.4, 0.6] and normalised over 11 slots
    allidx = torch.cat(train)
    assert len(allidx.unique()) == len(allidx)
    nz = shares[shares > 0]
    assert nz.min() >= 0.4 / (0.6 * 10 + 0.4) - 1e-12 and nz.max() <= 0.6 / (0.4 * 10 + 0.6) + 1e-12
    assert (shares.sum(0) <= 1 + 1e-12).all()


def test_dirichlet_shares_have_the_dirichlet_mean_and_variance() -> None:
    n, alpha = 5, 0.5
    draws = torch.cat([fed.dirichlet_shares(n, 200, alpha, generator=torch.Generator().manual_seed(s)).T for s in range(20)])
    assert torch.allclose(draws.sum(1), torch.ones(len(draws), dtype=torch.float64))
    # Dir(alpha 1_n): mean 1/n, variance (1/n)(1 - 1/n) / (n alpha + 1)
    var = (1 / n) * (1 - 1 / n) / (n * alpha + 1)
    assert abs(draws.mean().item() - 1 / n) < 1e-9
    assert abs(draws.var().item() - var) < 0.1 * var
    small = fed.dirichlet_shares(20, 10, 0.1, generator=torch.Generator().manual_seed(1))
    big = fed.dirichlet_shares(20, 10, 100.0, generator=torch.Generator().manual_seed(1))
    assert small.max(0).values.mean() > 0.5 > big.max(0).values.mean()  # alpha 0.1: one client owns most of a class


def test_dirichlet_split_counts_follow_the_shares() -> None:
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 10, (5000,), generator=gen)
    shares = fed.dirichlet_shares(8, 10, 0.1, generator=gen)
    parts = fed.split_by_shares(labels, shares, generator=gen)
    counts = fed.class_counts(labels, parts)
    per_class = torch.bincount(labels, minlength=10)
    assert torch.equal(counts, (shares * per_class).floor().long())


def test_partition_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="classes_per_client must be an int in 1..10"):
        fed.pathological_shares(5, 10, 11)
    with pytest.raises(ConfigError, match="alpha must be a number > 0"):
        fed.dirichlet_shares(5, 10, 0.0)
    with pytest.raises(ConfigError, match="columns sum to at most 1"):
        fed.split_by_shares(torch.zeros(4, dtype=torch.long), torch.ones(2, 1))
    with pytest.raises(ShapeError, match="1-d integer"):
        fed.split_by_shares(torch.zeros(4), torch.ones(1, 1))


def test_mnist_clients_hold_two_classes_each() -> None:
    clients = fed.mnist_clients(10, seed=0, data_dir=DATA)
    assert len(clients) == 10
    for c in clients:
        assert c.train_x.shape[1:] == (1, 28, 28) and len(c.train_y.unique()) == 2
        assert set(c.test_y.unique().tolist()) == set(c.train_y.unique().tolist())
    with pytest.raises(ConfigError, match="split must be one of"):
        fed.mnist_clients(10, split="iid")


def test_dirichlet_mnist_clients_are_redrawn_until_every_client_has_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperdnn.errors import DataError
    from hyperdnn.methods.federated import clients as clients_mod
    from hyperdnn.data.mnist import load_mnist

    # alpha 0.1, 55 clients, seed 0: the first draw leaves a client without a test example
    data = load_mnist(DATA)
    gen = torch.Generator().manual_seed(0)
    first = fed.dirichlet_shares(55, 10, 0.1, generator=gen)
    fed.split_by_shares(data.train_labels, first, generator=gen)
    assert min(len(p) for p in fed.split_by_shares(data.test_labels, first, generator=gen)) == 0
    for alpha in (0.1, 0.5):
        cl = fed.mnist_clients(55, split="dirichlet", alpha=alpha, seed=0, data_dir=DATA)
        assert min(len(c.train_y) for c in cl) >= 10 and min(len(c.test_y) for c in cl) >= 1
        # train and test follow one share matrix: a class a client has enough of in training is in its test set
        for c in cl:
            train_k, test_k = torch.bincount(c.train_y, minlength=10), torch.bincount(c.test_y, minlength=10)
            assert ((train_k >= 60) <= (test_k > 0)).all()
    # alpha 0.5 passes on the first draw, which is kept as it is (the same clients as by hand)
    gen = torch.Generator().manual_seed(0)
    shares = fed.dirichlet_shares(55, 10, 0.5, generator=gen)
    parts = fed.split_by_shares(data.train_labels, shares, generator=gen)
    cl = fed.mnist_clients(55, split="dirichlet", alpha=0.5, seed=0, data_dir=DATA)
    assert all(torch.equal(c.train_y, data.train_labels[p]) for c, p in zip(cl, parts))
    monkeypatch.setattr(clients_mod, "MAX_DRAWS", 2)
    with pytest.raises(DataError, match="fewer than 100000 training examples"):
        fed.mnist_clients(55, split="dirichlet", alpha=0.1, seed=3, data_dir=DATA, min_examples=100_000)
    with pytest.raises(ConfigError, match="min_examples must be an int >= 0"):
        fed.mnist_clients(5, split="dirichlet", min_examples=-1)


def test_recipe_takes_the_dirichlet_split_and_checks_pfedhn_clients_per_round() -> None:
    from hyperdnn.experiments.cli import build_parser
    from hyperdnn.experiments.recipes import get_recipe

    r = get_recipe("federated-mnist")
    args = build_parser().parse_args(["run", "federated-mnist", "--split", "dirichlet", "--alpha", "0.1"])
    cfg = r.config(**{k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None})
    assert (cfg.split, cfg.alpha, cfg.pfedhn_clients_per_round) == ("dirichlet", 0.1, 1)
    with pytest.raises(ConfigError, match="split"):
        r.config(split="iid")
    with pytest.raises(ConfigError, match="pfedhn_clients_per_round .3. must divide clients_per_round .10."):
        r.config(pfedhn_clients_per_round=3)
    with pytest.raises(ConfigError, match="alpha"):
        r.config(alpha=0.0)


# ---------------------------------------------------------------- pFedHN


def linear_pfedhn(num_clients: int = 2) -> hd.HyperDNN:
    torch.manual_seed(0)
    return hd.HyperDNN(nn.Linear(3, 2), inputs=hd.TaskEmbedding(num_clients, 4, name="client"), outputs=hd.MultiHead(),
                       body=hd.MLP(hidden=()))  # theta_t = A_t e + c_t: a Jacobian in closed form


def hand_update(p: dict, e_rows: torch.Tensor, client: int, delta: dict, buf: dict | None, lr=1e-2, mom=0.9, wd=1e-3):
    """One SGD(momentum, weight decay) step of pFedHN's update for the linear hypernetwork, by hand:
    grad A_t = d_t e^T, grad c_t = d_t, grad e_client = sum_t A_t^T d_t (other rows 0)."""
    e = e_rows[client]
    grads = {}
    grad_e = torch.zeros_like(e_rows)
    for t in ("weight", "bias"):
        d = delta[t].flatten()
        grads[f"A_{t}"] = torch.outer(d, e)
        grads[f"c_{t}"] = d
        grad_e[client] += p[f"A_{t}"].T @ d
    grads["E"] = grad_e
    params = {**p, "E": e_rows}
    new, newbuf = {}, {}
    for k, v in params.items():
        g = grads[k] + wd * v
        b = g if buf is None else mom * buf[k] + g
        newbuf[k] = b
        new[k] = v - lr * b
    E = new.pop("E")
    return new, E, newbuf


class FakeGrid:
    """The part of Flower's Grid a strategy's configure_* uses."""

    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return list(self.nodes)


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ServerApp's identity, which Flower sets in a run and Message() reads."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def test_pfedhn_strategy_update_equals_the_hand_computed_one_for_two_clients_one_round(flower_task: None) -> None:
    from flwr.app import ArrayRecord, MetricRecord, Message, RecordDict

    model = linear_pfedhn()
    heads = model.hypernetwork.outputs.heads
    p0 = {"A_weight": heads[0].weight.detach().clone(), "c_weight": heads[0].bias.detach().clone(),
          "A_bias": heads[1].weight.detach().clone(), "c_bias": heads[1].bias.detach().clone()}
    E0 = model.hypernetwork.inputs.table.weight.detach().clone()
    server = fed.PFedHN(model)
    strategy = fed.pfedhn_strategy(server, clients_per_round=2, inner={"inner-steps": 3})
    msgs = list(strategy.configure_train(1, ArrayRecord(), __import__("flwr").app.ConfigRecord(), FakeGrid([22, 11])))
    assert [m.metadata.dst_node_id for m in msgs] == [11, 22]  # sorted node ids -> embedding rows 0, 1
    for m, client in zip(msgs, (0, 1)):
        sent = m.content["arrays"].to_torch_state_dict()
        e = E0[client]
        assert torch.allclose(sent["weight"], (p0["A_weight"] @ e + p0["c_weight"]).view(2, 3), atol=1e-6)
        assert torch.allclose(sent["bias"], p0["A_bias"] @ e + p0["c_bias"], atol=1e-6)
        assert int(m.content["config"]["inner-steps"]) == 3
    gen = torch.Generator().manual_seed(1)
    deltas = [{"weight": torch.randn(2, 3, generator=gen), "bias": torch.randn(2, generator=gen)} for _ in range(2)]
    replies = [Message(RecordDict({"arrays": ArrayRecord(d), "metrics": MetricRecord({"train-loss": 1.0, "num-examples": 5})}),
                       reply_to=m) for m, d in zip(msgs, deltas)]
    arrays, metrics = strategy.aggregate_train(1, reversed(replies))  # reply order must not matter
    assert arrays is not None and metrics["train-loss"] == 1.0
    # by hand: client 0's step, then client 1's (Jacobian at the parameters after the first step)
    p1, E1, buf = hand_update(p0, E0, 0, deltas[0], None)
    p2, E2, _ = hand_update(p1, E1, 1, deltas[1], buf)
    assert torch.allclose(heads[0].weight, p2["A_weight"], atol=1e-6) and torch.allclose(heads[0].bias, p2["c_weight"], atol=1e-6)
    assert torch.allclose(heads[1].weight, p2["A_bias"], atol=1e-6) and torch.allclose(heads[1].bias, p2["c_bias"], atol=1e-6)
    assert torch.allclose(model.hypernetwork.inputs.table.weight, E2, atol=1e-6)
    down = strategy.bytes_per_round[1]
    assert down == {"down": 2 * 8 * 4, "up": 2 * 8 * 4}  # 2 clients x 8 float32 numbers each way


def test_pfedhn_update_is_the_vector_jacobian_product_of_the_generated_weights() -> None:
    model = hd.HyperDNN(fed.FederatedLeNet(n_kernels=2), inputs=hd.TaskEmbedding(3, 4, name="client"), body=hd.MLP(hidden=(8,)),
                        outputs=hd.MultiHead())
    server = fed.PFedHN(model, momentum=0.0, weight_decay=0.0, clip=None, lr=0.1)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    delta = {k: torch.randn_like(v) for k, v in server.weights_for(2).items()}
    # reference: d/dphi <theta(phi), delta> by ordinary backprop of a scalar
    ref = fed.pfedhn_model.__globals__["HyperDNN"]  # the same class; a fresh copy of the model
    twin = hd.HyperDNN(fed.FederatedLeNet(n_kernels=2), inputs=hd.TaskEmbedding(3, 4, name="client"), body=hd.MLP(hidden=(8,)),
                       outputs=hd.MultiHead())
    twin.load_state_dict(model.state_dict())
    assert isinstance(twin, ref)
    theta = twin.weights(client=2)
    sum((theta[k] * delta[k]).sum() for k in theta).backward()
    server.update(2, delta)
    for k, p in model.named_parameters():
        g = dict(twin.named_parameters())[k].grad
        assert torch.allclose(p, before[k] - 0.1 * g, atol=1e-6), k
    with pytest.raises(ConfigError, match="delta lacks"):
        server.update(0, {})
    with pytest.raises(ConfigError, match="client must be an int in 0..2"):
        server.weights_for(3)


def test_novel_client_moves_only_its_embedding_and_learns() -> None:
    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Linear(2, 2), inputs=hd.TaskEmbedding(3, 4, name="client"), body=hd.MLP(hidden=(16,)),
                        outputs=hd.MultiHead())
    server = fed.PFedHN(model, embed_lr=0.1)
    x = torch.randn(200, 2)
    y = (x[:, 0] > 0).long()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    start = server.evaluate(2, x, y)[0]
    losses = fed.tune_novel_client(server, 2, lambda: nn.Linear(2, 2), x, y, rounds=15, inner={"steps": 5, "lr": 0.1})
    after = dict(model.named_parameters())
    for k, v in before.items():
        if k != "hypernetwork.inputs.table.weight":
            assert torch.equal(after[k], v), k  # the hypernetwork is frozen
    table = after["hypernetwork.inputs.table.weight"]
    assert torch.equal(table[:2], before["hypernetwork.inputs.table.weight"][:2])  # other clients untouched
    assert losses[-1] < losses[0] and server.evaluate(2, x, y)[0] > max(start, 150)


def test_novel_client_exchange_moves_its_row_by_the_hand_computed_step_and_lowers_its_loss() -> None:
    """The row a novel client tunes gets gradient, the optimizer holds it, and evaluation sees
    the new row: one exchange against a hand computation (linear hypernetwork theta_t = A_t e + c_t,
    softmax regression, one full-batch inner step), then the local loss of the generated
    network, by hand, falls over further exchanges."""
    torch.manual_seed(0)
    model = linear_pfedhn(num_clients=3)
    heads = model.hypernetwork.outputs.heads
    A = {"weight": heads[0].weight.detach().clone(), "bias": heads[1].weight.detach().clone()}
    c = {"weight": heads[0].bias.detach().clone(), "bias": heads[1].bias.detach().clone()}
    server = fed.PFedHN(model)
    server.embedding_optimizer.param_groups[0]["lr"] = 0.5  # as the recipe sets it
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    e0 = server.table[2].detach().clone()
    inner = {"steps": 1, "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 40, "clip": None}

    def hand_loss(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        W, b = (A["weight"] @ e + c["weight"]).view(2, 3), A["bias"] @ e + c["bias"]
        p = torch.softmax(x @ W.T + b, 1)
        onehot = F.one_hot(y, 2).float()
        loss = -(onehot * p.log()).sum(1).mean()
        return loss, (p - onehot).T @ x / len(x), (p - onehot).mean(0)  # CE and its gradients in W, b

    loss0, gW, gb = hand_loss(e0)
    delta_W, delta_b = 0.1 * gW, 0.1 * gb  # theta - theta~ after one plain SGD step
    expected = e0 - 0.5 * (A["weight"].T @ delta_W.flatten() + A["bias"].T @ delta_b)
    fed.tune_novel_client(server, 2, lambda: nn.Linear(3, 2), x, y, rounds=1, inner=inner)
    assert torch.allclose(server.table[2], expected, atol=1e-6)
    assert not torch.allclose(server.table[2], e0, atol=1e-3)  # a real move, not a rounding
    assert server.loss(2, x, y) == pytest.approx(float(hand_loss(server.table[2].detach())[0]), abs=1e-5)
    fed.tune_novel_client(server, 2, lambda: nn.Linear(3, 2), x, y, rounds=30, inner=inner)
    after = float(hand_loss(server.table[2].detach())[0])
    assert server.loss(2, x, y) == pytest.approx(after, abs=1e-5)
    assert after < 0.9 * float(loss0)  # 0.538 -> 0.445
    assert server.evaluate(2, x, y)[0] >= int((torch.softmax(x @ (A["weight"] @ e0 + c["weight"]).view(2, 3).T
                                                              + A["bias"] @ e0 + c["bias"], 1).argmax(1) == y).sum())


# ---------------------------------------------------------------- HyperFL


def test_hyperfl_shares_only_the_hypernetwork_and_trains_every_part() -> None:
    torch.manual_seed(0)
    model = fed.hyperfl_model(fed.FederatedLeNet(n_kernels=2), fed.FederatedLeNet.FEATURE_EXTRACTOR, embed_dim=4, hidden=8)
    shared, private = fed.shared_state(model), fed.private_state(model)
    assert set(private) == {"target.fc3.weight", "target.fc3.bias", "hypernetwork.inputs.table.weight"}
    assert set(shared) | set(private) == set(model.state_dict()) and not set(shared) & set(private)
    assert all(k.startswith("hypernetwork.outputs.") for k in shared)
    x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    fed.hyperfl_local_training(model, x, y, local_epochs=1, batch_size=10, generator=torch.Generator().manual_seed(0))
    s2, p2 = fed.shared_state(model), fed.private_state(model)
    assert all(not torch.equal(s2[k], shared[k]) for k in ("hypernetwork.outputs.heads.0.weight",))
    assert all(not torch.equal(p2[k], private[k]) for k in private)  # classifier and embedding trained
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- attack


def linear_grads(model: nn.Module):
    def grad_fn(x, y):
        loss = F.cross_entropy(model(x.flatten(1)), y)
        return torch.autograd.grad(loss, list(model.parameters()), create_graph=True)

    return grad_fn


def test_idlg_recovers_a_batch_from_an_unprotected_linear_models_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    x = torch.rand(2, 1, 8, 8)  # a batch of two 8x8 "images"
    y = torch.tensor([2, 7])
    shared = [g.detach() for g in linear_grads(model)(x, y)]
    labels = fed.infer_labels(shared[1], 2)
    assert labels.tolist() == [2, 7]
    rec = fed.invert_gradients(linear_grads(model), shared, x.shape, labels=labels, steps=200,
                               generator=torch.Generator().manual_seed(1))
    psnr, ssim = fed.image_scores(rec.x, x, data_range=1.0)
    noise_psnr, noise_ssim = fed.image_scores(torch.rand(2, 1, 8, 8), x, data_range=1.0)
    assert rec.distance < 1e-6 and psnr > 40 and ssim > 0.99
    assert noise_psnr < 15 and noise_ssim < 0.5


def test_image_scores_match_closed_form_psnr() -> None:
    ref = torch.zeros(1, 1, 8, 8)
    x = torch.full((1, 1, 8, 8), 0.1)
    psnr, ssim = fed.image_scores(x, ref, data_range=1.0)
    assert abs(psnr - 20.0) < 1e-4  # 10 log10(1 / 0.01)
    assert fed.image_scores(ref, ref, data_range=1.0)[1] == pytest.approx(1.0)
    with pytest.raises(ShapeError):
        fed.image_scores(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))
