"""Exact split of a decoder-only LM into a UE head and an edge tail, each with its own KV cache."""

from edgesplit.split.device_head import DeviceHead, check_split
from edgesplit.split.edge_tail import EdgeTail
from edgesplit.split.generation import split_generate
from edgesplit.split.migrate import Migration, MovedSplit, move_split
from edgesplit.split.session import SideSession, positions_from_mask

__all__ = [
    "DeviceHead",
    "EdgeTail",
    "Migration",
    "MovedSplit",
    "SideSession",
    "check_split",
    "move_split",
    "positions_from_mask",
    "split_generate",
]
