"""A simulated UE on the coded 5G NR link: its spec charges the quantiser's bits and prices the uplink with NR."""

from __future__ import annotations

import pytest

from cluster.ue_device import UESpec


def test_coded_ue_spec_charges_its_bits_and_builds_the_nr_link():
    spec = UESpec(ue_id=0, impairment="coded", impairment_params={"bits": 6, "target_bler": 0.05})
    assert spec.bits == 6 and spec.nr_link.target_bler == 0.05 and spec.nr_link.carrier.bandwidth_hz == 20e6
    assert UESpec(ue_id=0, impairment="digital").nr_link is None


def test_a_coded_carrier_other_than_the_links_is_refused():
    with pytest.raises(ValueError, match="NR carrier is 20 MHz but link '5g-nr-100mhz' charges 100 MHz"):
        UESpec(ue_id=0, impairment="coded", link="5g-nr-100mhz")
    wide = UESpec(ue_id=0, impairment="coded", link="5g-nr-100mhz", impairment_params={"carrier": {
        "bandwidth_hz": 100e6}})
    assert wide.nr_link.carrier.prbs == 273
