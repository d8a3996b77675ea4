"""Head → tail equals the unsplit model, for every k and family (tiny) and for several k on the real model."""

from __future__ import annotations

import pytest
import torch

from edgesplit.split import DeviceHead, EdgeTail, positions_from_mask, split_generate

ATOL = 1e-4


def _padded_batch(vocab: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding of different lengths
    mask[2, :7] = 0
    return ids.masked_fill(mask == 0, 0), mask


def _reference_logits(model, ids, mask):
    # Positions as `generate` computes them (GPT-2/OPT forward would otherwise ignore left padding).
    return model.model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask, ids.shape[1])).logits


def test_every_split_matches_unsplit_logits(tiny_model):
    ids, mask = _padded_batch(tiny_model.adapter.vocab_size)
    with torch.inference_mode():
        reference = _reference_logits(tiny_model, ids, mask)
    for k in range(tiny_model.num_layers + 1):
        logits = EdgeTail(tiny_model, k)(DeviceHead(tiny_model, k)(ids, mask), mask)
        err = (logits - reference)[mask.bool()].abs().max().item()
        assert err <= ATOL, f"{tiny_model.name} k={k}: max-abs logit error {err:.3g}"


def test_every_split_generates_exactly_the_greedy_tokens(tiny_model):
    ids, mask = _padded_batch(tiny_model.adapter.vocab_size, seed=2)
    with torch.inference_mode():
        expected = tiny_model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=32,
                                             min_new_tokens=32, do_sample=False)[:, ids.shape[1]:]
    for k in range(tiny_model.num_layers + 1):
        got = split_generate(DeviceHead(tiny_model, k), EdgeTail(tiny_model, k), ids, mask, max_new_tokens=32)
        assert torch.equal(got, expected), f"{tiny_model.name} k={k}: split generation diverged"


def test_split_generation_respects_eos(tiny_llama):
    ids, mask = _padded_batch(tiny_llama.adapter.vocab_size, seed=3)
    free = split_generate(DeviceHead(tiny_llama, 2), EdgeTail(tiny_llama, 2), ids, mask, max_new_tokens=8)
    eos = int(free[0, 2])  # force row 0 to stop at step 3
    got = split_generate(DeviceHead(tiny_llama, 2), EdgeTail(tiny_llama, 2), ids, mask, max_new_tokens=8,
                         eos_token_id=eos, pad_token_id=0)
    assert int(got[0, 2]) == eos
    assert (got[0, 3:] == 0).all()


def test_sides_report_what_crosses_the_link(tiny_llama):
    L = tiny_llama.num_layers
    assert DeviceHead(tiny_llama, 0).sends == "token_ids"
    assert DeviceHead(tiny_llama, 1).sends == "hidden"
    assert DeviceHead(tiny_llama, L).sends == "nothing"
    assert EdgeTail(tiny_llama, L).runs_on_device and not EdgeTail(tiny_llama, L - 1).runs_on_device
    ids = torch.randint(2, 100, (1, 5))
    assert torch.equal(DeviceHead(tiny_llama, 0)(ids), ids)
    assert DeviceHead(tiny_llama, 2)(ids).shape == (1, 5, tiny_llama.hidden_size)


@pytest.mark.parametrize("k", [-1, 5, 2.0, True])
def test_out_of_range_split_is_rejected(tiny_llama, k):
    with pytest.raises(ValueError, match=r"0\.\.4"):
        DeviceHead(tiny_llama, k)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        EdgeTail(tiny_llama, k)


def test_tail_rejects_wrong_payload(tiny_llama):
    with pytest.raises(ValueError, match="hidden state"):
        EdgeTail(tiny_llama, 2)(torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="token ids"):
        EdgeTail(tiny_llama, 0)(torch.zeros(1, 3, 64))
    with pytest.raises(ValueError, match="attention_mask"):
        DeviceHead(tiny_llama, 2)(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 4))


def test_session_rejects_batch_change(tiny_llama):
    head = DeviceHead(tiny_llama, 2)
    session = head.new_session()
    head(torch.ones(2, 3, dtype=torch.long), session=session)
    with pytest.raises(ValueError, match="batch size changed"):
        head(torch.ones(1, 1, dtype=torch.long), session=session)


@pytest.mark.slow
def test_real_model_split_logits_match(real_model):
    ids = real_model.tokenizer(["The edge server runs the remaining layers of the model"],
                               return_tensors="pt").input_ids
    with torch.inference_mode():
        reference = real_model.model(input_ids=ids).logits
    L = real_model.num_layers
    for k in (0, 1, L // 2, L - 1, L):
        logits = EdgeTail(real_model, k)(DeviceHead(real_model, k)(ids))
        err = (logits - reference).abs().max().item()
        assert err <= ATOL, f"smollm2 k={k}: max-abs logit error {err:.3g}"


@pytest.mark.slow
def test_real_model_split_generation_matches_generate(real_model):
    tok = real_model.tokenizer
    tok.padding_side = "left"
    batch = tok(["Wireless links fade when", "The capital of France is"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        expected = real_model.model.generate(**batch, max_new_tokens=32, do_sample=False,
                                             pad_token_id=tok.pad_token_id)[:, batch.input_ids.shape[1]:]
    assert expected.shape[1] == 32  # at least one row runs the full length
    L = real_model.num_layers
    for k in (0, 1, L // 2, L - 1, L):
        got = split_generate(DeviceHead(real_model, k), EdgeTail(real_model, k), batch.input_ids,
                             batch.attention_mask, max_new_tokens=32, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        assert torch.equal(got, expected), f"smollm2 k={k}: split generation diverged"
