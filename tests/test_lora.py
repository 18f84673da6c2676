"""hyperdnn.methods.lora: generated LoRA on frozen HuggingFace models, PEFT both ways, offline.

Tiny models built here (a 2-layer BERT, a 2-layer Llama written to GGUF), so the
default suite stays fast; the references are PEFT itself, a hand-written
``W0 x + s B (A x)`` hook, and a per-sample loop.
"""

from __future__ import annotations

import copy
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a hub here

import numpy as np
import pytest
import torch

import hyperdnn as hd
from hyperdnn.errors import ConfigError, ShapeError
from hyperdnn.methods.lora import (
    DescriptionTruncated,
    HyperLoRA,
    LoraTargets,
    SentenceEncoder,
    find_sites,
    load_causal_lm,
    load_peft_adapter,
    lora_model,
)

transformers = pytest.importorskip("transformers")  # the [lora] extra is part of [test]
peft = pytest.importorskip("peft")

QKVD = LoraTargets(target_modules=("query", "key", "value", "dense"), r=2, lora_alpha=4.0)


def tiny_bert(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    return transformers.BertModel(cfg).eval()


def batch(n: int = 4, t: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, t), generator=g)
    mask = torch.ones(n, t, dtype=torch.long)
    mask[0, -2:] = 0
    return ids, mask


