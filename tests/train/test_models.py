"""GPT-2 and LLaMA-3: shapes, init, causality, RoPE/GQA, tensor-parallel sharding, and parity with transformers."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lrkit.train.models import GPT2, GPT2_PRESETS, LLAMA3_PRESETS, GPT2Config, Llama3, Llama3Config, build_model
from lrkit.train.models.llama3 import apply_rope, repeat_kv, rope_inv_freq

MODELS = ["gpt2", "llama3"]


def _build(name: str, seed: int = 0, **overrides: object) -> GPT2 | Llama3:
    torch.manual_seed(seed)
    return build_model(name, "tiny", **overrides)


def _tokens(B: int = 2, T: int = 32, vocab: int = 256, seed: int = 123) -> torch.Tensor:
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- shapes, init, loss


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_and_initial_loss_is_uniform_over_the_byte_vocab(name: str) -> None:
    model = _build(name)
    idx, targets = _tokens(4, 64), _tokens(4, 64, seed=7)
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 64, 256)
    assert loss is not None and loss.shape == ()
    # Small init => near-uniform predictions => cross-entropy ~ ln(vocab).
    assert loss.item() == pytest.approx(math.log(256), abs=0.05)
    assert loss.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1)).item())
    logits_only, no_loss = model(idx)
    assert no_loss is None
    torch.testing.assert_close(logits_only, logits)


@pytest.mark.parametrize("name", MODELS)
def test_init_is_deterministic_given_the_seed(name: str) -> None:
    a, b, c = _build(name, seed=0).state_dict(), _build(name, seed=0).state_dict(), _build(name, seed=1).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[key], c[key]) for key in a)


@pytest.mark.parametrize(
    ("name", "residual_suffixes"),
    [("gpt2", ("c_proj.weight",)), ("llama3", ("attention.wo.weight", "feed_forward.w2.weight"))],
)
def test_residual_projections_are_scaled_down_with_depth(name: str, residual_suffixes: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, "small")
    n_layer = model.config.n_layer
    for param_name, param in model.named_parameters():
        if param.dim() < 2:
            continue
        expected = 0.02 / math.sqrt(2 * n_layer) if param_name.endswith(residual_suffixes) else 0.02
        assert param.std().item() == pytest.approx(expected, rel=0.05), param_name


def test_gpt2_ties_input_and_output_embeddings_and_llama3_does_not() -> None:
    gpt2, llama = _build("gpt2"), _build("llama3")
    assert isinstance(gpt2, GPT2) and isinstance(llama, Llama3)
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert llama.output.weight.data_ptr() != llama.tok_embeddings.weight.data_ptr()


@pytest.mark.parametrize("name", MODELS)
def test_attention_is_causal(name: str) -> None:
    model = _build(name).eval()
    idx = _tokens(1, 48)
    changed = idx.clone()
    changed[0, 30] = (changed[0, 30] + 1) % 256
    with torch.no_grad():
        before, _ = model(idx)
        after, _ = model(changed)
    torch.testing.assert_close(after[:, :30], before[:, :30], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 30:], before[:, 30:], atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_a_few_adamw_steps_on_one_batch_reduce_the_loss(name: str) -> None:
    model = _build(name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx, targets = _tokens(4, 64), _tokens(4, 64, seed=9)
    losses = []
    for _ in range(15):
        _, loss = model(idx, targets)
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", MODELS)
def test_sequence_longer_than_block_size_is_rejected(name: str) -> None:
    model = _build(name, block_size=16)
    with pytest.raises(ValueError, match="block_size=16"):
        model(_tokens(1, 17))


# ----------------------------------------------------------------------------- RoPE and GQA


def _meta_reference_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Meta's llama3 ``apply_rotary_emb``: consecutive pairs as complex numbers times ``e^{i t f}``."""
    T, head_dim = x.shape[1], x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))
    freqs_cis = torch.polar(torch.ones(T, head_dim // 2), torch.outer(torch.arange(T).float(), freqs))
    x_complex = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(x_complex * freqs_cis[None, :, None, :]).flatten(3).type_as(x)


def _cos_sin(T: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    angles = torch.outer(torch.arange(T, dtype=torch.float32), rope_inv_freq(head_dim, theta))
    return angles.cos(), angles.sin()


def test_rope_matches_metas_complex_formulation() -> None:
    x = torch.randn(2, 40, 3, 16)
    cos, sin = _cos_sin(40, 16, 500000.0)
    torch.testing.assert_close(apply_rope(x, cos, sin), _meta_reference_rope(x, 500000.0))


def test_rope_is_a_rotation_that_makes_attention_scores_depend_on_relative_position_only() -> None:
    head_dim, T = 32, 64
    cos, sin = _cos_sin(T, head_dim, 10000.0)
    q, k = torch.randn(head_dim), torch.randn(head_dim)
    # Place the same q and k at every position.
    q_rot = apply_rope(q.expand(1, T, 1, head_dim), cos, sin)[0, :, 0]
    k_rot = apply_rope(k.expand(1, T, 1, head_dim), cos, sin)[0, :, 0]
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm().expand(T))
    pairs = q_rot.view(T, -1, 2).norm(dim=-1)
    torch.testing.assert_close(pairs, q.view(-1, 2).norm(dim=-1).expand(T, -1))
    scores = q_rot @ k_rot.T  # scores[m, n] = <R_m q, R_n k>
    for offset in (0, 3, 17):
        diagonal = torch.diagonal(scores, offset=-offset)  # all pairs with m - n = offset
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, -3)[0], torch.diagonal(scores, -17)[0])


