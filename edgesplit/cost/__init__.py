"""Cost model of a split: FLOPs and bytes per layer, device/edge/link profiles, latency and UE energy.

from edgesplit.cost import ModelProfile, get_device, get_edge, get_link, split_costs
profile = ModelProfile.from_config(config)          # any supported transformers config
cost = split_costs(profile, k=4, device=get_device("phone-soc"), edge=get_edge("a100"),
                   link=get_link("5g-nr-20mhz"), channel_state=ChannelState(mean_snr_db=10.0),
                   tokens=128, bits=8)
cost.total_latency_s, cost.ue_energy_j, cost.feasible
switch = switch_costs(profile, 4, 2, device, edge, link, channel_state, context_tokens=512)  # KV migration
"""

from edgesplit.cost.config_arch import SUPPORTED_FAMILIES, ConfigArch, arch_from_config
from edgesplit.cost.hardware import (
    DEVICE_PRESETS,
    EDGE_PRESETS,
    LINK_PRESETS,
    DeviceProfile,
    EdgeProfile,
    LinkProfile,
    get_device,
    get_edge,
    get_link,
)
from edgesplit.cost.model_profile import LayerProfile, ModelProfile
from edgesplit.cost.split_cost import (
    FLOAT_BITS,
    PHASES,
    SCALE_BITS_PER_TOKEN,
    SplitCost,
    expected_transmissions,
    hidden_payload_bits,
    split_costs,
    sweep_split_costs,
    uplink_rate_bps,
)
from edgesplit.cost.switching import (
    KV_BITS,
    SwitchCost,
    kv_migration_bits,
    kv_migration_elements,
    switch_cost_table,
    switch_costs,
)

__all__ = [
    "DEVICE_PRESETS",
    "EDGE_PRESETS",
    "FLOAT_BITS",
    "KV_BITS",
    "LINK_PRESETS",
    "PHASES",
    "SCALE_BITS_PER_TOKEN",
    "SUPPORTED_FAMILIES",
    "ConfigArch",
    "DeviceProfile",
    "EdgeProfile",
    "LayerProfile",
    "LinkProfile",
    "ModelProfile",
    "SplitCost",
    "SwitchCost",
    "arch_from_config",
    "expected_transmissions",
    "get_device",
    "get_edge",
    "get_link",
    "hidden_payload_bits",
    "kv_migration_bits",
    "kv_migration_elements",
    "split_costs",
    "sweep_split_costs",
    "switch_cost_table",
    "switch_costs",
    "uplink_rate_bps",
]
