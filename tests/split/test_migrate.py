"""Moving a live split from k to k' by KV migration continues the generation exactly, for every family and pair."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from edgesplit.cost import ModelProfile
from edgesplit.split import DeviceHead, EdgeTail, Migration, move_split

ATOL = 1e-5


def _history(vocab: int, seed: int = 1, prompt_len: int = 10, steps: int = 3):
    """A left-padded 2-row prompt, the decode tokens fed after it, and two more tokens to continue with."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (2, prompt_len), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, : prompt_len // 3] = 0
    decode = [torch.randint(2, vocab, (2, 1), generator=gen) for _ in range(steps)]
    more = [torch.randint(2, vocab, (2, 1), generator=gen) for _ in range(2)]
    return ids.masked_fill(mask == 0, 0), mask, decode, more


def _step(head, tail, head_session, tail_session, ids, mask=None) -> torch.Tensor:
    payload = head(ids, mask, session=head_session)
    return tail(payload, mask, session=tail_session, last_only=True)[:, -1, :]


def _open(model, k, ids, mask, decode):
    """Both sides at split ``k`` after the prompt and the decode tokens."""
    head, tail = DeviceHead(model, k), EdgeTail(model, k)
    sessions = head.new_session(), tail.new_session()
    _step(head, tail, *sessions, ids, mask)
    for token in decode:
        _step(head, tail, *sessions, token)
    return head, tail, *sessions


def _moved_positions(profile: ModelProfile, index: int, past: int) -> int:
    """Positions a layer's cache holds: all of them, or the last ``window - 1`` in a sliding-window layer."""
    window = profile.layers[index].sliding_window
    return past if window is None else min(past, window - 1)


def test_move_continues_like_a_session_opened_at_the_new_split(tiny_model):
    ids, mask, decode, more = _history(tiny_model.adapter.vocab_size)
    num_layers = tiny_model.num_layers
    for k in range(num_layers + 1):
        for new_k in range(num_layers + 1):
            moved = move_split(tiny_model, k, *_open(tiny_model, k, ids, mask, decode)[2:], new_k)
            assert moved.head.k == moved.tail.k == new_k
            reference = _open(tiny_model, new_k, ids, mask, decode)
            for token in more:
                got = _step(moved.head, moved.tail, moved.head_session, moved.tail_session, token)
                want = _step(*reference, token)
                err = (got - want).abs().max().item()
                assert err <= ATOL, f"{tiny_model.name} {k}→{new_k}: max-abs logit error {err:.3g}"


def _switching_generate(model, ids, mask, schedule: dict[int, int], new_tokens: int):
    """Greedy decoding that moves the split to ``schedule[step]`` before each scheduled step."""
    head, tail = DeviceHead(model, schedule[0]), EdgeTail(model, schedule[0])
    sessions = head.new_session(), tail.new_session()
    step_ids, step_mask, out, migrations = ids, mask, [], []
    for step in range(new_tokens):
        if step in schedule and schedule[step] != head.k:
            moved = move_split(model, head.k, *sessions, schedule[step])
            head, tail, sessions = moved.head, moved.tail, (moved.head_session, moved.tail_session)
            migrations.append(moved.migration)
        next_ids = _step(head, tail, *sessions, step_ids, step_mask).argmax(dim=-1)
        out.append(next_ids)
        step_ids, step_mask = next_ids.unsqueeze(1), None
    return torch.stack(out, dim=1), migrations


def test_generation_that_switches_split_matches_unsplit_greedy(tiny_model):
    ids, mask, _, _ = _history(tiny_model.adapter.vocab_size, seed=2)
    L = tiny_model.num_layers
    schedule = {0: 2, 3: L, 5: 0, 8: 1, 10: 3, 13: 2}
    with torch.inference_mode():
        expected = tiny_model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16,
                                             min_new_tokens=16, do_sample=False)[:, ids.shape[1]:]
    got, migrations = _switching_generate(tiny_model, ids, mask, schedule, 16)
    assert torch.equal(got, expected), f"{tiny_model.name}: generation diverged after switching splits"
    assert [m.direction for m in migrations] == ["to_ue", "to_edge", "to_ue", "to_ue", "to_edge"]
    assert [m.past_tokens for m in migrations] == [ids.shape[1] + step - 1 for step in (3, 5, 8, 10, 13)]


