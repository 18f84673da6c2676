"""Federated hypernetworks on Flower: 2 rounds of pFedHN, HyperFL and FedAvg with 2 clients
through Flower's strategy loop and ClientApps in one process (default) and on the simulation
engine (Ray; slow), and deployment mode (a SuperLink and two SuperNodes as
separate processes on 127.0.0.1, driven by ``flwr run``)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hyperdnn.methods import federated as fed

@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ServerApp's identity, which Flower sets in a run and Message() reads."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 1), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


DATA = Path(os.environ.get("HYPERDNN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


class InProcessGrid:
    """Flower's ``Grid`` for one process: each message goes straight to the ``ClientApp`` with
    the node's own ``Context`` (kept across rounds, as a SuperNode keeps it). The lightest
    way to drive Flower's ``Strategy.start`` and real ``ClientApp``s: no Ray, no processes."""

    def __init__(self, client_app, num_nodes: int) -> None:
        from flwr.app import Context, RecordDict

        self.client_app = client_app
        self.contexts = {100 + i: Context(run_id=1, node_id=100 + i, node_config={"partition-id": i, "num-partitions": num_nodes},
                                          state=RecordDict(), run_config={}) for i in range(num_nodes)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        return [self.client_app(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def two_rounds(run) -> None:
    """pFedHN, HyperFL and FedAvg(+FT), 2 rounds, 2 clients, through ``run(server_app, client_app)``."""
    data = fed.MNISTPartition(2, seed=0, data_dir=str(DATA))
    target, fe = functools.partial(fed.FederatedLeNet, n_kernels=2), fed.FederatedLeNet.FEATURE_EXTRACTOR  # small: a fast test
    hist: dict = {"pfedhn": {}, "hyperfl": {}, "fedavg": {}}
    torch.manual_seed(0)
    server = fed.PFedHN(fed.pfedhn_model(target(), 2, hidden=16, n_hidden=1))
    before = {k: v.detach().clone() for k, v in server.model.state_dict().items()}
    server_app = fed.combined_server_app(
        fed.pfedhn_server_app(lambda: fed.pfedhn_strategy(server, clients_per_round=2, inner={"inner-steps": 5}),
                              num_rounds=2, history=hist["pfedhn"]),
        fed.hyperfl_server_app(target, fe, num_rounds=2, train_config={"local-epochs": 1, "max-steps": 2, "lr": 0.005},
                               history=hist["hyperfl"], embed_dim=4, hidden=16),
        fed.fedavg_server_app(target, num_rounds=2, train_config={"local-steps": 5}, evaluate_config={"finetune-steps": 2},
                              history=hist["fedavg"]),
    )
    client_app = fed.combined_client_app(pfedhn=fed.pfedhn_client_app(target, data),
                                         hyperfl=fed.hyperfl_client_app(target, fe, data, threads=1, embed_dim=4, hidden=16),
                                         fedavg=fed.fedavg_client_app(target, data, threads=1))
    run(server_app, client_app)
    for method, h in hist.items():
        assert sorted(h["evaluate"]) == [1, 2], method
        assert all(0.0 <= m["accuracy"] <= 1.0 for m in h["evaluate"].values()), method
        assert sorted(h["train"]) == [1, 2], method
    assert "accuracy-finetuned" in hist["fedavg"]["evaluate"][2]
    # pFedHN: the server's hypernetwork moved; each round 2 clients x the LeNet's numbers, each way
    after = server.model.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before)
    numel = sum(p.numel() for p in target().parameters())
    assert hist["pfedhn"]["bytes_per_round"] == {1: {"down": 2 * 4 * numel, "up": 2 * 4 * numel},
                                                 2: {"down": 2 * 4 * numel, "up": 2 * 4 * numel}}
    # HyperFL: what was aggregated is the hypernetwork alone (no embedding, no classifier)
    keys = set(hist["hyperfl"]["arrays"])
    assert keys == set(fed.shared_state(fed.hyperfl_model(target(), fe, embed_dim=4, hidden=16)))
    assert not any("inputs.table" in k or k.startswith("target.") for k in keys)


def test_two_rounds_of_every_method_through_flowers_strategy_loop_and_client_apps(flower_task: None) -> None:
    from flwr.app import Context, RecordDict

    def run(server_app, client_app) -> None:
        grid = InProcessGrid(client_app, 2)
        server_app.hyperdnn_main(grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}))

    two_rounds(run)