def randomize(model: hd.HyperDNN, seed: int = 3) -> None:
    """Moves the B heads off zero so adapters are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.hypernetwork.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def test_sites_follow_peft_matching_and_share_kinds_across_layers() -> None:
    base = tiny_bert()
    sites = find_sites(base, QKVD)
    # per layer: query, key, value, attention.output.dense, intermediate.dense, output.dense; plus pooler.dense
    assert len(sites) == 2 * 6 + 1 and sites[-1].module == "pooler.dense" and sites[-1].kind == "pooler.dense"
    assert {s.layer for s in sites} == {0, 1}
    assert len({s.kind for s in sites}) == 7
    assert sites[0].module == "encoder.layer.0.attention.self.query" and sites[0].kind == "encoder.layer.*.attention.self.query"
    regex = find_sites(base, LoraTargets(target_modules=r".*\.1\.attention\.self\.(query|value)"))
    assert [s.module for s in regex] == ["encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"]


def test_hypernetwork_size_does_not_grow_with_layers() -> None:
    def size(layers: int) -> int:
        torch.manual_seed(0)
        cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                      intermediate_size=32)
        model = lora_model(transformers.BertModel(cfg), QKVD, inputs=hd.TaskEmbedding(3, 8))
        return sum(p.numel() for p in model.hypernetwork.parameters())

    # only the layer-embedding table grows: layer_dim (8) numbers per layer
    assert size(4) - size(2) == 2 * 8


def test_zero_init_equals_the_pretrained_outputs_exactly() -> None:
    base = tiny_bert()
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    ids, mask = batch()
    with torch.no_grad():
        want = base(ids, attention_mask=mask).last_hidden_state
        static = model(ids, task=1, attention_mask=mask).last_hidden_state
        per_sample = model(ids, task=torch.tensor([0, 2, 1, 2]), attention_mask=mask).last_hidden_state
    assert torch.equal(static, want) and torch.equal(per_sample, want)
    # the base model is untouched and only the hypernetwork (and nothing of the base) trains
    assert all(not p.requires_grad for p in model.target.parameters())


def test_generated_lora_equals_a_hand_written_w0x_plus_sBAx() -> None:
    base = tiny_bert()
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    randomize(model)
    hl = HyperLoRA(model, base, QKVD)
    ids, mask = batch()
    with torch.no_grad():
        factors = hl.adapter(task=2)
        ref = copy.deepcopy(base)
        mods = dict(ref.named_modules())
        hooks = []
        for name, (a, b) in factors.items():
            hooks.append(mods[name].register_forward_hook(
                lambda mod, inp, out, a=a, b=b: out + QKVD.scale * (inp[0] @ a.t() @ b.t())))
        want = ref(ids, attention_mask=mask).last_hidden_state
        got = model(ids, task=2, attention_mask=mask).last_hidden_state
    assert not torch.allclose(want, base(ids, attention_mask=mask).last_hidden_state, atol=1e-3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_exported_adapter_reloads_in_peft_with_equal_outputs_and_merges(tmp_path) -> None:
    base = tiny_bert()
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    randomize(model)
    hl = HyperLoRA(model, base, QKVD)
    ids, mask = batch()
    path = hl.export(tmp_path / "task1", task=1)
    assert (path / "adapter_config.json").is_file() and (path / "adapter_model.safetensors").is_file()
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(path)).eval()
    merged = hl.merged(task=1)
    with torch.no_grad():
        ours = model(ids, task=1, attention_mask=mask).last_hidden_state
        theirs = reloaded(input_ids=ids, attention_mask=mask).last_hidden_state
        plain = merged(ids, attention_mask=mask).last_hidden_state
    assert not any("lora" in n for n, _ in merged.named_modules())
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    torch.testing.assert_close(plain, ours, rtol=0, atol=1e-5)
    # and back: the imported adapter is the generated one (reconstruction loss zero)
    adapter = load_peft_adapter(path)
    assert adapter.targets.r == 2 and adapter.targets.lora_alpha == 4.0
    loss, step = hl.reconstruction_loss(adapter, task=1)
    assert step.adapters == 13 and loss.item() < 1e-7
    assert hl.reconstruction_loss(adapter, task=0)[0].item() > 1e-4


def test_classifier_head_is_trained_and_exported_with_the_adapter(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, num_labels=3)
    base = transformers.BertForSequenceClassification(cfg).eval()
    targets = LoraTargets(target_modules=("query", "value"), r=2, lora_alpha=2.0, modules_to_save=("classifier",))
    model = lora_model(base, targets, inputs=hd.TaskEmbedding(2, 4))
    trainable = sorted(n for n, p in model.target.named_parameters() if p.requires_grad)
    assert trainable == ["classifier.bias", "classifier.weight"]
    randomize(model)
    with torch.no_grad():
        model.target.classifier.weight.add_(1.0)
    ids, mask = batch()
    path = HyperLoRA(model, base, targets).export(tmp_path / "cls", task=0)
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits,
                                   model(ids, task=0, attention_mask=mask).logits, rtol=0, atol=1e-5)


def test_per_sample_lora_equals_the_loop_forward_and_gradients() -> None:
    # float64: the gradients of a large loss differ by float32 rounding alone (~1e-3 relative)
    base = tiny_bert().double()
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    randomize(model)
    ids, mask = batch()
    tasks = torch.tensor([0, 2, 1, 2])
    params = [p for p in model.parameters() if p.requires_grad]
    res = model(ids, task=tasks, attention_mask=mask)
    out = torch.cat([res.last_hidden_state.flatten(1), res.pooler_output], 1)
    grads = torch.autograd.grad(out.square().sum(), params)
    loop = []
    for i in range(4):
        r = model(ids[i:i + 1], task=int(tasks[i]), attention_mask=mask[i:i + 1])
        loop.append(torch.cat([r.last_hidden_state.flatten(1), r.pooler_output], 1))
    loop = torch.cat(loop)
    loop_grads = torch.autograd.grad(loop.square().sum(), params)
    torch.testing.assert_close(out, loop, rtol=1e-10, atol=1e-10)
    for g, h in zip(grads, loop_grads):
        torch.testing.assert_close(g, h, rtol=1e-8, atol=1e-9)


def test_decomposed_heads_are_smaller_start_exact_and_export(tmp_path) -> None:
    base = tiny_bert()
    plain = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    dec = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8), decomposed=4)
    n_plain = sum(p.numel() for p in plain.hypernetwork.parameters())
    n_dec = sum(p.numel() for p in dec.hypernetwork.parameters())
    assert n_dec < n_plain
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(dec(ids, task=0, attention_mask=mask).last_hidden_state, base(ids, attention_mask=mask).last_hidden_state)
    randomize(dec)
    hl = HyperLoRA(dec, base, QKVD)
    a, b = hl.adapter(task=1)["encoder.layer.0.attention.self.query"]
    out = dec.hypernetwork.outputs
    i = [p.name for p in dec.spec.params].index("encoder.layer.0.attention.self.query.weight")
    # A = T_A kron s_A: columns in blocks of k are one template column times the kernel
    ratio = a.reshape(2, 4, 4) / out.scale_a[i].reshape(1, 1, 4)
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))
    path = hl.export(tmp_path / "dec", task=1)
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).last_hidden_state,
                                   dec(ids, task=1, attention_mask=mask).last_hidden_state, rtol=0, atol=1e-5)


def test_target_modules_matching_nothing_names_the_nearest_modules() -> None:
    base = tiny_bert()
    with pytest.raises(ConfigError, match=r"'quer' matches no module.*'query'"):
        find_sites(base, LoraTargets(target_modules=("quer", "value")))
    with pytest.raises(ConfigError, match="LayerNorm, only nn.Linear|only nn.Linear"):
        find_sites(base, LoraTargets(target_modules=("LayerNorm",)))
    with pytest.raises(ConfigError, match="r must be"):
        LoraTargets(r=0)
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    with pytest.raises(ShapeError, match="one condition at a time"):
        HyperLoRA(model, base, QKVD).export("unused", task=torch.tensor([0, 1]))


def _tiny_encoder(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "verse", "book", "law", "name", "which", "a", "of"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(vocab), model_max_length=8)
    return tiny_bert(seed=5), tok


def test_a_too_long_description_is_truncated_with_a_warning(tmp_path) -> None:
    model, tok = _tiny_encoder(tmp_path)
    enc = SentenceEncoder(model=model, tokenizer=tok)
    assert enc.max_length == 8 and enc.dim == 16
    long = "name which book of the law " * 4
    with pytest.warns(DescriptionTruncated, match="limit of 8 tokens"):
        v = enc([long, "the verse"])
    # the truncated description's vector is the one of its first 6 words (+ [CLS], [SEP])
    short = enc(" ".join(long.split()[:6]))
    torch.testing.assert_close(v[0], short)
    assert v.shape == (2, 16) and torch.allclose(v.norm(dim=-1), torch.ones(2))


def test_description_condition_gives_one_adapter_per_description(tmp_path) -> None:
    encoder_model, tok = _tiny_encoder(tmp_path)
    enc = SentenceEncoder(model=encoder_model, tokenizer=tok)
    base = tiny_bert()
    model = lora_model(base, QKVD, inputs=hd.External(dim=enc.dim, name="description"))
    randomize(model)
    d = enc(["name which book of the law", "the verse"])
    ids, mask = batch(2)
    with torch.no_grad():
        both = model(ids, description=d, attention_mask=mask).last_hidden_state
        first = model(ids[:1], description=d[0], attention_mask=mask[:1]).last_hidden_state
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)


def _write_tiny_llama_gguf(path):
    gguf = pytest.importorskip("gguf")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   rms_norm_eps=1e-5, tie_word_embeddings=False)
    ref = transformers.LlamaForCausalLM(cfg).eval()

    def permute(w, heads):  # llama.cpp's rotary layout for q and k (transformers undoes it on load)
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    parts = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for i in range(2):
        names.update({f"model.layers.{i}.{hf}.weight": f"blk.{i}.{gg}.weight" for hf, gg in parts.items()})
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(8)
    w.add_vocab_size(64)
    for k, v in ref.state_dict().items():
        a = v.detach().numpy().astype(np.float32)
        a = permute(a, 4) if "q_proj" in k else permute(a, 2) if "k_proj" in k else a
        w.add_tensor(names[k], a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


def test_gguf_llama_loads_and_takes_a_generated_lora(tmp_path) -> None:
    ref = _write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    lm, tok = load_causal_lm(tmp_path / "tiny.gguf", tokenizer=False)
    assert type(lm).__name__ == "LlamaForCausalLM" and tok is None
    ids = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(lm(ids).logits, ref(ids).logits, rtol=0, atol=1e-6)
    targets = LoraTargets(target_modules=("q_proj", "v_proj", "down_proj"), r=2, lora_alpha=4.0)
    model = lora_model(lm, targets, inputs=hd.TaskEmbedding(4, 8))
    with torch.no_grad():
        assert torch.equal(model(ids, task=torch.tensor([0, 3, 1])).logits, lm(ids).logits)
    randomize(model)
    path = HyperLoRA(model, lm, targets).export(tmp_path / "book", task=3)
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(lm), str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(ids, task=3).logits, rtol=0, atol=1e-5)


def test_training_by_the_task_loss_moves_toward_the_target() -> None:
    base = tiny_bert()
    model = lora_model(base, LoraTargets(target_modules=("query", "value"), r=2, lora_alpha=4.0),
                       inputs=hd.TaskEmbedding(2, 8))
    ids, mask = batch(8)
    target = torch.randn(8, 6, 16)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tasks = torch.tensor([0, 1] * 4)
    losses = []
    for _ in range(15):
        loss = (model(ids, task=tasks, attention_mask=mask).last_hidden_state - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_checkpoint_round_trip_without_storing_the_adapted_weights(tmp_path) -> None:
    base = tiny_bert()
    model = lora_model(base, QKVD, inputs=hd.TaskEmbedding(3, 8))
    randomize(model)
    hd.save(model, tmp_path / "ckpt")
    from safetensors import safe_open

    keys = []
    for f in (tmp_path / "ckpt").glob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            keys += list(fh.keys())
    # the adapted W0 come from the base model at load, not from the file (hd.save does store the
    # base's other, frozen tensors today: they are the target's own parameters)
    assert keys and not [k for k in keys if "base_" in k or k.endswith("attention.self.query.weight")]
    loaded = hd.load(tmp_path / "ckpt", target=base)
    ids, mask = batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, task=torch.tensor([2, 0, 1, 1]), attention_mask=mask).last_hidden_state,
                                   model(ids, task=torch.tensor([2, 0, 1, 1]), attention_mask=mask).last_hidden_state,
                                   rtol=0, atol=0)
