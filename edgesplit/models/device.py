"""Which torch device and dtype a model runs in: one resolution shared by every command, engine and replica.

resolve_device("auto")                          # cuda when torch sees a GPU, else cpu
resolve_dtype("auto", resolve_device("cuda"))   # bfloat16 where the GPU supports it, else float32
resolve_dtype("bfloat16", torch.device("cpu"))  # ValueError: half precision on CPU must be asked for
resolve_dtype("bfloat16", torch.device("cpu"), allow_cpu_half=True)   # torch.bfloat16

Half precision on CPU is refused unless ``allow_cpu_half``: CPU kernels for float16/bfloat16 are slow (often slower
than float32) and they shift every quality number, so a run that picks them by accident measures the wrong thing.

Inside a Ray task or actor ``auto`` must follow what Ray reserved, not what the node has: Ray 2.60 leaves
``CUDA_VISIBLE_DEVICES`` alone for an actor that reserves no GPU, so that actor still sees every GPU of its node.
:func:`resolve_device` therefore asks Ray (when this process is a Ray worker) how many GPUs it was given, and
:func:`check_gpu_reservation` checks a requested device against a reservation before anything starts. This module
never imports Ray itself: it only looks at a Ray that the process has already imported.
"""

from __future__ import annotations

import sys

import torch

DEVICES = ("auto", "cpu", "cuda")
"""Device names accepted (``cuda:N`` picks one GPU)."""
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Weight dtypes by name."""
DTYPE_NAMES = ("auto", *DTYPES)
"""Dtype names accepted (``auto``: bfloat16 on a CUDA device that supports it, else float32)."""


def _cuda_index(name: str) -> int | None:
    """N of ``cuda:N`` (None for plain ``cuda``); ValueError for anything else after the colon."""
    _, sep, index = name.partition(":")
    if not sep:
        return None
    if not index.isdigit():
        raise ValueError(f"device {name!r}: a GPU index must be a non-negative integer (cuda:0, cuda:1, ...)")
    return int(index)


def check_device_name(name: str) -> str:
    """``name`` lower-cased if it is one of :data:`DEVICES` or ``cuda:N``; ValueError naming the accepted ones."""
    text = str(name).strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and _cuda_index(text) is not None):
        return text
    raise ValueError(f"unknown device {name!r}; accepted: {', '.join(DEVICES)} or cuda:N")


def ray_gpus_reserved() -> int | None:
    """GPUs Ray gave this process when it is a Ray task or actor; None in a driver or where Ray is not imported."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    worker = ray._private.worker  # the mode test RLlib's own device choice uses
    if worker.global_worker.mode != worker.WORKER_MODE:
        return None
    return len(ray.get_gpu_ids())


def resolve_device(name: str | torch.device = "auto", *, gpus_reserved: float | None = None) -> torch.device:
    """The torch device ``name`` means here (see the module docstring); ValueError when it cannot be used.

    ``gpus_reserved``: the GPUs Ray gave this process (default: asked of Ray in a Ray worker, none elsewhere);
    with a count, ``auto`` means cuda only if it is > 0 and ``cuda`` without a reservation is refused.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = check_device_name(name)
    if text == "cpu":
        return torch.device("cpu")
    if gpus_reserved is None:
        gpus_reserved = ray_gpus_reserved()
    available = torch.cuda.is_available()
    if text == "auto":
        usable = available and (gpus_reserved is None or gpus_reserved > 0)
        return torch.device("cuda" if usable else "cpu")
    if not available:
        raise ValueError(f"device {text!r} was asked for but torch sees no CUDA device (torch {torch.__version__}, "
                         f"built for CUDA {torch.version.cuda or 'none'}); use cpu or auto")
    if gpus_reserved is not None and gpus_reserved <= 0:
        raise ValueError(f"device {text!r} in a Ray actor that reserved no GPU: give it num_gpus > 0 (Ray does not "
                         f"hide the node's GPUs from it, but they belong to other actors)")
    index = _cuda_index(text)
    if index is not None and index >= torch.cuda.device_count():
        raise ValueError(f"device {text!r}: this process sees {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(text)


def resolve_dtype(name: str | torch.dtype = "auto", device: torch.device | str = "cpu", *,
                  allow_cpu_half: bool = False) -> torch.dtype:
    """The weight dtype ``name`` means on ``device``; ValueError for an unknown name or (unless ``allow_cpu_half``)
    float16/bfloat16 on CPU."""
    device = torch.device(device)
    if isinstance(name, torch.dtype):
        dtype = name
    else:
        text = str(name).strip().lower()
        if text == "auto":
            if device.type == "cuda" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return torch.float32
        if text not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; accepted: {', '.join(DTYPE_NAMES)}")
        dtype = DTYPES[text]
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16) and not allow_cpu_half:
        raise ValueError(f"dtype {dtype_name(dtype)} on CPU is refused (slow CPU kernels, shifted quality numbers); "
                         f"use float32 or auto, or allow half precision on CPU explicitly (--allow-cpu-half)")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def check_gpu_reservation(device: str, num_gpus: float) -> None:
    """ValueError unless a Ray actor asked to run on ``device`` with ``num_gpus`` reserved makes sense: GPUs reserved
    need device cuda or auto (cpu would leave them idle), and device cuda needs a reservation."""
    text = check_device_name(device)
    if not num_gpus >= 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus!r}")
    if num_gpus > 0 and text == "cpu":
        raise ValueError(f"num_gpus={num_gpus:g} reserves a GPU that device 'cpu' would leave idle; set the device "
                         f"to cuda or auto, or num_gpus to 0")
    if num_gpus == 0 and text.startswith("cuda"):
        raise ValueError(f"device {text!r} needs num_gpus > 0: Ray gives GPUs only to actors that reserve them")


__all__ = ["DEVICES", "DTYPES", "DTYPE_NAMES", "check_device_name", "check_gpu_reservation", "dtype_name",
           "ray_gpus_reserved", "resolve_device", "resolve_dtype"]
