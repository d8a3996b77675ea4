"""The edge's tail (decoder layers ``k..L-1``, final norm, LM head) as an out-of-tree vLLM model.

vLLM builds a model's decoder layers with ``make_layers``, which asks ``get_pp_indices`` which layers this
pipeline stage holds and puts a ``PPMissingLayer`` in the others; the weight loader skips their weights and the KV
cache is allocated only for the attention layers that exist. A tail is therefore the native vLLM class built while
``get_pp_indices`` answers ``(k, L)``: the same kernels, paged KV cache and weight loading as the full model, no
copied forward. It runs over ``prompt_embeds`` — the UE's hidden state after layer ``k`` enters layer ``k`` as the
residual stream, exactly as in transformers (tested token for token against :class:`~edgesplit.split.EdgeTail`).

A model directory is served as a tail through ``hf_overrides``::

    {"architectures": ["EdgesplitTailLlamaForCausalLM"], "edgesplit_split_k": 15}

The architectures are registered with vLLM's ``ModelRegistry`` by :func:`register`, which the ``vllm.general_plugins``
entry point (``pyproject.toml``) calls in every vLLM process; :class:`~serve_deployments.vllm_engine.VllmEdgeEngine`
also calls it before it builds an engine. Only this module imports vLLM's model code (it needs the vLLM venv).
"""

from __future__ import annotations

import contextlib
import importlib

TAIL_PREFIX = "EdgesplitTail"
"""A tail's architecture name is this prefix + the base architecture (``EdgesplitTailLlamaForCausalLM``)."""
SPLIT_KEY = "edgesplit_split_k"
"""The ``hf_overrides`` key (a config attribute) naming the first layer the tail runs."""
BASES = {"LlamaForCausalLM": "vllm.model_executor.models.llama"}
"""Base architectures with a tail: their vLLM class builds layers with ``make_layers`` and takes ``inputs_embeds``
as the residual stream of its first layer (other such classes can be added here; only Llama is tested)."""


def tail_architecture(base: str) -> str:
    """The registered name of the tail of ``base`` (a ``config.architectures`` entry); ValueError if unsupported."""
    if base not in BASES:
        raise ValueError(f"the vLLM edge engine has no tail for architecture {base!r}; supported: {', '.join(BASES)}")
    return TAIL_PREFIX + base


@contextlib.contextmanager
def _layers_from(k: int):
    """While open, ``make_layers`` builds layers ``k..L-1`` only (a one-stage stand-in for pipeline parallelism)."""
    import vllm.distributed.utils as dist_utils

    native = dist_utils.get_pp_indices
    dist_utils.get_pp_indices = lambda num_layers, rank, world: (k, num_layers)
    try:
        yield
    finally:
        dist_utils.get_pp_indices = native


def _tail_class(base: type) -> type:
    def __init__(self, *, vllm_config, prefix: str = "", **kwargs) -> None:
        config = vllm_config.model_config.hf_config
        k = getattr(config, SPLIT_KEY, None)
        if not isinstance(k, int) or not 0 < k < config.num_hidden_layers:
            raise ValueError(f"a tail model needs hf_overrides {{{SPLIT_KEY!r}: k}} with 0 < k < "
                             f"{config.num_hidden_layers}, got {k!r}")
        with _layers_from(k):
            base.__init__(self, vllm_config=vllm_config, prefix=prefix, **kwargs)

    doc = f"{base.__name__} from layer ``{SPLIT_KEY}`` on, fed the UE's hidden state as ``prompt_embeds``."
    return type(TAIL_PREFIX + base.__name__, (base,), {"__init__": __init__, "__doc__": doc})


def __getattr__(name: str) -> type:
    """``EdgesplitTail<Base>`` classes, built on first access (the registry imports them lazily by name)."""
    base = name.removeprefix(TAIL_PREFIX)
    if not name.startswith(TAIL_PREFIX) or base not in BASES:
        raise AttributeError(name)
    cls = _tail_class(getattr(importlib.import_module(BASES[base]), base))
    globals()[name] = cls
    return cls


def register() -> None:
    """Register every tail architecture with vLLM (the ``vllm.general_plugins`` entry point; idempotent)."""
    from vllm import ModelRegistry

    for base in BASES:
        name = tail_architecture(base)
        if name not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(name, f"{__name__}:{name}")