@pytest.mark.slow
def test_two_round_simulation_on_flowers_ray_engine() -> None:
    """About 50 s on 2 shared cores (Ray's start and its worker processes), hence slow; the
    in-process test above runs the same apps by default."""
    two_rounds(lambda server_app, client_app: fed.simulate(server_app, client_app, 2, workers=2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


APP_TOML = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hyperdnn-federated-app"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "hyperdnn"

[tool.flwr.app.components]
serverapp = "hyperdnn.methods.federated.deployment:server_app"
clientapp = "hyperdnn.methods.federated.deployment:client_app"

[tool.flwr.app.config]
method = "{method}"
num-server-rounds = 2
min-nodes = 2
local-steps = 5
max-steps = 2
data-dir = "{data}"
result-file = "{result}"
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pfedhn", "hyperfl", "fedavg"])
def test_deployment_mode_superlink_and_two_supernodes_run_two_rounds(method: str, tmp_path: Path) -> None:
    """About 2.5 min each on 2 shared cores: every message starts a ClientApp process (torch, MNIST)."""
    bindir = Path(sys.executable).parent
    app = tmp_path / "app"
    app.mkdir()
    result = tmp_path / "result"
    (app / "pyproject.toml").write_text(APP_TOML.format(method=method, data=DATA, result=result))
    home = tmp_path / "flwr-home"
    home.mkdir()
    link, n0, n1 = _free_port(), _free_port(), _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "FLWR_HOME": str(home),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "HYPERDNN_DATA": str(DATA)}
    procs = []
    try:
        procs.append(subprocess.Popen([str(bindir / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
                                       "--port", str(link), "--database", ":flwr-in-memory:"], env=env, cwd=tmp_path,
                                      stdout=open(tmp_path / "superlink.log", "w"), stderr=subprocess.STDOUT))
        for i, port in enumerate((n0, n1)):
            procs.append(subprocess.Popen([str(bindir / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}",
                                           "--port", str(port), "--node-config", f"partition-id={i} num-partitions=2"],
                                          env=env, cwd=tmp_path, stdout=open(tmp_path / f"supernode{i}.log", "w"),
                                          stderr=subprocess.STDOUT))
        time.sleep(3)
        run = subprocess.run([str(bindir / "flwr"), "run", str(app), "--stream"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=900)
        out = run.stdout + run.stderr
        # flwr run may exit 0 after a failed app sync or a crashed ServerApp: judge by the result file
        path = Path(f"{result}.{method}.json")
        assert path.exists(), f"no result file; flwr run exited {run.returncode}:\n{out[-3000:]}"
        res = json.loads(path.read_text())
        assert sorted(res["evaluate"]) == ["1", "2"]
        assert all(0.0 <= m["accuracy"] <= 1.0 for m in res["evaluate"].values())
        assert "Exit Code" not in out, out[-3000:]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_federated_mnist_recipe_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    """About a minute (one start of the Ray engine); the table, both figures and every phase."""
    from hyperdnn.experiments.recipes import get_recipe
    from hyperdnn.experiments.runs import run_recipe

    r = get_recipe("federated-mnist")
    cfg = r.config(clients=4, novel_clients=1, rounds=2, clients_per_round=2, eval_every=1, local_steps=3, hyperfl_max_steps=2,
                   finetune_steps=2, novel_rounds=2, attack_images=1, attack_steps=3)
    res = run_recipe(r, cfg, out_dir=tmp_path, show_progress=False, print_tables=False, checkpoint_every=0, threads=1,
                     data_dir=str(DATA))
    out = res.results
    assert set(out["final_accuracy"]) == {"pFedHN", "HyperFL", "FedAvg", "FedAvg+FT", "Local"}
    assert all(0 <= v <= 100 for v in out["final_accuracy"].values())
    assert out["bytes_per_round"]["HyperFL"] > out["bytes_per_round"]["FedAvg"] > 0 == out["bytes_per_round"]["Local"]
    assert (res.run_dir / "federated_accuracy.png").exists() and (res.run_dir / "federated_inversion.png").exists()
    # pFedHN: one client per Flower round, so twice the rounds, its curve in the others' rounds
    assert out["pfedhn_flower_rounds"] == 4 and set(out["curves"]["pFedHN"]) == set(out["curves"]["FedAvg"]) == {"1", "2"}
    nv = out["novel"]
    assert len(nv["train_loss_before"]) == len(nv["train_loss_after"]) == len(nv["embedding_moved"]) == 1
    assert nv["embedding_moved"][0] > 0