@pytest.mark.parametrize("prompt_len,steps", [(4, 1), (10, 3)])  # under / over the tiny sliding window (8)
def test_moved_elements_equal_the_cost_formula(tiny_model, prompt_len, steps):
    ids, mask, decode, _ = _history(tiny_model.adapter.vocab_size, prompt_len=prompt_len, steps=steps)
    profile = ModelProfile.from_config(tiny_model.model.config)
    past, batch = prompt_len + steps, ids.shape[0]
    for k, new_k in [(3, 1), (1, 4), (4, 0), (0, 4), (2, 3), (2, 2)]:
        m = move_split(tiny_model, k, *_open(tiny_model, k, ids, mask, decode)[2:], new_k).migration
        assert m.layers == tuple(range(min(k, new_k), max(k, new_k))) and m.num_layers_moved == abs(k - new_k)
        assert (m.past_tokens, m.batch) == (past, batch)
        # 2 × kv_heads × head_dim × layers × tokens, per sequence; a sliding layer keeps only window - 1 positions.
        formula = sum(2 * profile.num_kv_heads * profile.head_dim * _moved_positions(profile, i, past)
                      for i in m.layers)
        assert m.kv_elements == batch * formula
        assert m.kv_elements == batch * sum(profile.layers[i].kv_elements_per_token
                                            * _moved_positions(profile, i, past) for i in m.layers)
        assert m.payload_bytes(16) == m.kv_elements * 2 and m.payload_bytes(4) == m.kv_elements / 2


def test_records_direction_and_same_split_is_a_no_op(tiny_llama):
    ids, mask, decode, _ = _history(tiny_llama.adapter.vocab_size)
    _, _, head_session, tail_session = _open(tiny_llama, 2, ids, mask, decode)
    same = move_split(tiny_llama, 2, head_session, tail_session, 2)
    assert same.head_session is head_session and same.tail_session is tail_session
    assert (same.migration.direction, same.migration.layers, same.migration.kv_elements) == ("none", (), 0)
    assert move_split(tiny_llama, 2, head_session, tail_session, 0).migration.direction == "to_edge"
    _, _, head_session, tail_session = _open(tiny_llama, 2, ids, mask, decode)
    assert move_split(tiny_llama.adapter, 2, head_session, tail_session, 4).migration.direction == "to_ue"


def test_session_that_has_not_started_moves_nothing(tiny_llama):
    head, tail = DeviceHead(tiny_llama, 1), EdgeTail(tiny_llama, 1)
    moved = move_split(tiny_llama, 1, head.new_session(), tail.new_session(), 3)
    assert (moved.migration.past_tokens, moved.migration.batch, moved.migration.kv_elements) == (0, 0, 0)
    ids, mask, _, _ = _history(tiny_llama.adapter.vocab_size)
    got = _step(moved.head, moved.tail, moved.head_session, moved.tail_session, ids, mask)
    head, tail = DeviceHead(tiny_llama, 3), EdgeTail(tiny_llama, 3)
    want = _step(head, tail, head.new_session(), tail.new_session(), ids, mask)
    assert (got - want).abs().max().item() <= ATOL


@pytest.mark.parametrize("new_k", [-1, 5, 2.0, True, None])
def test_bad_new_split_is_rejected(tiny_llama, new_k):
    ids, mask, decode, _ = _history(tiny_llama.adapter.vocab_size)
    sessions = _open(tiny_llama, 2, ids, mask, decode)[2:]
    with pytest.raises(ValueError, match=r"new split k' must be an integer in 0\.\.4"):
        move_split(tiny_llama, 2, *sessions, new_k)


