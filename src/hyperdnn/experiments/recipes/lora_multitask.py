"""Recipe ``lora-multitask`` (not yet registered; see ``run_recipe``): one hypernetwork writing the
LoRAs of several KJV tasks, against one PEFT LoRA per task, one shared LoRA, and a frozen base with heads.

Base: all-MiniLM-L6-v2 (offline), sentences mean-pooled, one linear head per task.
Methods, each trained by the task loss with Adam, round-robin over the tasks:

- ``hyper``: ``lora_model`` with a ``TaskEmbedding`` (HyperFormer-style), heads per task;
- ``peft-per-task``: one ``peft`` LoRA per task, trained separately (the anchor);
- ``shared-lora``: one ``peft`` LoRA for all tasks;
- ``frozen-head``: the base frozen, heads only.

Every method gets the same number of steps per task. Reported: test accuracy per task,
trainable parameters, bytes stored (float32) for all tasks.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.errors import ConfigError

METHODS = ("hyper", "peft-per-task", "shared-lora", "frozen-head")


@dataclass
class Config:
    """Configuration of ``lora-multitask`` (sizes chosen to finish well under an hour on 2 cores)."""

    tasks: tuple[str, ...] = ("testament", "genre", "book-gospels", "book-law")
    methods: tuple[str, ...] = METHODS
    per_class: int = 64
    test_per_class: int = 32
    steps_per_task: int = 100
    batch_size: int = 16
    max_length: int = 48
    rank: int = 4
    alpha: float = 8.0
    target_modules: tuple[str, ...] = ("query", "value")
    task_dim: int = 16
    decomposed: int = 1  # Polyhistor's template factor for the hypernetwork's heads (1: plain heads)
    hidden: int = 64
    lr: float = 1e-3
    head_lr: float = 1e-2

    def __post_init__(self) -> None:
        for n in ("per_class", "test_per_class", "steps_per_task", "batch_size", "max_length", "rank", "task_dim", "hidden",
                  "decomposed"):
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"lora-multitask: {n} must be a positive int (got {v!r})")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"lora-multitask: methods must be some of {METHODS} (got {self.methods!r})")


def _pool(states: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, d)


class _Runner:
    """Trains and evaluates one method on all tasks."""

    def __init__(self, cfg: Config, tasks, tok, encode) -> None:
        self.cfg, self.tasks, self.tok, self.encode = cfg, tasks, tok, encode

    def batches(self, t: int, g: torch.Generator):
        task = self.tasks[t]
        idx = torch.randint(len(task.train_texts), (self.cfg.batch_size,), generator=g).tolist()
        enc = self.tok([task.train_texts[i] for i in idx], padding=True, truncation=True,
                       max_length=self.cfg.max_length, return_tensors="pt")
        return enc, torch.tensor([task.train_labels[i] for i in idx])

    def train(self, forward, params: list[nn.Parameter], heads: nn.ModuleList, only: int | None = None) -> float:
        opt = torch.optim.Adam([{"params": params, "lr": self.cfg.lr},
                                {"params": list(heads.parameters()), "lr": self.cfg.head_lr}])
        g = torch.Generator().manual_seed(0)
        order = [only] * self.cfg.steps_per_task if only is not None else \
            [t for _ in range(self.cfg.steps_per_task) for t in range(len(self.tasks))]
        loss = torch.zeros(())
        for t in order:
            enc, y = self.batches(t, g)
            h = forward(t, enc)
            loss = F.cross_entropy(heads[t](h), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def accuracy(self, forward, heads: nn.ModuleList, t: int) -> float:
        task = self.tasks[t]
        correct = 0
        for s in range(0, len(task.test_texts), 64):
            enc = self.tok(list(task.test_texts[s:s + 64]), padding=True, truncation=True,
                           max_length=self.cfg.max_length, return_tensors="pt")
            pred = heads[t](forward(t, enc)).argmax(-1)
            correct += int((pred == torch.tensor(task.test_labels[s:s + 64])).sum())
        return correct / len(task.test_texts)


def run_recipe(cfg: Config, run_dir: str | Path, data_dir: str | Path | None = None, *,
               encoder: tuple[Any, Any] | None = None) -> dict:
    """Runs every method of ``cfg``; writes ``results.json`` and ``results.md`` in ``run_dir``.

    Args:
        encoder: ``(model, tokenizer)`` instead of all-MiniLM-L6-v2 (tests use a tiny one).
    """
    import hyperdnn as hd
    from hyperdnn.methods.lora import HyperLoRA, LoraTargets, kjv_tasks, load_encoder, lora_model
    from peft import get_peft_model

    t0 = time.time()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    base, tok = encoder if encoder is not None else load_encoder()
    base = base.eval()
    by_name = {t.name: t for t in kjv_tasks(data_dir, per_class=cfg.per_class, test_per_class=cfg.test_per_class)}
    missing = [n for n in cfg.tasks if n not in by_name]
    if missing:
        raise ConfigError(f"lora-multitask: unknown tasks {missing}; choose from {sorted(by_name)}")
    tasks = [by_name[n] for n in cfg.tasks]
    d = base.config.hidden_size
    targets = LoraTargets(target_modules=cfg.target_modules, r=cfg.rank, lora_alpha=cfg.alpha)
    runner = _Runner(cfg, tasks, tok, None)

    def heads_for() -> nn.ModuleList:
        torch.manual_seed(1)
        return nn.ModuleList(nn.Linear(d, len(t.classes)) for t in tasks)

    def n_params(ps) -> int:
        return sum(p.numel() for p in ps)

    results: dict[str, Any] = {}
    for method in cfg.methods:
        start = time.time()
        heads = heads_for()
        if method == "hyper":
            torch.manual_seed(0)
            model = lora_model(base, targets, inputs=hd.TaskEmbedding(num_tasks=len(tasks), dim=cfg.task_dim),
                               body=hd.MLP(hidden=(cfg.hidden,)), decomposed=cfg.decomposed)

            def fwd(t, enc, model=model):
                return _pool(model(enc["input_ids"], task=t, attention_mask=enc["attention_mask"]).last_hidden_state,
                             enc["attention_mask"])

            params = [p for p in model.parameters() if p.requires_grad]
            loss = runner.train(fwd, params, heads)
            model.eval()
            acc = [runner.accuracy(fwd, heads, t) for t in range(len(tasks))]
            trainable = n_params(params) + n_params(heads.parameters())
            stored = trainable
            extra = {"hypernetwork": HyperLoRA(model, base, targets).parameter_counts()}
        elif method in ("peft-per-task", "shared-lora"):
            acc, trainable, extra = [], 0, {}
            groups = [[t] for t in range(len(tasks))] if method == "peft-per-task" else [list(range(len(tasks)))]
            accs: dict[int, float] = {}
            for group in groups:
                torch.manual_seed(0)
                pm = get_peft_model(copy.deepcopy(base), targets.peft_config())

                def fwd(t, enc, pm=pm):
                    return _pool(pm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state,
                                 enc["attention_mask"])

                params = [p for p in pm.parameters() if p.requires_grad]
                trainable += n_params(params)
                loss = runner.train(fwd, params, heads, only=group[0] if len(group) == 1 else None)
                pm.eval()
                for t in group:
                    accs[t] = runner.accuracy(fwd, heads, t)
            acc = [accs[t] for t in range(len(tasks))]
            trainable += n_params(heads.parameters())
            stored = trainable
        else:
            def fwd(t, enc):
                with torch.no_grad():
                    s = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                return _pool(s, enc["attention_mask"])

            loss = runner.train(fwd, [], heads)
            acc = [runner.accuracy(fwd, heads, t) for t in range(len(tasks))]
            trainable = stored = n_params(heads.parameters())
            extra = {}
        results[method] = {"accuracy": dict(zip(cfg.tasks, acc)), "mean_accuracy": sum(acc) / len(acc),
                           "trainable_parameters": trainable, "bytes_stored": 4 * stored, "final_loss": loss,
                           "seconds": time.time() - start, **extra}
    out = {"config": asdict(cfg), "results": results, "threads": torch.get_num_threads(), "seconds": time.time() - t0}
    (run_dir / "results.json").write_text(json.dumps(out, indent=2))
    lines = ["| method | " + " | ".join(cfg.tasks) + " | mean | trainable params | bytes stored |",
             "|---" * (len(cfg.tasks) + 4) + "|"]
    for m, r in results.items():
        lines.append(f"| {m} | " + " | ".join(f"{100 * r['accuracy'][t]:.1f}" for t in cfg.tasks)
                     + f" | {100 * r['mean_accuracy']:.1f} | {r['trainable_parameters']:,} | {r['bytes_stored']:,} |")
    (run_dir / "results.md").write_text("\n".join(lines) + "\n")
    return out