def test_rope_scaling_keeps_high_frequencies_and_divides_low_ones() -> None:
    plain = rope_inv_freq(64, 500000.0)
    scaled = rope_inv_freq(64, 500000.0, scaling_factor=32.0)
    wavelength = 2 * math.pi / plain
    short, long = wavelength < 8192 / 4, wavelength > 8192 / 1
    assert short.any() and long.any()
    torch.testing.assert_close(scaled[short], plain[short])
    torch.testing.assert_close(scaled[long], plain[long] / 32)
    middle = ~short & ~long
    assert torch.all(scaled[middle] < plain[middle]) and torch.all(scaled[middle] > plain[middle] / 32)


def test_repeat_kv_matches_repeat_interleave() -> None:
    kv = torch.randn(2, 3, 5, 8)
    torch.testing.assert_close(repeat_kv(kv, 4), kv.repeat_interleave(4, dim=1), rtol=0, atol=0)
    assert repeat_kv(kv, 1) is kv


def test_grouped_query_attention_equals_multi_head_attention_with_duplicated_kv_heads() -> None:
    gqa = _build("llama3")  # 4 query heads, 2 kv heads
    mha = _build("llama3", n_kv_head=4)
    state = gqa.state_dict()
    head_dim = gqa.config.head_dim
    for key, value in state.items():
        if key.endswith(("attention.wk.weight", "attention.wv.weight")):
            # kv head j serves query heads 2j and 2j+1.
            state[key] = value.view(2, head_dim, -1).repeat_interleave(2, dim=0).reshape(4 * head_dim, -1)
    mha.load_state_dict(state)
    idx = _tokens(2, 40)
    torch.testing.assert_close(mha(idx)[0], gqa(idx)[0])


# ----------------------------------------------------------------------------- tensor-parallel friendliness


def _column_shard(linear: torch.nn.Linear, part: slice) -> torch.nn.Linear:
    """ColwiseParallel's local module: the output rows in ``part`` (and their bias)."""
    shard = torch.nn.Linear(linear.in_features, part.stop - part.start, bias=linear.bias is not None)
    shard.weight.data = linear.weight.data[part].clone()
    if linear.bias is not None:
        shard.bias.data = linear.bias.data[part].clone()
    return shard


def _row_shard(linear: torch.nn.Linear, part: slice) -> torch.nn.Linear:
    """RowwiseParallel's local module: the input columns in ``part``; the bias is added once after the all-reduce."""
    shard = torch.nn.Linear(part.stop - part.start, linear.out_features, bias=False)
    shard.weight.data = linear.weight.data[:, part].clone()
    return shard


ATTENTION_PROJECTIONS = {"gpt2": ("c_q", "c_k", "c_v", "c_proj"), "llama3": ("wq", "wk", "wv", "wo")}


