"""Cross-check of the split-mnist recipe: the released training loop on hypnettorch's own parts.

This script does not use hyperdnn's hypernetwork, regularizer or look-ahead. It
rebuilds the loop of chrhenning/hypercl ``mnist/train_splitMNIST.py``
(``train_class_one_t`` and ``test`` with ``--infer_task_id --infer_with_entropy
--cl_scenario 3``) from hypnettorch 0.0.4, the maintained successor of that code:
``mnets.MLP`` (784-400-400-10, a 2-unit head per task), ``ChunkedHMLP`` (task and
chunk embeddings 96, 10-10 ReLU, chunks of 42000, Xavier-uniform weights and zero
biases as ``generate_classifier`` sets them), ``hnet_regularizer.calc_fix_target_reg``
and ``optim_step.calc_delta_theta`` (the look-ahead). Adam lr 1e-3 for theta and a
second Adam for the current task embedding, both new per task; 2000 steps per task,
batch 128 in shuffled sweeps; beta 0.01. Only the data come from hyperdnn's loader
(the same images, pixels in [0, 1], as hypercl's ``SplitMNIST``).

Usage (after ``bash benchmarks/install_peers.sh``):
    python docs/runs/cl/split_mnist_hypnettorch.py --seed 0 --data-dir ../shared/data --out ref_s0.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks" / ".peers" / "site"))

import hypnettorch.utils.hnet_regularizer as hreg  # noqa: E402
import hypnettorch.utils.optim_step as opstep  # noqa: E402
from hypnettorch.hnets.chunked_mlp_hnet import ChunkedHMLP  # noqa: E402
from hypnettorch.mnets import MLP  # noqa: E402

from hyperdnn.data.continual_tasks import split_mnist  # noqa: E402
from hyperdnn.data.mnist import load_mnist  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2000, help="steps per task")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="split_mnist_hypnettorch.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tasks = split_mnist(load_mnist(a.data_dir), 5)
    T, lr, beta, bs = len(tasks), 1e-3, 0.01, 128

    mnet = MLP(n_in=784, n_out=2 * T, hidden_layers=(400, 400), no_weights=True, verbose=False)
    hnet = ChunkedHMLP(mnet.param_shapes, chunk_size=42000, chunk_emb_size=96, cond_in_size=96, layers=(10, 10), num_cond_embs=T, activation_fn=torch.nn.ReLU(), verbose=False)
    for w in hnet.layer_weight_tensors:
        torch.nn.init.xavier_uniform_(w)
    for b in hnet.layer_bias_vectors:
        torch.nn.init.zeros_(b)

    def logits(t: int, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        return mnet.forward(x, weights=weights)[:, 2 * t : 2 * t + 2]

    started, train_acc = time.time(), []
    for t, task in enumerate(tasks):
        x_all, y_all = task.train_set()
        opt = torch.optim.Adam(hnet.unconditional_params, lr=lr)
        emb_opt = torch.optim.Adam([hnet.conditional_params[t]], lr=lr)
        targets = hreg.get_current_targets(t, hnet) if t > 0 else None
        order, pos = torch.randperm(len(x_all)), 0
        for i in range(a.steps):
            if pos + bs > len(x_all):
                order, pos = torch.randperm(len(x_all)), 0
            idx = order[pos : pos + bs]
            pos += bs
            opt.zero_grad()
            emb_opt.zero_grad()
            loss = F.cross_entropy(logits(t, x_all[idx], hnet.forward(cond_id=t)), y_all[idx])
            loss.backward(retain_graph=t > 0)
            if t > 0:
                d_theta = opstep.calc_delta_theta(opt, False, lr=lr, detach_dt=True)
                (beta * hreg.calc_fix_target_reg(hnet, t, targets=targets, dTheta=d_theta, mnet=mnet)).backward()
            opt.step()
            emb_opt.step()
        with torch.no_grad():
            train_acc.append(100.0 * (logits(t, x_all, hnet.forward(cond_id=t)).argmax(1) == y_all).float().mean().item())
        print(f"task {t + 1}: train accuracy {train_acc[-1]:.2f} %, {time.time() - started:.0f} s", flush=True)

    cl1, cl3 = [], []
    with torch.no_grad():
        weights = [hnet.forward(cond_id=k) for k in range(T)]
        for t, task in enumerate(tasks):
            x, y = task.test_set()
            out = torch.stack([logits(k, x, weights[k]) for k in range(T)])  # (T, N, 2)
            cl1.append(100.0 * (out[t].argmax(1) == y).float().mean().item())
            prob = out.softmax(-1)
            which = (-(prob * prob.log()).sum(-1)).argmin(0)  # hypercl's entropy, as written there
            pred = out.argmax(-1).gather(0, which[None])[0] + 2 * which
            cl3.append(100.0 * (pred == y + 2 * t).float().mean().item())
    res = {"seed": a.seed, "steps": a.steps, "threads": a.threads, "train_accuracy": train_acc, "cl1": cl1, "cl1_average": sum(cl1) / T, "cl3": cl3, "cl3_average": sum(cl3) / T, "seconds": time.time() - started, "torch": torch.__version__}
    print(json.dumps(res))
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
