"""Save/load: bit-exact round trips; truncated, tampered or mismatched files are refused."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hyperdnn as hd
from hyperdnn.checkpoint import _config_hash


def target() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def model() -> hd.HyperDNN:
    torch.manual_seed(1)
    return hd.HyperDNN(target(), inputs=hd.Concat(hd.TaskEmbedding(3, 4), hd.External(2, encoding="cos-sin")),
                       outputs=hd.Additive(hd.ComponentWise(tile=(2, 2), embedding_dim=3), scale=0.5),
                       body=hd.RNN(hidden=8), generate=(nn.Conv2d, nn.Linear), freeze="1.weight")


def test_round_trip_is_bit_exact(tmp_path) -> None:
    m = model()
    m.train()
    m(torch.randn(8, 1, 6, 6), task=1, condition=torch.rand(2))  # move the BatchNorm statistics
    m.eval()
    hd.save(m, tmp_path)
    loaded = hd.load(tmp_path, target=target()).eval()
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x, c = torch.randn(2, 1, 6, 6), torch.rand(2)
    assert torch.equal(m(x, task=2, condition=c), loaded(x, task=2, condition=c))
    assert not loaded.target[1].weight.requires_grad  # frozen stays frozen


def test_data_encoder_needs_the_encoder_at_load(tmp_path) -> None:
    m = hd.HyperDNN(nn.Linear(3, 2), inputs=hd.DataEncoder(nn.Linear(3, 4), 4))
    hd.save(m, tmp_path)
    with pytest.raises(hd.ConfigError, match="pass encoder="):
        hd.load(tmp_path, target=nn.Linear(3, 2))
    loaded = hd.load(tmp_path, target=nn.Linear(3, 2), encoder=nn.Linear(3, 4))
    x = torch.randn(5, 3)
    assert torch.equal(m(x), loaded(x))


def test_truncated_file_is_refused(tmp_path) -> None:
    hd.save(model(), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(hd.CheckpointError, match="truncated or modified"):
        hd.load(tmp_path, target=target())


def test_tampered_file_is_refused(tmp_path) -> None:
    hd.save(model(), tmp_path)
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(hd.CheckpointError, match="does not match the sha256"):
        hd.load(tmp_path, target=target())


def test_corrupt_tensor_file_with_matching_hash_is_refused(tmp_path) -> None:
    import hashlib

    hd.save(model(), tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x00" * 16)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    cfg["config_sha256"] = _config_hash(cfg)  # a consistent forgery: the tensor file itself is unreadable
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hd.CheckpointError, match="cannot read"):
        hd.load(tmp_path, target=target())


def test_another_target_shape_is_refused(tmp_path) -> None:
    hd.save(model(), tmp_path)
    other = nn.Sequential(nn.Conv2d(1, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Flatten(), nn.Linear(80, 3))
    with pytest.raises(hd.CheckpointError, match=r"'0.weight' has shape \(5, 1, 3, 3\); the checkpoint was made for shape \(4, 1, 3, 3\)"):
        hd.load(tmp_path, target=other)
    with pytest.raises(hd.CheckpointError, match="has no parameter '4.weight'"):
        hd.load(tmp_path, target=nn.Sequential(nn.Conv2d(1, 4, 3)))


def test_bad_config_is_refused(tmp_path) -> None:
    with pytest.raises(hd.CheckpointError, match="no config.json"):
        hd.load(tmp_path, target=target())
    hd.save(model(), tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(hd.CheckpointError, match="not valid JSON"):
        hd.load(tmp_path, target=target())
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(hd.CheckpointError, match="not a hyperdnn checkpoint"):
        hd.load(tmp_path, target=target())


def test_edited_config_is_refused(tmp_path) -> None:
    hd.save(model(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["outputs"]["scale"] = 2.0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hd.CheckpointError, match="modified after saving"):
        hd.load(tmp_path, target=target())


@pytest.mark.parametrize("field,value,message", [
    ("generate", 5, "'generate' must be a non-empty list"),
    ("generate", [["0.weight"]], "'generate' must be a non-empty list"),
    ("freeze", "1.weight", "'freeze' must be a list"),
])
def test_malformed_config_fields_are_refused(tmp_path, field, value, message) -> None:
    hd.save(model(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[field] = value
    cfg["config_sha256"] = _config_hash(cfg)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hd.CheckpointError, match=message):
        hd.load(tmp_path, target=target())


def test_other_target_class_or_dtype_is_refused(tmp_path) -> None:
    class Other(nn.Sequential):
        pass

    hd.save(model(), tmp_path)
    t = target()
    with pytest.raises(hd.CheckpointError, match="made for a target of class 'Sequential'; got 'Other'"):
        hd.load(tmp_path, target=Other(*t))
    with pytest.raises(hd.CheckpointError, match="is torch.float32 in the checkpoint but torch.float64"):
        hd.load(tmp_path, target=target().double())


def test_no_pickle_in_the_load_path(tmp_path, monkeypatch) -> None:
    import pickle

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    class NoUnpickler:
        def __init__(self, *a, **k):
            raise AssertionError("pickle used")

    hd.save(model(), tmp_path)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    monkeypatch.setattr(torch, "load", refuse)
    hd.load(tmp_path, target=target())


def _fixture_cases():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "checkpoints_f77df5a.py"
    spec = importlib.util.spec_from_file_location("checkpoints_f77df5a", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_OLD = _fixture_cases()


@pytest.mark.parametrize("name", sorted(_OLD.CASES))
def test_checkpoints_written_at_f77df5a_still_load_and_give_the_same_outputs(name) -> None:
    from safetensors import safe_open

    make_target, needs_encoder, _, _ = _OLD.CASES[name]
    directory = _OLD.HERE / name
    model = hd.load(directory, target=make_target(), encoder=_OLD.encoder() if needs_encoder else None).eval()
    with safe_open(str(directory / "expected.safetensors"), framework="pt") as f:
        meta = f.metadata()
        saved = {k: f.get_tensor(k) for k in f.keys()}
    kwargs = {**json.loads(meta["call"]), **{k[3:]: v for k, v in saved.items() if k.startswith("kw.")}}
    torch.manual_seed(int(meta["seed"]))
    with torch.no_grad():
        y = model(saved["x"], **kwargs)
    # Not torch.equal: the attention kernels' summation order depends on memory alignment, which
    # moves the last bit between processes (2e-7 here) even for the code that wrote the file.
    torch.testing.assert_close(y, saved["y"], rtol=1e-5, atol=1e-6)
    assert y.shape == saved["y"].shape and saved["y"].abs().max() > 0.01


# ------------------------------------------------------------ files are checked before they are trusted


def forge(directory, edit) -> None:
    """Rewrites config.json through ``edit(cfg)`` with a valid hash: a consistent forgery."""
    cfg = json.loads((directory / "config.json").read_text())
    edit(cfg)
    cfg["config_sha256"] = _config_hash(cfg)
    (directory / "config.json").write_text(json.dumps(cfg))


@pytest.fixture
def never_built(monkeypatch):
    """``never_built()`` makes any later build of a HyperDNN fail the test (call it after saving)."""
    from hyperdnn import hyperdnn as module

    def refuse(*a, **k):
        raise AssertionError("the model was built")

    return lambda: monkeypatch.setattr(module.HyperDNN, "__init__", refuse)


@pytest.mark.parametrize("num_tasks,message", [
    (250_000_000, r"config.json: the configured parts make 'hypernetwork.inputs.parts.0.table.weight' of shape "
                  r"\(250000000, 4\); model.safetensors holds \(3, 4\)"),
    (2**40, r"config.json: the configured parts make 'hypernetwork.inputs.parts.0.table.weight' of shape "
            r"\(1099511627776, 4\); model.safetensors holds \(3, 4\)"),
    (2**62, r"config.json: the configured parts do not build for this target \(RuntimeError: Storage size calculation "
            r"overflowed with sizes=\[4611686018427387904, 4\]\)$"),
    (10**30, r"config.json: inputs.parts\[0\]: TaskEmbedding: num_tasks must be below 2\*\*63 \(got 10{30}\)"),
])
def test_a_forged_size_fails_before_anything_is_built(tmp_path, never_built, num_tasks, message) -> None:
    import time

    hd.save(model(), tmp_path)
    never_built()
    forge(tmp_path, lambda c: c["inputs"]["parts"][0].update(num_tasks=num_tasks))
    start = time.perf_counter()
    with pytest.raises(hd.CheckpointError, match=message):
        hd.load(tmp_path, target=target())
    assert time.perf_counter() - start < 10  # generous: the machine may be busy; never_built is the real check


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["inputs"]["parts"][0].update(num_tasks=2.5e8),
     r"config.json: inputs.parts\[0\]: TaskEmbedding: num_tasks must be a positive int \(got 250000000.0, a float\)"),
    (lambda c: c["inputs"]["parts"][0].update(init_std=float("nan")),
     r"config.json: inputs.parts\[0\]: TaskEmbedding: init_std must be a finite number >= 0 \(got nan\)"),
    (lambda c: c["body"].update(hidden=True), r"config.json: body: RNN: hidden must be a positive int \(got True, a bool\)"),
    (lambda c: c["body"].update(layers=10**6), r"config.json: body.layers is 1000000, more layers than the \d+ tensors"),
    (lambda c: c.update(body={"type": "MLP", "hidden": [4] * 10**5}), r"config.json: body.hidden is .*more layers than the"),
    (lambda c: c.update(inputs=[["type", "Noise"], ["dim", 3]]), r"config.json: 'inputs' must be an object"),
    (lambda c: c["outputs"].update(inner=[1, 2]), r"config.json: outputs.inner: expected an object"),
    (lambda c: c["outputs"].update(inner={"type": "os.system", "command": "touch pwned"}),
     r"config.json: outputs.inner: unknown outputs type 'os.system'"),
    (lambda c: c["outputs"]["inner"].update(tile=5), r"outputs.inner: ComponentWise: tile must be two positive ints"),
    (lambda c: c["outputs"].update(evil=1), r"outputs: Additive has no stored field 'evil'"),
    (lambda c: c.update(check_finite="yes"), r"config.json: 'check_finite' must be true or false"),
    (lambda c: c.update(init="uniform"), r"config.json: 'init' must be one of"),
    (lambda c: c.update(batch_dim=-1), r"config.json: 'batch_dim' must be a non-negative int"),
    (lambda c: c.update(tensors={"a": "b"}), r"config.json: 'tensors' must map names"),
    (lambda c: c["tensors"]["hypernetwork.outputs.theta0"][1].__setitem__(0, 10**9),
     r"config.json: 'tensors' says 'hypernetwork.outputs.theta0' is \['float32', \[1000000000\]\]"),
    (lambda c: c.update(target_parameters=5), r"'target_parameters' must be a list"),
])
def test_malformed_configs_are_checkpoint_errors_naming_file_and_field(tmp_path, never_built, edit, message) -> None:
    hd.save(model(), tmp_path)
    never_built()
    forge(tmp_path, edit)
    with pytest.raises(hd.CheckpointError, match=message):
        hd.load(tmp_path, target=target())


def test_deeply_nested_json_is_a_checkpoint_error(tmp_path, never_built) -> None:
    hd.save(model(), tmp_path)
    never_built()

    def nest(c):
        inner: dict = {"type": "GenerateOnce"}
        for _ in range(500):
            inner = {"type": "Additive", "inner": inner}
        c["outputs"] = inner

    forge(tmp_path, nest)
    with pytest.raises(hd.CheckpointError, match="config.json: outputs.inner.*nested more than"):
        hd.load(tmp_path, target=target())
    (tmp_path / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(hd.CheckpointError, match="nested too deeply"):
        hd.load(tmp_path, target=target())


def test_config_json_is_read_with_a_size_cap(tmp_path, never_built) -> None:
    import os

    hd.save(model(), tmp_path)
    never_built()
    cfg = tmp_path / "config.json"
    cfg.unlink()
    cfg.symlink_to("/dev/zero")
    with pytest.raises(hd.CheckpointError, match="config.json is not a regular file"):
        hd.load(tmp_path, target=target())
    cfg.unlink()
    with open(cfg, "wb") as f:  # a sparse 4 GB file: no disk used, and never read
        f.truncate(4 << 30)
    assert os.path.getsize(cfg) == 4 << 30
    with pytest.raises(hd.CheckpointError, match=r"config.json is 4,294,967,296 bytes, more than the 16,777,216"):
        hd.load(tmp_path, target=target())


def test_a_safetensors_header_that_lies_is_refused_before_allocation(tmp_path, never_built) -> None:
    import hashlib
    import struct

    hd.save(model(), tmp_path)
    never_built()
    path = tmp_path / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["hypernetwork.outputs.theta0"]["shape"] = [10**12]
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])

    def edit(c):
        c["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        c["tensors"]["hypernetwork.outputs.theta0"][1] = [10**12]

    forge(tmp_path, edit)
    with pytest.raises(hd.CheckpointError, match=r"cannot read .*model.safetensors \(tensor 'hypernetwork.outputs.theta0' of "
                                                 r"shape \(1000000000000,\) needs 4,000,000,000,000 bytes"):
        hd.load(tmp_path, target=target())


def test_type_names_in_files_are_looked_up_never_imported(tmp_path, monkeypatch) -> None:
    import builtins
    import importlib

    hd.save(model(), tmp_path)
    forge(tmp_path, lambda c: c["body"].update(type="subprocess.Popen"))

    def refuse(*a, **k):
        raise AssertionError("something named in the file was imported")

    real_import = builtins.__import__

    def guarded_import(name, *a, **k):
        if name.split(".")[0] in ("subprocess", "os.system"):
            refuse()
        return real_import(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", refuse)
    monkeypatch.setattr(builtins, "__import__", guarded_import)
    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    with pytest.raises(hd.CheckpointError, match=r"body: unknown body type 'subprocess.Popen'; expected one of \['Attention', 'MLP', 'RNN'"):
        hd.load(tmp_path, target=target())


def test_target_is_matched_by_module_and_class_and_structure(tmp_path) -> None:
    class Sequential(nn.Sequential):  # the same bare name as torch's, another class
        pass

    hd.save(model(), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["target_type"] == "torch.nn.modules.container:Sequential"
    with pytest.raises(hd.CheckpointError, match=r"made for a target of class 'Sequential'; got 'Sequential' \(expected "
                                                 r"torch.nn.modules.container.Sequential, got test_checkpoint.*<locals>.Sequential\)"):
        hd.load(tmp_path, target=Sequential(*target()))
    other = target()
    other[1] = nn.BatchNorm2d(4, affine=False)  # a frozen parameter the checkpoint holds is gone
    with pytest.raises(hd.CheckpointError, match="the target has no parameter '1.weight', which the checkpoint holds"):
        hd.load(tmp_path, target=other)
    bigger = target()
    bigger.append(nn.Linear(3, 3))  # one parameter more than the checkpoint's target
    with pytest.raises(hd.CheckpointError, match=r"the target has parameters \['5.weight', '5.bias'\]"):
        hd.load(tmp_path, target=bigger)


def test_a_run_directory_gets_the_run_loader_named(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoint-40").mkdir(parents=True)
    (run / "LATEST").write_text("checkpoint-40")
    (run / "config.json").write_text(json.dumps({"recipe": "split-mnist", "config": {}, "seed": 0, "device": "cpu"}))
    (run / "checkpoint-40" / "state.json").write_text("{}")
    (run / "checkpoint-40" / "tensors.safetensors").write_bytes(b"")
    with pytest.raises(hd.CheckpointError, match=r"is a run directory .*use hyperdnn.experiments.load_run\("):
        hd.load(run, target=target())
    with pytest.raises(hd.CheckpointError, match=r"is a checkpoint of a run .*use hyperdnn.experiments.load_run\("):
        hd.load(run / "checkpoint-40", target=target())
    (run / "LATEST").unlink()
    (run / "checkpoint-40" / "state.json").unlink()  # an interrupted run before its first checkpoint
    with pytest.raises(hd.CheckpointError, match=r"is a run directory .*use hyperdnn.experiments.load_run\("):
        hd.load(run, target=target())
    (run / "config.json").unlink()
    (run / "checkpoint-40" / "tensors.safetensors").unlink()
    (run / "checkpoint-40").rmdir()
    with pytest.raises(hd.CheckpointError, match=r"no config.json in"):
        hd.load(run, target=target())
    (run / "config.json").write_text(json.dumps({"name": "something else"}))
    with pytest.raises(hd.CheckpointError, match=r"is not a hyperdnn checkpoint \(format None\); hd.load reads a directory "
                                                 r"written by hd.save \(a run directory .* hyperdnn.experiments.load_run"):
        hd.load(run, target=target())


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    if path and path[0] not in ("sha256", "config_sha256"):
        yield path


def _fuzz(tmp_path, values) -> int:
    """Every field of a saved config.json replaced by every value (hashes made valid): loading either
    works or raises one of the library's errors, never a raw one. Returns the number of cases."""
    import copy

    hd.save(model(), tmp_path)
    original = json.loads((tmp_path / "config.json").read_text())
    cases = 0
    for path in list(_leaves(original)):
        for value in values:
            cfg = copy.deepcopy(original)
            node = cfg
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = value
            cfg["config_sha256"] = _config_hash(cfg)
            (tmp_path / "config.json").write_text(json.dumps(cfg))
            try:
                hd.load(tmp_path, target=target())
            except hd.HyperDNNError:
                pass
            cases += 1
    return cases


