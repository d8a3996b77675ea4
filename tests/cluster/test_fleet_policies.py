"""Split policies: parsing --policy strings, choosing k from observations, rejecting bad splits."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.policies import (
    FixedPolicy,
    Observation,
    SnrThresholdPolicy,
    check_policy,
    choose_split,
    parse_policy,
)
from edgesplit.channel import ChannelState


def _obs(snr_db: float, num_layers: int = 30) -> Observation:
    return Observation(ue_id=0, request_id=0, attempt=0, channel=ChannelState(mean_snr_db=snr_db),
                       prompt_tokens=8, max_new_tokens=4, num_layers=num_layers, device="phone-soc")


def test_fixed_policy() -> None:
    policy = parse_policy("fixed:15")
    assert policy == FixedPolicy(15)
    assert choose_split(policy, _obs(-20.0)) == 15


def test_snr_thresholds_pick_the_highest_threshold_reached() -> None:
    policy = parse_policy("snr:20=4,0=30,10=15")  # order does not matter
    assert policy == SnrThresholdPolicy((0.0, 10.0, 20.0), (30, 15, 4))
    assert [choose_split(policy, _obs(s)) for s in (-5.0, 0.0, 9.9, 10.0, 19.0, 25.0)] == [30, 30, 30, 15, 15, 4]


def test_snr_policy_uses_the_faded_snr() -> None:
    policy = parse_policy("snr:0=8,10=2")
    faded = Observation(0, 0, 0, ChannelState(mean_snr_db=12.0, fading_gain=0.1), 8, 4, 30, "phone-soc")
    assert faded.snr_db == pytest.approx(2.0)
    assert choose_split(policy, faded) == 8


class _EveryOther:
    def choose(self, observation: Observation) -> int:
        return np.int64(observation.request_id % 2)  # numpy integers are accepted


def test_import_and_object_policies() -> None:
    policy = parse_policy("import:tests.cluster.test_fleet_policies:_EveryOther")
    assert type(policy).__name__ == "_EveryOther"  # a class is instantiated
    assert choose_split(policy, _obs(0.0)) == 0
    obj = _EveryOther()
    assert parse_policy(obj) is obj


@pytest.mark.parametrize("spec, message", [
    ("fixed", "unknown policy"),
    ("fixed:abc", "integer"),
    ("fixed:-1", ">= 0"),
    ("snr:10", "THRESHOLD_DB=K"),
    ("snr:10=4,10=5", "strictly increasing"),
    ("snr:x=4", "bad snr policy item"),
    ("greedy:3", "unknown policy kind"),
    ("import:os", "import:package.module:Name"),
    ("import:os:getcwd", "choose"),
    ("import:no_such_module_xyz:P", "cannot import"),
])
def test_bad_policy_strings(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policy(spec)


def test_splits_are_checked_against_the_model() -> None:
    check_policy(parse_policy("fixed:4"), 4)
    with pytest.raises(ValueError, match="outside 0..4"):
        check_policy(parse_policy("fixed:5"), 4)
    with pytest.raises(ValueError, match="outside 0..4"):
        check_policy(parse_policy("snr:0=1,10=9"), 4)


class _Returns:
    def __init__(self, value: object) -> None:
        self.value = value

    def choose(self, observation: Observation) -> object:
        return self.value


@pytest.mark.parametrize("value", [True, 2.0, "3", 99, -1])
def test_choose_split_rejects_bad_answers(value: object) -> None:
    with pytest.raises(ValueError):
        choose_split(_Returns(value), _obs(0.0, num_layers=4))