def test_sessions_that_do_not_match_the_split_are_rejected(tiny_llama):
    ids, mask, decode, _ = _history(tiny_llama.adapter.vocab_size)
    head, tail, head_session, tail_session = _open(tiny_llama, 2, ids, mask, decode)
    with pytest.raises(ValueError, match="layer 2 holds 0 positions"):
        move_split(tiny_llama, 3, head_session, tail_session, 1)
    with pytest.raises(ValueError, match="split k must be an integer"):
        move_split(tiny_llama, 7, head_session, tail_session, 1)
    head(decode[0], session=head_session)  # the UE ran a step the edge never saw
    with pytest.raises(ValueError, match="different mask histories"):
        move_split(tiny_llama, 2, head_session, tail_session, 1)


class _ForeignLayer(DynamicLayer):
    """Stands for a cache layer with state beyond keys and values (quantised, offloaded ...)."""


def test_cache_layer_that_cannot_move_exactly_names_the_family(tiny_llama):
    from tests.conftest import make_tiny

    ids, mask, decode, _ = _history(tiny_llama.adapter.vocab_size)
    _, _, head_session, tail_session = _open(tiny_llama, 3, ids, mask, decode)
    foreign = _ForeignLayer()
    foreign.__dict__.update(head_session.cache.layers[2].__dict__)
    head_session.cache.layers[2] = foreign
    with pytest.raises(ValueError, match="cannot migrate the KV cache of 'llama' exactly: layer 2 is a _ForeignLayer"):
        move_split(tiny_llama, 3, head_session, tail_session, 1)
    move_split(tiny_llama, 3, head_session, tail_session, 4)  # layer 2 stays on the UE: nothing foreign moves

    mistral = make_tiny("mistral")
    _, _, head_session, tail_session = _open(mistral, 1, ids, mask, decode)
    tail_session.cache.layers[2].activate_past_recording()
    with pytest.raises(ValueError, match="'mistral' exactly: layer 2 is a DynamicSlidingWindowLayer recording"):
        move_split(mistral, 1, head_session, tail_session, 3)


def test_migration_record_validates_itself():
    with pytest.raises(ValueError, match="is 'to_edge', not 'to_ue'"):
        Migration(3, 1, "to_ue", (1, 2), 10, 1, 0)
    with pytest.raises(ValueError, match="range between the two splits"):
        Migration(3, 1, "to_edge", (1,), 10, 1, 0)
    with pytest.raises(ValueError, match="bits_per_element must be > 0"):
        Migration(1, 1, "none", (), 10, 1, 0).payload_bytes(0)


@pytest.mark.slow
def test_real_model_moves_exactly(real_model):
    tok = real_model.tokenizer
    ids = tok(["Wireless links fade when the"], return_tensors="pt").input_ids
    mask = torch.ones_like(ids)
    L = real_model.num_layers
    profile = ModelProfile.from_config(real_model.model.config)
    decode, more = [torch.tensor([[tok.encode(" rain")[0]]])], torch.tensor([[tok.encode(" falls")[0]]])
    for new_k in (0, L):  # both ends, both directions
        moved = move_split(real_model, L // 2, *_open(real_model, L // 2, ids, mask, decode)[2:], new_k)
        got = _step(moved.head, moved.tail, moved.head_session, moved.tail_session, more)
        want = _step(*_open(real_model, new_k, ids, mask, decode), more)
        assert (got - want).abs().max().item() <= ATOL, f"smollm2 {L // 2}→{new_k}"
        past = ids.shape[1] + len(decode)
        assert moved.migration.kv_elements == 2 * profile.num_kv_heads * profile.head_dim * (L // 2) * past
    with torch.inference_mode():
        expected = real_model.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6,
                                             do_sample=False, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
    got, migrations = _switching_generate(real_model, ids, mask, {0: L // 2, 2: 3, 3: L, 4: 0, 5: 20}, 6)
    assert torch.equal(got, expected), "smollm2: generation diverged after switching splits"
    assert len(migrations) == 4
