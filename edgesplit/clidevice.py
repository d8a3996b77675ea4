"""The ``--torch-device`` / ``--dtype`` / ``--allow-cpu-half`` options every model-running command shares.

The flag is ``--torch-device``, not ``--device``: ``--device`` already names the UE hardware preset of the cost
model (``phone-soc``, ...) in ``edgesplit profile``, ``co-opt``, ``client`` and ``ue-proxy``. Resolution is
:mod:`edgesplit.models.device`'s; a value that cannot be used here exits with status 2 before any work.
"""

from __future__ import annotations

import typer

from edgesplit.clierrors import fail

TORCH_DEVICE = typer.Option("auto", "--torch-device", help="Where the model runs: auto (cuda if torch sees a GPU, "
                            "else cpu), cpu, cuda or cuda:N.")
DTYPE = typer.Option("auto", "--dtype", help="Weight dtype: auto (bfloat16 on a CUDA GPU that supports it, else "
                     "float32), float32, bfloat16 or float16.")
ALLOW_CPU_HALF = typer.Option(False, "--allow-cpu-half", help="Accept float16/bfloat16 on CPU (refused by default: "
                              "slow kernels, shifted quality numbers).")


def device_and_dtype(torch_device: str, dtype: str, allow_cpu_half: bool = False):
    """``(torch.device, torch.dtype)`` for the options, or exit 2 with what was wrong."""
    from edgesplit.models.device import resolve_device, resolve_dtype

    try:
        device = resolve_device(torch_device)
        return device, resolve_dtype(dtype, device, allow_cpu_half=allow_cpu_half)
    except ValueError as err:
        fail(f"--torch-device/--dtype: {err}")


__all__ = ["ALLOW_CPU_HALF", "DTYPE", "TORCH_DEVICE", "device_and_dtype"]
