"""The data and training loop shared by the Ha et al. MNIST recipes (ha-mnist, seq-mnist).

Several classifiers are trained one after the other on the same data with Adam,
a cosine learning-rate schedule from ``lr`` down to ``0.1 * lr`` and an epoch
order that depends only on ``(seed, epoch)``, so that a run resumed at any step
boundary ends with the same weights as an uninterrupted one (see
:mod:`hyperdnn.experiments.runs`).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperdnn.data.mnist import load_mnist
from hyperdnn.errors import ConfigError, DataError
from hyperdnn.experiments.runs import RunContext

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def standardized_mnist(ctx: RunContext, part: str, train_subset: int, channel: bool) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """MNIST from the run's data directory on the run's device, pixels standardised with the
    usual mean and std (0.1307, 0.3081).

    Args:
        ctx: the run.
        part: the recipe name, for the error message.
        train_subset: use the first this many training images (0: all 60,000).
        channel: images ``(N, 1, 28, 28)`` for a convnet; else ``(N, 28, 28)`` (rows as time steps).

    Returns:
        ``((train_x, train_y), (test_x, test_y))``.
    """
    data = load_mnist(ctx.data_dir)
    for split, images in (("training", data.train_images), ("test", data.test_images)):
        if len(images) == 0:  # refused before training, not a ZeroDivisionError after it
            raise DataError(f"{part}: the MNIST {split} set has 0 images (expected at least one); check the data files in the data directory")
    if train_subset > len(data.train_images):
        raise ConfigError(f"{part}: train_subset={train_subset} is more than the {len(data.train_images)} training images")

    def prep(x: Tensor) -> Tensor:
        x = (x.float() / 255.0 - MNIST_MEAN) / MNIST_STD
        return (x.unsqueeze(1) if channel else x).to(ctx.device)

    n_train = train_subset or len(data.train_images)
    return (prep(data.train_images[:n_train]), data.train_labels[:n_train].to(ctx.device)), (prep(data.test_images), data.test_labels.to(ctx.device))


@torch.no_grad()
def count_correct(model: nn.Module, images: Tensor, labels: Tensor, batch: int = 1000) -> int:
    """How many of ``images`` the classifier labels right, in eval mode (its mode is restored)."""
    was = model.training
    model.eval()
    correct = sum((model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum().item() for i in range(0, len(images), batch))
    model.train(was)
    return int(correct)


def train_classifiers(
    ctx: RunContext,
    models: dict[str, nn.Module],
    train: tuple[Tensor, Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    evaluate: Callable[[nn.Module], dict[str, Any]],
    final: Callable[[str, nn.Module], dict[str, Any]],
    clip: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Train each model in turn for ``epochs`` epochs of cross-entropy; resumable.

    Args:
        ctx: the run (its seed fixes the epoch orders; progress, logs and checkpoints go there).
        models: name -> classifier returning logits, trained in this order.
        train: ``(inputs (N, ...), labels (N,))`` on the run's device.
        epochs: passes over the training set per model (the last partial batch is dropped).
        batch_size: minibatch size.
        lr: Adam's peak learning rate.
        evaluate: ``model -> {metric: value}``, logged after every epoch.
        final: ``(name, model) -> results``, called once a model is trained.
        clip: max gradient norm, or None for no clipping.

    Returns:
        name -> ``final(name, model)`` for every model.
    """
    xtr, ytr = train
    steps_per_epoch = len(xtr) // batch_size
    total = steps_per_epoch * epochs
    names = list(models)
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr) for k, m in models.items()}
    ctx.track(**{f"model_{k}": m for k, m in models.items()}, **{f"opt_{k}": o for k, o in opts.items()})
    state = ctx.restore({"model": 0, "step": 0, "results": {}})
    perm, perm_key = None, None
    ctx.progress(total=total * len(names))
    while state["model"] < len(names):
        kind = names[state["model"]]
        model, opt = models[kind], opts[kind]
        model.train()
        while state["step"] < total:
            epoch, i = divmod(state["step"], steps_per_epoch)
            if perm_key != (state["model"], epoch):  # the order of an epoch depends on (seed, epoch) only: exact resume
                gen = torch.Generator().manual_seed(ctx.seed * 100003 + epoch)
                perm, perm_key = torch.randperm(len(xtr), generator=gen).to(xtr.device), (state["model"], epoch)
            idx = ctx.shard(perm[i * batch_size : (i + 1) * batch_size])  # this process's part of the batch under torchrun
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            for g in opt.param_groups:
                g["lr"] = lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * state["step"] / total)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            state["step"] += 1
            if state["step"] % steps_per_epoch == 0:
                ctx.log(kind="epoch", model=kind, epoch=state["step"] // steps_per_epoch, **evaluate(model))
            ctx.step_done(loss=loss.item(), model=kind)
        res = final(kind, model)
        state["results"][kind] = res
        ctx.log(kind="final", model=kind, **res)
        state["model"] += 1
        state["step"] = 0
    ctx.close_progress()
    return state["results"]
