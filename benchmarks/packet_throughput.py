"""Encode/decode throughput of ActivationPacket for every encoding.

Run:  .venv/bin/python benchmarks/packet_throughput.py [--repeats 20] [--threads 1] [--smoke-test]

Throughput is GB/s of activation payload: the tensor's float32 size (numel x 4 bytes) divided by the wall time
of one call, shown for the best and the median of ``--repeats`` calls (on a shared machine the best is the
steadier figure). "encode" is ``from_tensor(...).encode()`` (quantise + serialise + CRC); "decode" is
``decode(frame).to_tensor()`` (verify + CRC + dequantise to float32). Inputs are standard-normal hidden states
of shape [1, 512, 576] and [8, 512, 576] (SmolLM2-135M's hidden size); ``token_ids`` uses int64 ids of the same
shape, so its figure is per id (4 bytes), not comparable to a real prompt. The machine is shared: compare rows
of one run, not absolute numbers across runs; on a busy 2-core box use ``--threads 1``, since torch's
multi-threaded kernels collapse (10-100x) when other processes hold the cores.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from edgesplit.packet import ENCODINGS, ActivationPacket

SHAPES = ((1, 512, 576), (8, 512, 576))
SMOKE_SHAPES = ((1, 16, 64),)


def _times_s(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall time of ``repeats`` calls after one warm-up call."""
    fn()  # warm-up: the first call pays allocator and lazy-init costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _input(shape: tuple[int, ...], encoding: str, gen: torch.Generator) -> torch.Tensor:
    if encoding == "token_ids":
        return torch.randint(0, 49_152, shape, generator=gen)
    return torch.randn(shape, generator=gen)


def _measure(shape: tuple[int, ...], encoding: str, repeats: int, gen: torch.Generator) -> dict[str, float]:
    x = _input(shape, encoding, gen)
    split_k = 0 if encoding == "token_ids" else 6
    packet = ActivationPacket.from_tensor(x, session_id="bench", split_k=split_k, encoding=encoding)
    frame = packet.encode()
    enc_best, enc_med = _times_s(
        lambda: ActivationPacket.from_tensor(x, session_id="bench", split_k=split_k, encoding=encoding).encode(),
        repeats,
    )
    dec_best, dec_med = _times_s(lambda: ActivationPacket.decode(frame).to_tensor(), repeats)
    gb = x.numel() * 4 / 1e9
    rates = {"enc": gb / enc_best, "enc_med": gb / enc_med, "dec": gb / dec_best, "dec_med": gb / dec_med}
    return {"frame_bytes": len(frame), "bpe": packet.bits_per_element, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per cell (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--smoke-test", action="store_true", help="one tiny shape, 2 repeats (for CI)")
    args = parser.parse_args()
    shapes, repeats = (SMOKE_SHAPES, 2) if args.smoke_test else (SHAPES, args.repeats)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}, repeats: {repeats}")
    print(f"{'':>42} {'encode GB/s':>16} {'decode GB/s':>16}")
    best_median = f"{'best':>8}{'median':>8}"
    print(f"{'shape':>12} {'encoding':>9} {'frame bytes':>11} {'bits/el':>7} {best_median} {best_median}")
    for shape in shapes:
        for encoding in ENCODINGS:
            r = _measure(shape, encoding, repeats, gen)
            label = "x".join(map(str, shape))
            rates = f"{r['enc']:>8.2f}{r['enc_med']:>8.2f} {r['dec']:>8.2f}{r['dec_med']:>8.2f}"
            cells = f"{r['frame_bytes']:>11,} {r['bpe']:>7.3f} {rates}"
            print(f"{label:>12} {encoding:>9} {cells}")


if __name__ == "__main__":
    main()