@pytest.mark.parametrize("name", MODELS)
def test_tensor_parallel_attention_shards_sum_to_the_full_attention(name: str) -> None:
    """Colwise q/k/v and rowwise output projection with tp=2, written out by hand: each rank runs the unchanged
    attention module on its half of the heads (it finds its head count from the shard widths), and the
    all-reduce of the partial outputs plus the output bias gives the unsharded result."""
    model = _build(name, bias=True) if name == "gpt2" else _build(name)
    _randomize(model)
    x = torch.randn(2, 24, 128)
    extra_args: tuple[torch.Tensor, ...] = ()
    if isinstance(model, GPT2):
        attn = model.get_submodule("transformer.h.0.attn")
    else:
        attn, extra_args = model.get_submodule("layers.0.attention"), model.rope_cos_sin(24, x.device)
    q_name, k_name, v_name, o_name = ATTENTION_PROJECTIONS[name]
    tp = 2
    q_width = getattr(attn, q_name).out_features // tp
    kv_width = getattr(attn, k_name).out_features // tp  # llama3: 2 kv heads -> 1 per rank
    total = torch.zeros(2, 24, 128)
    for rank in range(tp):
        q_part = slice(rank * q_width, (rank + 1) * q_width)
        kv_part = slice(rank * kv_width, (rank + 1) * kv_width)
        shard = copy.deepcopy(attn)
        setattr(shard, q_name, _column_shard(getattr(attn, q_name), q_part))
        setattr(shard, k_name, _column_shard(getattr(attn, k_name), kv_part))
        setattr(shard, v_name, _column_shard(getattr(attn, v_name), kv_part))
        setattr(shard, o_name, _row_shard(getattr(attn, o_name), q_part))
        total += shard(x, *extra_args)
    out_bias = getattr(attn, o_name).bias
    if out_bias is not None:
        total += out_bias
    torch.testing.assert_close(total, attn(x, *extra_args), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- parity with transformers


def _randomize(model: torch.nn.Module) -> None:
    """Larger weights than the init, and non-trivial biases and norm gains, so that any mis-mapped parameter or
    wrong activation shows in the logits well above float32 rounding."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1 and torch.all(param == 1):  # norm gains
                param.add_(torch.randn_like(param) * 0.2)
            else:
                param.normal_(0.0, 0.1)


def _hf_gpt2_from(model: GPT2, activation: str) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = model.config
    hf_config = transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function=activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="eager",
    )
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = model.state_dict()
    state = {}
    for key in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
        state[f"transformer.{key}"] = ours[f"transformer.{key}"]
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            state[p + f"{ln}.weight"], state[p + f"{ln}.bias"] = ours[p + f"{ln}.weight"], ours[p + f"{ln}.bias"]
        # transformers' GPT-2 uses Conv1D (weight is (in, out)) and one fused c_attn.
        state[p + "attn.c_attn.weight"] = torch.cat([ours[p + f"attn.c_{n}.weight"] for n in "qkv"]).T
        state[p + "attn.c_attn.bias"] = torch.cat([ours[p + f"attn.c_{n}.bias"] for n in "qkv"])
        for name in ("attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            state[p + f"{name}.weight"] = ours[p + f"{name}.weight"].T
            state[p + f"{name}.bias"] = ours[p + f"{name}.bias"]
    state["lm_head.weight"] = ours["lm_head.weight"]
    hf.load_state_dict(state)
    return hf


@pytest.mark.parametrize(("gelu_approximate", "hf_activation"), [("tanh", "gelu_new"), ("none", "gelu")])
def test_gpt2_logits_match_transformers(gelu_approximate: str, hf_activation: str) -> None:
    model = _build("gpt2", bias=True, gelu_approximate=gelu_approximate).eval()
    assert isinstance(model, GPT2)
    _randomize(model)
    hf = _hf_gpt2_from(model, hf_activation)
    idx = _tokens(2, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


def _meta_to_hf_qk(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    # transformers' LLaMA rotates the two halves of each head, Meta's consecutive pairs: this is the permutation
    # of transformers' convert_llama_weights_to_hf.py.
    out_dim, in_dim = weight.shape
    return weight.view(n_heads, out_dim // n_heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


@pytest.mark.parametrize("rope_scaling_factor", [None, 32.0])
def test_llama3_logits_match_transformers(rope_scaling_factor: float | None) -> None:
    transformers = pytest.importorskip("transformers")
    model = _build("llama3", rope_scaling_factor=rope_scaling_factor).eval()
    assert isinstance(model, Llama3)
    _randomize(model)
    cfg = model.config
    rope: dict[str, object] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if rope_scaling_factor is not None:
        rope = {
            "rope_type": "llama3",
            "rope_theta": cfg.rope_theta,
            "factor": rope_scaling_factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    hf_config = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters=rope,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="eager",
    )
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    ours = model.state_dict()
    state = {
        "model.embed_tokens.weight": ours["tok_embeddings.weight"],
        "model.norm.weight": ours["norm.weight"],
        "lm_head.weight": ours["output.weight"],
    }
    for i in range(cfg.n_layer):
        o, h = f"layers.{i}.", f"model.layers.{i}."
        state[h + "self_attn.q_proj.weight"] = _meta_to_hf_qk(ours[o + "attention.wq.weight"], cfg.n_head)
        state[h + "self_attn.k_proj.weight"] = _meta_to_hf_qk(ours[o + "attention.wk.weight"], cfg.n_kv_head)
        state[h + "self_attn.v_proj.weight"] = ours[o + "attention.wv.weight"]
        state[h + "self_attn.o_proj.weight"] = ours[o + "attention.wo.weight"]
        state[h + "mlp.gate_proj.weight"] = ours[o + "feed_forward.w1.weight"]
        state[h + "mlp.up_proj.weight"] = ours[o + "feed_forward.w3.weight"]
        state[h + "mlp.down_proj.weight"] = ours[o + "feed_forward.w2.weight"]
        state[h + "input_layernorm.weight"] = ours[o + "attention_norm.weight"]
        state[h + "post_attention_layernorm.weight"] = ours[o + "ffn_norm.weight"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in key for key in missing)
    idx = _tokens(2, 200)
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_full_size_presets_have_the_published_parameter_counts() -> None:
    with torch.device("meta"):
        # GPT-2 small with its real vocabulary and biases: the published 124,439,808 parameters.
        gpt2 = build_model("gpt2", "124M", vocab_size=50257, bias=True)
        llama = build_model("llama3", "1B")
    assert gpt2.num_params(non_embedding=False) == 124_439_808
    # LLaMA-3.2 1B has 1,235,814,400 parameters with tied embeddings; untied adds one 128256 x 2048 matrix.
    assert llama.num_params(non_embedding=False) == 1_235_814_400 + 128256 * 2048


# ----------------------------------------------------------------------------- build_model and configs


def test_build_model_applies_overrides_and_exposes_the_config() -> None:
    model = build_model("llama3", "tiny", block_size=64, n_layer=2)
    assert isinstance(model.config, Llama3Config)
    assert (model.config.block_size, model.config.n_layer) == (64, 2)
    assert model.config == dataclasses.replace(LLAMA3_PRESETS["tiny"], block_size=64, n_layer=2)
    assert build_model("gpt2", "small").config == GPT2_PRESETS["small"]


def test_build_model_rejects_unknown_names_presets_and_fields() -> None:
    with pytest.raises(ValueError, match=r"name must be one of \['gpt2', 'llama3'\], got name='bert'"):
        build_model("bert", "tiny")
    with pytest.raises(ValueError, match=r"preset for gpt2 must be one of \['tiny', 'small', '124M'\]"):
        build_model("gpt2", "1B")
    with pytest.raises(ValueError, match=r"unknown llama3 config field\(s\) \['n_kv_heads'\]"):
        build_model("llama3", "tiny", n_kv_heads=2)


def test_configs_validate_their_shapes() -> None:
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head, got n_embd=100, n_head=3"):
        GPT2Config(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="n_head must be divisible by n_kv_head, got n_head=4, n_kv_head=3"):
        Llama3Config(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="n_layer must be a positive int, got n_layer=0"):
        GPT2Config(n_layer=0)
    with pytest.raises(ValueError, match="gelu_approximate must be 'none' or 'tanh'"):
        GPT2Config(gelu_approximate="erf")
