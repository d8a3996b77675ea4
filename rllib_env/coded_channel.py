"""The coded 5G NR channel of :class:`~rllib_env.split_env.SplitEnv` (``channel_kind="coded"``).

The env's coded options (``mcs_table``, ``target_bler``, ``harq_transmissions``, ``coded_path``, ``coded_channel``)
are the :class:`~edgesplit.scenario.ChannelSetting` fields of that name; the carrier is the reward preset's link
bandwidth (``5g-nr-20mhz`` → 20 MHz), the one the cost model charges, so every block's setting is priced by the NR
cost model on the carrier its impairment uses.
"""

from __future__ import annotations

from typing import Any

from edgesplit.scenario import CODED_DEFAULTS, ChannelSetting

ENV_FIELDS = ("mcs_table", "target_bler", "harq_transmissions", "coded_path", "coded_channel")
"""The coded options a :class:`~rllib_env.split_env.SplitEnvConfig` carries (the carrier comes from the link)."""


def coded_fields(config: Any) -> dict[str, Any]:
    """The coded options of an env config as ChannelSetting fields (empty unless ``channel_kind="coded"``)."""
    return {name: getattr(config, name) for name in ENV_FIELDS} if config.channel_kind == "coded" else {}


def check_coded(config: Any, bandwidth_hz: float) -> None:
    """ValueError when coded options are set for another kind, or when a coded setting of ``config`` is invalid."""
    if config.channel_kind != "coded":
        changed = [name for name in ENV_FIELDS if getattr(config, name) != CODED_DEFAULTS[name]]
        if changed:
            raise ValueError(f"{', '.join(changed)} applies to channel_kind 'coded' only")
        return
    for bits in config.bits_options or (config.bits,):
        coded_setting(config, 30.0, bits, 0.0, bandwidth_hz)


def coded_setting(config: Any, snr_db: float, bits: int, loss_rate: float, bandwidth_hz: float) -> ChannelSetting:
    """The coded setting of one block: the env's options on a carrier of ``bandwidth_hz``."""
    return ChannelSetting(kind="coded", snr_db=snr_db, bits=bits, loss_rate=loss_rate,
                          carrier_bandwidth_hz=bandwidth_hz, **coded_fields(config))


__all__ = ["ENV_FIELDS", "check_coded", "coded_fields", "coded_setting"]