def test_any_field_replaced_by_a_bad_value_gives_a_library_error(tmp_path) -> None:
    assert _fuzz(tmp_path, [True, 10**20]) > 200


@pytest.mark.slow
def test_any_field_replaced_by_any_bad_value_gives_a_library_error(tmp_path) -> None:
    values = [True, False, -1, 0, 3, 2.5, 10**20, 2**70, 1e300, float("nan"), float("inf"), "x", "", [], {}, None,
              [1, 2], {"type": "MLP"}]
    assert _fuzz(tmp_path, values) > 2000


@pytest.mark.parametrize("edit,message", [
    (lambda h: h["hypernetwork.outputs.theta0"].update(dtype=["F32"]), "header entry 'hypernetwork.outputs.theta0' is malformed"),
    (lambda h: h["hypernetwork.outputs.theta0"].update(data_offsets=[8, 4]), "header entry 'hypernetwork.outputs.theta0' is malformed"),
    (lambda h: h["hypernetwork.outputs.theta0"].update(shape=[-1]), "header entry 'hypernetwork.outputs.theta0' is malformed"),
    (lambda h: h.__setitem__("extra", {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}), "overlap or leave a gap"),
    (lambda h: h.__setitem__("extra", [1]), "header entry 'extra' is malformed"),
])
def test_malformed_safetensors_headers_are_refused(tmp_path, edit, message) -> None:
    import hashlib
    import struct

    hd.save(model(), tmp_path)
    path = tmp_path / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
    forge(tmp_path, lambda c: c.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    with pytest.raises(hd.CheckpointError, match=message):
        hd.load(tmp_path, target=target())


def test_a_part_defined_by_a_method_loads_without_importing_the_method_first(tmp_path) -> None:
    """hd.load of a model whose input is hd.methods.Preference works in a fresh interpreter that
    imported only hyperdnn (the registry loads hyperdnn.methods, a fixed module, on an unknown type)."""
    import subprocess
    import sys

    import hyperdnn.methods as methods

    torch.manual_seed(0)
    model = hd.HyperDNN(nn.Linear(3, 2), inputs=methods.Preference(2))
    x, pref = torch.randn(4, 3), torch.tensor([0.25, 0.75])
    hd.save(model, tmp_path / "ckpt")
    from safetensors.torch import save_file

    save_file({"y": model(x, preference=pref).detach(), "x": x}, str(tmp_path / "expected.safetensors"))
    code = (
        "import sys, torch, hyperdnn as hd\n"
        "from torch import nn\n"
        "from safetensors.torch import load_file\n"
        "assert 'hyperdnn.methods' not in sys.modules\n"
        f"m = hd.load({str(tmp_path / 'ckpt')!r}, target=nn.Linear(3, 2))\n"
        f"e = load_file({str(tmp_path / 'expected.safetensors')!r})\n"
        "assert torch.equal(m(e['x'], preference=torch.tensor([0.25, 0.75])), e['y'])\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
