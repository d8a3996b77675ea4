"""Shared by the profile tests: a tiny random Llama on disk and ``edgesplit profile`` on a local Typer app."""

from __future__ import annotations

import pytest
import torch
import typer
from typer.testing import CliRunner

from edgesplit.profile.command import profile_command

app = typer.Typer(add_completion=False)


@app.callback()
def _root() -> None:
    """Test app with one subcommand, registered exactly as edgesplit.cli does."""


app.command("profile")(profile_command)
_runner = CliRunner()


def invoke_profile(model, out, *extra: str, **options: str):
    """Run ``edgesplit profile`` on ``model`` into ``out`` (awgn, 0/10 dB, k = 0, 1, 3, one seed, 64 tokens):
    ``options`` replace or add ``--flag value`` pairs, ``extra`` are appended as they are."""
    base = {"--model": str(model), "--channel": "awgn", "--snr-db": "0,10", "--splits": "0,1,3", "--seeds": "1",
            "--tokens": "64", "--context": "32", "--out": str(out)}
    args = [item for key, value in {**base, **options}.items() for item in (key, value)]
    return _runner.invoke(app, ["profile", *args, "--no-progress", *extra])


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A 3-layer random Llama saved with the built-in model's tokenizer, loadable by path like any HF model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from edgesplit.models import builtin_dir

    try:
        tokenizer = AutoTokenizer.from_pretrained(builtin_dir("smollm2-135m"))
    except (FileNotFoundError, KeyError) as err:
        pytest.skip(f"built-in tokenizer unavailable: {err}")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
