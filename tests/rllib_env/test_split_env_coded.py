"""SplitEnv on the coded 5G NR channel: table and surrogate sources, the NR-priced reward, switching, bad configs."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from edgesplit.cost import split_costs
from rllib_env.registry import describe
from rllib_env.sources import SurrogateRewardSource, TableRewardSource
from rllib_env.split_env import SplitEnv, SplitEnvConfig
from surrogate.ensemble import EnsembleConfig
from surrogate.model import QualitySurrogate
from surrogate.synthetic import MODEL_NAME, synthetic_cells

GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
CODED = {"model": MODEL_NAME, "snr_grid_db": GRID, "episode_steps": 8, "channel_kind": "coded"}


@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(seed=0, p=(), coded_snr_db=GRID)


def test_coded_env_steps_on_a_table_with_nr_priced_rewards(cells):
    env = SplitEnv({**CODED, "switching": True}, source=TableRewardSource(cells, describe(MODEL_NAME)))
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    for action in (3, 5, 1):
        _, _, _, _, info = env.step(action)
        assert np.isfinite(info["reward"]) and info["latency_s"] > 0
    setting = env.setting()
    assert setting.kind == "coded" and setting.carrier_bandwidth_hz == env.hardware[2].bandwidth_hz
    reward_fn = env.book(env.device_state)
    cost = split_costs(env.profile, 2, reward_fn._device, *env.hardware[1:], setting.state(), 256, 8,
                       nr_link=setting.nr_link())
    assert reward_fn.cost(2, setting) == cost and cost.uplink_s > cost.shannon_uplink_s
    options = env.candidate_rewards()
    assert np.isclose(options["latency_s"][2], cost.total_latency_s)
    penalties = env.switch_penalties()
    one = env.switch_cost(4, 1)
    assert np.isclose(penalties[4, 1], env.penalty_of(one)) and one.uplink_s > one.shannon_uplink_s


def test_coded_env_steps_on_a_surrogate_with_bit_choices(cells):
    model = QualitySurrogate(EnsembleConfig(hidden_size=16, ensemble_size=2, epochs=60)).fit(cells)
    env = SplitEnv({**CODED, "bits_options": (4, 8)}, source=SurrogateRewardSource(model, describe(MODEL_NAME)))
    env.reset(seed=1)
    payload = {}
    for b, bits in enumerate((4, 8)):
        _, _, _, _, info = env.step(np.array([3, b]))
        assert info["bits"] == bits and np.isfinite(info["reward"])
        payload[bits] = env.book(env.device_state).cost(3, env.setting(bits)).payload_bits
    assert payload[8] > payload[4]


@pytest.mark.parametrize(("overrides", "match"), [
    ({"channel_kind": "awgn", "harq_transmissions": 2}, "harq_transmissions applies to channel_kind 'coded' only"),
    ({"channel_kind": "coded", "mcs_table": 5}, "mcs_table must be one of"),
    ({"channel_kind": "coded", "bits": 20}, "coded bits must be an int in 1..16"),
    ({"channel_kind": "coded", "coded_channel": "nakagami"}, "unknown coded_channel 'nakagami'"),
    ({"channel_kind": "digital", "coded_channel": "tdl"}, "coded_channel applies to channel_kind 'coded' only"),
])
def test_bad_coded_configs_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        SplitEnvConfig(**{"model": MODEL_NAME, **overrides})
