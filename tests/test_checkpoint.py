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
