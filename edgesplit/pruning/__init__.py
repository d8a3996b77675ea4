"""Pruning-aware co-inference (Lyu et al., arXiv 2505.09214), measured: pruning methods, distortion, the joint
split / pruning ratio / transmit power / CPU frequency optimiser. Core: no Ray."""

from edgesplit.pruning.spec import METHODS, SIDES, LayerRecord, PruneConfig, PruneResult

__all__ = ["METHODS", "SIDES", "LayerRecord", "PruneConfig", "PruneResult"]
