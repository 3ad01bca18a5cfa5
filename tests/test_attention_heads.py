"""``--delight-attention-heads``: the attention split into heads (off the paper,
which has one). The split keeps every parameter, equals a naive per-head
computation, and beam-searches through fairseq. Incremental decoding with heads
is tested in test_decoding.py, the lean engine's in test_engine.py ("heads")."""

import math

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

from delight_fairseq.attention import SingleHeadAttention
from delight_fairseq.config import DeLighTConfig
from delight_fairseq.validation import resolve

from helpers import DROPOUT_OFF, TINY_SHAPE, build, make_dictionary, n_params


def naive(att, query, key, key_padding_mask, attn_mask):
    """The attention one sample and one head at a time, from its weights:
    softmax(q_h k_h^T / sqrt(d_h) + mask) v_h, heads side by side, then out_proj."""
    if hasattr(att, "qkv_proj"):
        q, k, v = att.qkv_proj(query).chunk(3, dim=-1)
    else:
        q = att.q_proj(query)
        k, v = att.kv_proj(key).chunk(2, dim=-1)
    heads, width = att.heads, q.size(-1) // att.heads
    out = torch.zeros_like(q)
    for b in range(q.size(1)):
        for h in range(heads):
            cols = slice(h * width, (h + 1) * width)
            scores = q[:, b, cols] @ k[:, b, cols].T / math.sqrt(width)
            if attn_mask is not None:
                scores = scores + attn_mask
            if key_padding_mask is not None:
                scores[:, key_padding_mask[b]] = float("-inf")
            out[:, b, cols] = torch.softmax(scores, dim=-1) @ v[:, b, cols]
    return att.out_proj(out)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_self_attention_equals_the_per_head_computation(heads):
    torch.manual_seed(0)
    att = SingleHeadAttention(16, 16, 24, heads=heads).double().eval()
    x = torch.randn(5, 3, 16, dtype=torch.float64)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, 3:] = True
    causal = torch.triu(torch.full((5, 5), float("-inf"), dtype=torch.float64), 1)
    out, weights = att(x, key_padding_mask=padding, attn_mask=causal, need_weights=True)
    torch.testing.assert_close(out, naive(att, x, None, padding, causal))
    # the weights come back averaged over the heads: each row still sums to 1
    assert weights.shape == (3, 5, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5, dtype=torch.float64))


@pytest.mark.parametrize("heads", [2, 8])
def test_encoder_decoder_attention_equals_the_per_head_computation(heads):
    torch.manual_seed(1)
    att = SingleHeadAttention(24, 16, 24, key_dim=24, self_attention=False, heads=heads)
    att = att.double().eval()
    query = torch.randn(4, 2, 24, dtype=torch.float64)
    memory = torch.randn(6, 2, 24, dtype=torch.float64)
    padding = torch.tensor([[True, False, False, False, False, False]]).repeat(2, 1)
    out, _ = att(query, memory, key_padding_mask=padding)
    torch.testing.assert_close(out, naive(att, query, memory, padding, None))


def test_heads_keep_every_parameter_and_one_head_is_the_paper():
    torch.manual_seed(0)
    one = build("delight", src_vocab=50, **TINY_SHAPE)
    torch.manual_seed(0)
    four = build("delight", src_vocab=50, delight_attention_heads=4, **TINY_SHAPE)
    assert n_params(four) == n_params(one)
    assert {k: v.shape for k, v in four.state_dict().items()} == {
        k: v.shape for k, v in one.state_dict().items()
    }
    assert DeLighTConfig().delight_attention_heads == 1
    # scores are scaled by the head's width
    assert four.decoder.layers[0].self_attn.scaling == (16 // 4) ** -0.5
    assert one.decoder.layers[0].self_attn.scaling == 16**-0.5


@pytest.mark.parametrize("heads", [0, 3])
def test_a_head_count_that_does_not_split_d_m_half_names_the_flag(heads):
    cfg = DeLighTConfig(delight_emb_out_dim=64, delight_attention_heads=heads)
    with pytest.raises(ValueError, match=r"--delight-attention-heads.*\[1, 2, 4, 8\]"):
        resolve(cfg)


def test_fairseq_beam_search_decodes_a_model_with_heads():
    torch.manual_seed(0)
    model = build(
        "delight", src_vocab=40, delight_attention_heads=2, **TINY_SHAPE, **DROPOUT_OFF
    )
    model.eval()
    d = make_dictionary(40)
    src = torch.randint(4, 40, (3, 6))
    src[0, :2] = d.pad()  # left-padded, as fairseq batches
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.tensor([4, 6, 6])}}
    hypos = SequenceGenerator([model], d, beam_size=3, max_len_b=8).generate(
        [model], sample
    )
    assert len(hypos) == 3 and all(len(h) == 3 for h in hypos)
    for sentence in hypos:
        for hypo in sentence:
            assert hypo["tokens"][-1] == d.eos() and len(hypo["tokens"]) <= 9


def test_heads_script_as_the_eager_module():
    torch.manual_seed(2)
    att = SingleHeadAttention(16, 16, 24, heads=4).eval()
    x = torch.randn(5, 2, 16)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    scripted = torch.jit.script(att)
    torch.testing.assert_close(
        scripted(x, key_padding_mask=padding)[0], att(x, key_padding_mask=padding)[0]
    )
