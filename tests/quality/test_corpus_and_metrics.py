"""Corpora load and are named; perplexity/KL/top-1 agree with a direct computation; the real model is stable."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgesplit.quality import evaluate_split, load_corpus, make_windows, tokenize_corpus


def test_default_corpus_exists_offline_and_is_named():
    corpus = load_corpus("default")
    assert "pydoc_data" in corpus.name
    assert len(corpus.text) > 100_000


def test_file_corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("hello wireless world\n" * 10, encoding="utf-8")
    corpus = load_corpus(str(path))
    assert corpus.name == "file:text.txt" and corpus.text.startswith("hello")


@pytest.mark.parametrize("spec", ["no-such-corpus", "/nonexistent/file.txt"])
def test_unknown_corpus_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="accepted"):
        load_corpus(spec)


def test_empty_and_binary_files_are_rejected(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        load_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(ValueError, match="UTF-8"):
        load_corpus(str(tmp_path / "bin.txt"))


def _direct_nll(model, ids, context, stride):
    """Reference: one plain forward of the unsplit model per window, summing NLL of the scored targets."""
    total, count = 0.0, 0
    for w in make_windows(ids.numel(), context, stride):
        logits = model.model(input_ids=ids[None, w.begin:w.end]).logits[0]
        logp = F.log_softmax(logits, dim=-1)
        for t in range(w.first_target, w.end):
            total -= logp[t - w.begin - 1, ids[t]].item()
            count += 1
    return total, count


@pytest.mark.parametrize("stride", [None, 24])
def test_ideal_link_matches_direct_perplexity(tiny_llama, stride):
    ids = torch.randint(2, 128, (150,), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        nll, count = _direct_nll(tiny_llama, ids, context=40, stride=stride)
    for k in (0, 2, tiny_llama.num_layers):
        result = evaluate_split(tiny_llama, ids, k, context=40, stride=stride, batch_size=3)
        assert result.scored_tokens == count
        assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)
        assert result.kl_nats == pytest.approx(0.0, abs=1e-6)
        assert result.top1_agreement == 1.0


def test_impaired_link_degrades_quality(tiny_llama):
    ids = torch.randint(2, 128, (120,), generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)

    def noisy(h):
        return h + 3.0 * h.std() * torch.randn(h.shape, generator=gen)

    result = evaluate_split(tiny_llama, ids, 2, noisy, context=40)
    assert result.kl_nats > 1e-3
    assert result.top1_agreement < 1.0
    assert result.clean_perplexity == pytest.approx(evaluate_split(tiny_llama, ids, 2, context=40).perplexity)
    # Nothing crosses the link at k = L, so the link cannot change anything there.
    assert evaluate_split(tiny_llama, ids, tiny_llama.num_layers, noisy, context=40).kl_nats == 0.0


@pytest.mark.slow
def test_real_model_perplexity_is_stable_and_split_invariant(real_model):
    ids = tokenize_corpus(load_corpus("default"), real_model.tokenizer, max_tokens=384)
    first = evaluate_split(real_model, ids, real_model.num_layers, context=128)
    again = evaluate_split(real_model, ids, real_model.num_layers, context=128)
    assert math.isfinite(first.perplexity) and 1.0 < first.perplexity < 200.0
    assert again.perplexity == first.perplexity
    for k in (0, 1, 15, 29):
        assert evaluate_split(real_model, ids, k, context=128).perplexity == pytest.approx(first.perplexity,
                                                                                          rel=1e-4)
