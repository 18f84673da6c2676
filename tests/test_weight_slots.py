"""One way to run the target with given weights: hooks, compile, torch.func, threads."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

import hyperdnn as hd


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def record_hooks(module: nn.Module) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    module.register_forward_pre_hook(lambda m, args: seen.append(("pre", m.weight)))
    module.register_forward_hook(lambda m, args, out: seen.append(("post", m.weight)))
    return seen


def test_hooks_see_the_generated_weights_on_the_static_path() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 5), outputs=hd.ChunkWise(16, 4))
    seen = record_hooks(model.target[2])
    model(torch.randn(6, 4), task=1)
    want = model.weights(task=1)["2.weight"]
    assert [k for k, _ in seen] == ["pre", "post"]
    for _, w in seen:
        torch.testing.assert_close(w, want)
    assert model.target[2].weight.numel() == 0  # emptied after the call


def test_hooks_see_the_generated_weights_on_the_per_sample_path() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.External(5), outputs=hd.ChunkWise(16, 4))
    seen = record_hooks(model.target[2])
    c = torch.randn(6, 5)
    model(torch.randn(6, 4), condition=c)
    want = model.weights(condition=c)["2.weight"]  # (6, 3, 8)
    assert [k for k, _ in seen] == ["pre", "post"]
    for _, w in seen:
        torch.testing.assert_close(w, want)
    assert model.target[2].weight.numel() == 0


def test_hooks_see_factored_weights_when_the_layer_uses_them_in_parts() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.External(5), outputs=hd.LowRank(rank=2))
    seen = record_hooks(model.target[2])
    c = torch.randn(6, 5)
    model(torch.randn(6, 4), condition=c)
    assert all(isinstance(w, hd.Factored) for _, w in seen)
    torch.testing.assert_close(seen[0][1].dense(), model.weights(condition=c)["2.weight"])


def test_hooks_run_once_for_a_module_on_the_vmap_fallback() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.weight

    target = nn.Sequential(nn.Linear(4, 3), Scale())
    model = hd.HyperDNN(target, inputs=hd.External(2))
    calls = []
    model.target[1].register_forward_hook(lambda m, a, o: calls.append(m.weight.shape))
    model(torch.randn(5, 4), condition=torch.randn(5, 2))
    assert calls == [torch.Size([5, 3])]


def test_the_slots_are_restored_after_an_exception() -> None:
    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    model = hd.HyperDNN(Fails(), inputs=hd.External(3))
    for cond in (torch.randn(3), torch.randn(2, 3)):
        with pytest.raises(RuntimeError, match="boom"):
            model(torch.randn(2, 4), condition=cond)
        assert model.target.fc.weight.numel() == 0
        assert "forward" not in model.target.fc.__dict__


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_equals_eager(backend: str) -> None:
    torch._dynamo.reset()
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 5), outputs=hd.ChunkWise(16, 4))
    compiled = torch.compile(model, backend=backend)
    x = torch.randn(6, 4)
    for task in (1, 2):
        y = compiled(x, task=task)
        torch.testing.assert_close(y, model(x, task=task), atol=1e-6, rtol=1e-5)
    y.sum().backward()
    assert all(p.grad is not None for p in model.hypernetwork.parameters() if p.requires_grad and p.numel())
    assert model.target[0].weight.numel() == 0


def test_torch_func_grad_and_vmap_over_a_call() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 5), outputs=hd.ChunkWise(16, 4))
    x = torch.randn(6, 4)
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = torch.func.grad(lambda p: torch.func.functional_call(model, p, (x,), {"task": 1}).square().sum())(params)
    model(x, task=1).square().sum().backward()
    for k, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[k], p.grad, msg=k)
    per_row = torch.func.vmap(lambda xi: model(xi.unsqueeze(0), task=1).squeeze(0))(x)
    torch.testing.assert_close(per_row, model(x, task=1))


def test_calls_from_two_threads_are_serialised_and_correct() -> None:
    class Slow(nn.Module):
        """Reads its weight, waits, reads it again: an unguarded swap in between would show."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            first = self.fc(x)
            time.sleep(0.02)
            return first + self.fc(x)

    model = hd.HyperDNN(Slow(), inputs=hd.TaskEmbedding(8, 4))
    x = torch.randn(3, 4)
    with torch.no_grad():
        want = {t: model(x, task=t) for t in range(8)}
    got: dict[int, torch.Tensor] = {}

    def work(task: int) -> None:
        with torch.no_grad():
            got[task] = model(x, task=task)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(8):
        torch.testing.assert_close(got[t], want[t])


def test_replacing_the_target_is_refused() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 5))
    with pytest.raises(hd.ConfigError, match="cannot be replaced"):
        model.target = nn.Linear(4, 3)


def test_a_keyword_of_no_input_is_refused_with_the_nearest_name() -> None:
    model = hd.HyperDNN(mlp(), inputs=hd.TaskEmbedding(3, 5))
    x = torch.randn(2, 4)
    with pytest.raises(hd.HDTypeError, match=r"'tsk' belongs to no input.*did you mean 'task'"):
        model(x, tsk=1)
    with pytest.raises(hd.HDTypeError, match=r"'samples' belongs to no input of this model \(its inputs take: task\)"):
        model(x, task=1, samples=4)


def test_target_keywords_still_reach_the_target() -> None:
    class WithFlag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, negate: bool = False):
            y = self.fc(x)
            return -y if negate else y

    model = hd.HyperDNN(WithFlag(), inputs=hd.TaskEmbedding(2, 3))
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x, task=0, negate=True), -model(x, task=0))
