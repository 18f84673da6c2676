"""Recipe ``federated-mnist``: personalised federated learning on MNIST split across 50 clients,
run on Flower's simulation engine: pFedHN, HyperFL, FedAvg, FedAvg + local fine-tuning and
local-only training; novel clients (pFedHN's generalisation experiment); bytes per round; and
gradient inversion (iDLG against FedAvg's shared gradient, DLG against HyperFL's).

Papers: Shamsian et al., "Personalized Federated Learning using Hypernetworks", ICML 2021
(50 clients, 2 classes each on CIFAR-10, 5000 steps of one client); Guo et al., "A New
Federated Learning Framework Against Gradient Inversion Attacks", AAAI 2025 (20 clients,
200 rounds). Both trained on GPUs; this recipe is scaled to 2 CPU cores: ``rounds`` rounds of
``clients_per_round`` clients (defaults 40 x 10, so each client takes part about 8 times
where pFedHN's took part 100 times), HyperFL's local epochs capped at ``hyperfl_max_steps``
minibatches, clients evaluated every ``eval_every`` rounds. pFedHN takes one client per
Flower round (its Algorithm 1) and so ``clients_per_round`` times the rounds: the same
number of client updates as the other methods. ``--split dirichlet --alpha 0.1`` (or 0.5)
gives the Dirichlet splits. Settings not given here are the authors' (see
:mod:`hyperdnn.methods.federated`).

Resumable between its four phases (the Flower run, local-only training, novel clients,
the attack).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import torch

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import in_range, non_negative, one_of, positive, recipe
from hyperdnn.experiments.runs import RunContext

METHODS = ("pFedHN", "HyperFL", "FedAvg", "FedAvg+FT", "Local")


@dataclass
class Config:
    """Configuration of ``federated-mnist`` (scaled for 2 CPU cores; see the module docstring)."""

    clients: int = field(default=50, metadata={"help": "training clients (pFedHN: 50)"})
    novel_clients: int = field(default=5, metadata={"help": "further clients that join after training (pFedHN: 10 %% of the clients)"})
    split: str = field(default="pathological", metadata={"help": "how MNIST is divided: pathological (2 classes per client) or dirichlet",
                                                         "choices": ["pathological", "dirichlet"]})
    alpha: float = field(default=0.5, metadata={"help": "Dirichlet concentration for split=dirichlet (the issue's 0.1 and 0.5); "
                                                        "drawn again until every client has 10 training examples"})
    rounds: int = field(default=40, metadata={"help": "federated rounds for every method"})
    clients_per_round: int = field(default=10, metadata={"help": "clients sampled per round"})
    pfedhn_clients_per_round: int = field(default=1, metadata={
        "help": "pFedHN: clients per Flower round (Algorithm 1: 1); it then runs rounds * clients_per_round / this rounds, "
                "so every method trains the same number of clients (must divide clients_per_round)"})
    eval_every: int = field(default=5, metadata={"help": "evaluate all clients every this many rounds (and after the last)"})
    local_steps: int = field(default=50, metadata={"help": "SGD steps per client per round for pFedHN (its inner steps) and FedAvg"})
    pfedhn_lr: float = field(default=1e-2, metadata={"help": "pFedHN hypernetwork SGD learning rate (authors: 1e-2)"})
    inner_lr: float = field(default=5e-3, metadata={"help": "pFedHN clients' inner SGD learning rate (authors: 5e-3)"})
    fedavg_lr: float = field(default=0.02, metadata={"help": "FedAvg / local / fine-tuning SGD learning rate (momentum 0.5, as HyperFL's code)"})
    finetune_steps: int = field(default=50, metadata={"help": "FedAvg+FT: local SGD steps from the global model before evaluation"})
    hyperfl_lr: float = field(default=0.005, metadata={"help": "HyperFL hypernetwork lr (authors: 0.02, which did not learn here)"})
    hyperfl_epochs: int = field(default=1, metadata={"help": "HyperFL local epochs of the hypernetwork per round (authors: 5)"})
    hyperfl_max_steps: int = field(default=20, metadata={"help": "HyperFL: at most this many minibatches of 50 per local epoch"})
    novel_rounds: int = field(default=20, metadata={"help": "exchanges that train a novel client's embedding (hypernetwork frozen)"})
    novel_lr: float = field(default=1.0, metadata={"help": "learning rate of a novel client's embedding (0.1 barely moved it here; see docs/results.md)"})
    attack_images: int = field(default=3, metadata={"help": "single-image batches attacked per method"})
    attack_steps: int = field(default=200, metadata={"help": "L-BFGS iterations per attack"})
    workers: int = field(default=1, metadata={"help": "ClientApps Flower runs at once (one process each); 1 with --threads 1"})

    def __post_init__(self) -> None:
        part = "federated-mnist"
        one_of(part, "split", self.split, ("pathological", "dirichlet"))
        for name in ("clients", "rounds", "clients_per_round", "eval_every", "local_steps", "hyperfl_epochs", "hyperfl_max_steps",
                     "workers"):
            positive(part, name, getattr(self, name))
        for name in ("novel_clients", "finetune_steps", "novel_rounds", "attack_images", "attack_steps"):
            non_negative(part, name, getattr(self, name))
        for name in ("alpha", "pfedhn_lr", "inner_lr", "fedavg_lr", "hyperfl_lr", "novel_lr"):
            positive(part, name, getattr(self, name), float)
        in_range(part, "clients_per_round", self.clients_per_round, 1, self.clients)
        positive(part, "pfedhn_clients_per_round", self.pfedhn_clients_per_round)
        if self.clients_per_round % self.pfedhn_clients_per_round:
            raise ConfigError(f"{part}: pfedhn_clients_per_round ({self.pfedhn_clients_per_round}) must divide clients_per_round "
                              f"({self.clients_per_round}) so that pFedHN trains as many clients as the other methods; "
                              "use 1 (pFedHN's Algorithm 1) or a divisor")


def _weighted(per_client: list[tuple[int, int]]) -> float:
    return sum(c for c, _ in per_client) / max(1, sum(t for _, t in per_client))


@recipe("federated-mnist", "pFedHN, HyperFL, FedAvg(+FT), local on MNIST over 50 clients on Flower; novel clients; DLG/iDLG (Shamsian et al. 2021, Guo et al. 2025)", Config)
def run(ctx: RunContext) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperdnn.methods import federated as fed
    from hyperdnn.methods.federated.inversion import attack_fedavg, attack_hyperfl
    from hyperdnn.methods.federated.local import accuracy, cross_entropy, sgd_steps

    cfg: Config = ctx.config
    total = cfg.clients + cfg.novel_clients
    data_dir = None if ctx.data_dir is None else str(ctx.data_dir)
    clients = fed.mnist_clients(total, split=cfg.split, alpha=cfg.alpha, seed=ctx.seed, data_dir=data_dir)
    partition = fed.MNISTPartition(total, split=cfg.split, alpha=cfg.alpha, seed=ctx.seed, data_dir=data_dir)
    target, fe = fed.FederatedLeNet, fed.FederatedLeNet.FEATURE_EXTRACTOR
    torch.manual_seed(ctx.seed)
    server = fed.PFedHN(fed.pfedhn_model(target(), total), lr=cfg.pfedhn_lr, embed_lr=cfg.pfedhn_lr)
    ctx.track(pfedhn=server.model)
    state = ctx.restore({"phase": 0, "results": {}})
    res = state["results"]
    ctx.progress(total=4)
    numel = sum(p.numel() for p in target().parameters())

    if state["phase"] == 0:  # pFedHN, HyperFL, FedAvg (+FT) in one Flower run (one start of the engine)
        hist: dict = {"pfedhn": {}, "hyperfl": {}, "fedavg": {}}
        seed = {"seed": ctx.seed}
        sgd = {"lr": cfg.fedavg_lr, "momentum": 0.5, "weight-decay": 5e-4, "batch-size": 50}
        frac = cfg.clients_per_round / cfg.clients
        # pFedHN applies one hypernetwork step per client, each from weights sent at the start of
        # the round: with several clients per round the later steps use stale deltas, which
        # trained far slower here (see docs/results.md); so it runs `scale` times the rounds
        # with fewer clients each, the same number of client updates as the other methods.
        scale = cfg.clients_per_round // cfg.pfedhn_clients_per_round
        server_app = fed.combined_server_app(
            fed.pfedhn_server_app(lambda: fed.pfedhn_strategy(
                server, clients_per_round=cfg.pfedhn_clients_per_round, min_available_nodes=cfg.clients,
                evaluate_every=cfg.eval_every * scale, seed=ctx.seed,
                inner={"inner-steps": cfg.local_steps, "inner-lr": cfg.inner_lr, **seed}), num_rounds=cfg.rounds * scale,
                history=hist["pfedhn"]),
            fed.hyperfl_server_app(target, fe, num_rounds=cfg.rounds, fraction_train=frac, min_nodes=cfg.clients, seed=ctx.seed,
                                   evaluate_every=cfg.eval_every, history=hist["hyperfl"],
                                   train_config={"local-epochs": cfg.hyperfl_epochs, "max-steps": cfg.hyperfl_max_steps,
                                                 "lr": cfg.hyperfl_lr, **seed}),
            fed.fedavg_server_app(target, num_rounds=cfg.rounds, fraction_train=frac, min_nodes=cfg.clients, seed=ctx.seed,
                                  evaluate_every=cfg.eval_every, history=hist["fedavg"],
                                  train_config={"local-steps": cfg.local_steps, **sgd, **seed},
                                  evaluate_config={"finetune-steps": cfg.finetune_steps, **sgd, **seed}),
        )
        threads = ctx.threads
        client_app = fed.combined_client_app(
            pfedhn=fed.pfedhn_client_app(target, partition),
            hyperfl=fed.hyperfl_client_app(target, fe, partition, threads=threads),
            fedavg=fed.fedavg_client_app(target, partition, threads=threads))
        t0 = time.perf_counter()
        fed.simulate(server_app, client_app, cfg.clients, workers=cfg.workers)
        curves = {
            "pFedHN": {r // scale: m["accuracy"] for r, m in hist["pfedhn"]["evaluate"].items()},  # in rounds of the others
            "HyperFL": {r: m["accuracy"] for r, m in hist["hyperfl"]["evaluate"].items()},
            "FedAvg": {r: m["accuracy"] for r, m in hist["fedavg"]["evaluate"].items()},
            "FedAvg+FT": {r: m["accuracy-finetuned"] for r, m in hist["fedavg"]["evaluate"].items() if "accuracy-finetuned" in m},
        }
        hyper_bytes = hist["hyperfl"]["bytes_per_client"]
        per_round = {"pFedHN": 2 * cfg.clients_per_round * 4 * numel, "HyperFL": 2 * cfg.clients_per_round * hyper_bytes,
                     "FedAvg": 2 * cfg.clients_per_round * 4 * numel, "FedAvg+FT": 2 * cfg.clients_per_round * 4 * numel, "Local": 0}
        measured = hist["pfedhn"]["bytes_per_round"][1]
        res.update(curves={k: {str(r): float(a) for r, a in v.items()} for k, v in curves.items()}, bytes_per_round=per_round,
                   pfedhn_bytes_measured=measured, pfedhn_flower_rounds=cfg.rounds * scale, flower_seconds=time.perf_counter() - t0)
        ctx.log(kind="flower", seconds=res["flower_seconds"], **{k: v[max(v)] for k, v in curves.items() if v})
        state["phase"] = 1
        ctx.step_done(phase="flower")

    if state["phase"] == 1:  # local-only: each client alone, with the local steps FedAvg gives it on average
        steps = round(cfg.local_steps * cfg.rounds * cfg.clients_per_round / cfg.clients)
        per = []
        for i, d in enumerate(clients[: cfg.clients]):
            torch.manual_seed(ctx.seed * 1000 + i)
            net = target()
            sgd_steps(cross_entropy(net), net.parameters(), d.train_x, d.train_y, steps=steps, lr=cfg.fedavg_lr, momentum=0.5,
                      weight_decay=5e-4, batch_size=50, generator=torch.Generator().manual_seed(ctx.seed * 1000 + i))
            net.eval()
            per.append(accuracy(net, d.test_x, d.test_y))
        res["local"] = {"accuracy": _weighted(per), "steps_per_client": steps}
        state["phase"] = 2
        ctx.step_done(phase="local")

    if state["phase"] == 2:  # novel clients: only their embeddings, through the same exchange
        novel, moved, loss_before, loss_after = [], [], [], []
        for c in range(cfg.clients, total):
            d = clients[c]
            before = server.evaluate(c, d.test_x, d.test_y)
            row = server.table[c].detach().clone()
            loss_before.append(server.loss(c, d.train_x, d.train_y))
            server.embedding_optimizer.param_groups[0]["lr"] = cfg.novel_lr
            fed.tune_novel_client(server, c, target, d.train_x, d.train_y, rounds=cfg.novel_rounds,
                                  inner={"steps": cfg.local_steps, "lr": cfg.inner_lr},
                                  generator=torch.Generator().manual_seed(ctx.seed + c))
            novel.append((before, server.evaluate(c, d.test_x, d.test_y)))
            loss_after.append(server.loss(c, d.train_x, d.train_y))
            moved.append(float((server.table[c] - row).norm() / row.norm()))
        # diagnostics: how far tuning moved each embedding row (relative) and the training loss
        # of the client's generated network before and after, so "no change" is visible as such
        res["novel"] = {"accuracy_before": _weighted([b for b, _ in novel]) if novel else None,
                        "accuracy": _weighted([a for _, a in novel]) if novel else None,
                        "embedding_moved": moved, "train_loss_before": loss_before, "train_loss_after": loss_after}
        state["phase"] = 3
        ctx.step_done(phase="novel")

    if state["phase"] == 3:  # gradient inversion of single images of client 0 at initialisation
        d = clients[0]
        rows: dict[str, list] = {"original": [], "FedAvg (iDLG)": [], "HyperFL (DLG)": [], "noise": []}
        scores: dict[str, list] = {"FedAvg (iDLG)": [], "HyperFL (DLG)": [], "noise": []}
        for j in range(cfg.attack_images):
            x, y = d.train_x[j : j + 1], d.train_y[j : j + 1]
            torch.manual_seed(ctx.seed + j)
            rec_f = attack_fedavg(target(), x, y, steps=cfg.attack_steps, generator=torch.Generator().manual_seed(j))
            hmodel = fed.hyperfl_model(target(), fe)
            rec_h = attack_hyperfl(hmodel, target, x, y, steps=cfg.attack_steps, generator=torch.Generator().manual_seed(j))
            noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(10_000 + j))
            for name, r in (("FedAvg (iDLG)", rec_f.x), ("HyperFL (DLG)", rec_h.x), ("noise", noise)):
                scores[name].append(fed.image_scores(r, x))
                rows[name].append(r[0, 0])
            rows["original"].append(x[0, 0])
        res["attack"] = {k: {"psnr": sum(p for p, _ in v) / len(v), "ssim": sum(s for _, s in v) / len(v)} for k, v in scores.items() if v}
        if cfg.attack_images:
            fig, axes = plt.subplots(len(rows), cfg.attack_images, figsize=(1.6 * cfg.attack_images + 0.6, 6.6), squeeze=False)
            lo, hi = float(d.train_x.min()), float(d.train_x.max())
            for i, (name, imgs) in enumerate(rows.items()):
                for j, img in enumerate(imgs):
                    ax = axes[i, j]
                    ax.imshow(img.clamp(lo, hi).numpy(), cmap="gray", vmin=lo, vmax=hi)
                    ax.set_xticks([]), ax.set_yticks([])
                    if name in scores:
                        p, s = scores[name][j]
                        ax.set_title(f"{p:.1f} dB / {s:.2f}", fontsize=7)
                axes[i, 0].set_ylabel(name, fontsize=8)
            fig.suptitle("Gradient inversion of one client image (PSNR / SSIM)", fontsize=9)
            fig.tight_layout()
            ctx.save_figure(fig, "federated_inversion")
        state["phase"] = 4
        ctx.step_done(phase="attack")
    ctx.close_progress()

    # table and figure
    curves = {k: {int(r): a for r, a in v.items()} for k, v in res["curves"].items()}
    final = {k: 100 * v[max(v)] for k, v in curves.items() if v}
    final["Local"] = 100 * res["local"]["accuracy"]
    rows_t = [[m, f"{final.get(m, float('nan')):.2f}", f"{res['bytes_per_round'][m] / 1e6:.2f}"] for m in METHODS]
    ctx.table(f"Personalised test accuracy after {cfg.rounds} rounds ({cfg.clients} clients, {cfg.split})",
              ["method", "accuracy %", "MB per round (up + down)"], rows_t,
              note=f"{cfg.clients_per_round} clients per round (pFedHN: {res.get('pfedhn_flower_rounds', cfg.rounds)} Flower rounds of "
                   f"{cfg.pfedhn_clients_per_round}); Local: {res['local']['steps_per_client']} steps per client alone")
    if res.get("novel", {}).get("accuracy") is not None:
        nv = res["novel"]
        ctx.table("pFedHN novel clients (embedding only, hypernetwork frozen)",
                  ["clients", "before %", "after %", "training clients %", "train loss before -> after", "embedding moved (relative)"],
                  [[cfg.novel_clients, f"{100 * nv['accuracy_before']:.2f}", f"{100 * nv['accuracy']:.2f}", f"{final['pFedHN']:.2f}",
                    f"{sum(nv['train_loss_before']) / len(nv['train_loss_before']):.3f} -> "
                    f"{sum(nv['train_loss_after']) / len(nv['train_loss_after']):.3f}",
                    f"{sum(nv['embedding_moved']) / len(nv['embedding_moved']):.3f}"]],
                  note=f"{cfg.novel_rounds} exchanges of {cfg.local_steps} inner steps, embedding lr {cfg.novel_lr}; means over the clients")
    if res.get("attack"):
        ctx.table("Gradient inversion (single images, mean)", ["shared", "PSNR dB", "SSIM"],
                  [[k, f"{v['psnr']:.2f}", f"{v['ssim']:.3f}"] for k, v in res["attack"].items()])
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, v in curves.items():
        rs = sorted(v)
        ax.plot(rs, [100 * v[r] for r in rs], marker="o", markersize=3, label=name)
    ax.axhline(final["Local"], color="gray", ls="--", label="Local (alone)")
    if res.get("novel", {}).get("accuracy") is not None:
        ax.scatter([cfg.rounds], [100 * res["novel"]["accuracy"]], marker="*", s=90, color="black", zorder=5, label="pFedHN novel clients")
    ax.set_xlabel("round")
    ax.set_ylabel("personalised test accuracy (%)")
    ax.set_title(f"MNIST, {cfg.clients} clients ({cfg.split}), {cfg.clients_per_round} per round", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure(fig, "federated_accuracy")
    res["final_accuracy"] = final
    return res
