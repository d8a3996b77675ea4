"""The ``coded`` impairment: bit-true round trip, bit-true vs abstracted statistics, HARQ accounting, seeds, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

pytest.importorskip("sionna.phy", reason="the coded NR link needs the nr extra: pip install 'edgesplit[nr]'")

from edgesplit.channel import ChannelState, make_impairment  # noqa: E402
from edgesplit.channel.digital import dequantize_codes, quantize_codes  # noqa: E402
from edgesplit.channel.nr import (  # noqa: E402
    CarrierConfig,
    CodedImpairment,
    _sionna,  # noqa: E402
    failure_probabilities,
    transport_block,
)
from edgesplit.channel.nr.bit_true import bit_true_link  # noqa: E402
from edgesplit.channel.nr.coded import lost_elements  # noqa: E402

ONE_PRB = {"num_prbs": 1}


def _x(shape: tuple[int, ...] = (3, 40), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("mcs_table", "snr_db"), [(1, 30.0), (2, 40.0)])
def test_bit_true_round_trip_is_exact_at_high_snr(mcs_table: int, snr_db: float) -> None:
    x = _x()
    imp = CodedImpairment(bits=8, path="bit_true", carrier=ONE_PRB, mcs_table=mcs_table)
    result = imp.apply(x, ChannelState(mean_snr_db=snr_db), 0)
    q, scales = quantize_codes(x, 8)
    assert torch.equal(result.x, dequantize_codes(q, scales, 8))
    s = result.stats
    assert s["modulation_order"] == (6 if mcs_table == 1 else 8)
    assert s["failed_tbs"] == 0 and s["residual_code_errors"] == 0 and s["erased_fraction"] == 0
    assert s["transmissions"] == s["num_tbs"] == np.ceil(s["payload_bits"] / s["tbs_bits"])
    assert s["payload_bits"] == 3 * 40 * 8 + 3 * 32 and s["delivered_payload_bits"] == s["payload_bits"]


def _clopper_pearson(failures: int, n: int, level: float = 0.99) -> tuple[float, float]:
    ci = stats.binomtest(failures, n).proportion_ci(level, method="exact")
    return ci.low, ci.high


CI_POINTS = [(4, -1.0, "awgn", 1), (9, 3.0, "awgn", 1), (15, 8.0, "awgn", 1), (9, 0.0, "awgn", 2),
             (15, 5.2, "awgn", 2), (9, 8.0, "rayleigh", 1)]


@pytest.mark.parametrize(("mcs", "snr_db", "channel", "max_tx"), CI_POINTS)
def test_abstracted_tb_error_rate_inside_bit_true_99_ci(mcs: int, snr_db: float, channel: str, max_tx: int) -> None:
    """Waterfall points of small code blocks (1 PRB: CBS 104..384); the last-transmission TB error rate.

    99 % for the family of points: each point's Clopper-Pearson interval is at 1 - 0.01 / len(CI_POINTS)
    (Bonferroni), so an exact abstraction fails this test with probability <= 1 % (at 99 % per point, ~6 %)."""
    info = transport_block(CarrierConfig(**ONE_PRB), 1, mcs)
    gen = torch.Generator().manual_seed(11)
    n = 300
    bits = torch.randint(0, 2, (n, info.tbs_bits), generator=gen)
    decoded, outcome, _ = bit_true_link(info).send(bits, snr_db, max_tx, channel, gen)
    failures = int(outcome.erased.sum())
    low, high = _clopper_pearson(failures, n, 1.0 - 0.01 / len(CI_POINTS))
    q = failure_probabilities(info, snr_db, max_tx, channel)[-1]
    assert 0.02 < failures / n < 0.98, "the point is not in the waterfall"
    assert low <= q <= high, f"abstracted {q:.3f} outside bit-true CI [{low:.3f}, {high:.3f}]"
    ok = torch.as_tensor(outcome.delivered)
    assert torch.equal(decoded[ok].long(), bits[ok].long())  # what the CRC passes is exact


def test_llr_combining_loses_to_symbol_combining_at_16qam() -> None:
    info = transport_block(CarrierConfig(**ONE_PRB), 1, 15)
    bits = torch.randint(0, 2, (120, info.tbs_bits), generator=torch.Generator().manual_seed(4))
    failed = {}
    for combining in ("symbol", "llr"):
        _, outcome, _ = bit_true_link(info).send(bits, 5.2, 2, "awgn", torch.Generator().manual_seed(5), combining)
        failed[combining] = int(outcome.erased.sum())
    assert failed["llr"] > failed["symbol"] + 10  # ~0.45 vs ~0.27 of the TBs lost


def test_harq_accounting_when_every_tb_fails() -> None:
    x = _x((2, 64))
    for path in ("abstracted", "bit_true"):
        imp = CodedImpairment(bits=4, path=path, carrier=ONE_PRB, mcs=9, max_transmissions=3)
        s = imp.apply(x, ChannelState(mean_snr_db=-15.0), 1).stats
        n_tb = s["num_tbs"]
        assert n_tb == np.ceil((2 * 64 * 4 + 2 * 32) / 208) and s["failed_tbs"] == n_tb
        assert s["transmissions"] == 3 * n_tb and s["harq_rounds"] == 3 and s["first_tx_tb_error_rate"] == 1.0
        assert s["airtime_s"] == pytest.approx(3 * n_tb * 0.5e-3)
        assert s["harq_latency_s"] == pytest.approx((3 * n_tb + 2 * 4) * 0.5e-3)  # two round trips
        assert s["erased_fraction"] == 1.0 and s["delivered_payload_bits"] == 0
        assert s["coded_bits_on_air"] == 3 * n_tb * 312
    assert torch.count_nonzero(imp.apply(x, ChannelState(mean_snr_db=-15.0), 1).x) == 0


def test_harq_accounting_when_nothing_fails() -> None:
    s = CodedImpairment(bits=4, carrier=ONE_PRB, mcs=9).apply(_x((2, 64)), ChannelState(mean_snr_db=30.0), 1).stats
    assert s["transmissions"] == s["num_tbs"] and s["retransmissions"] == 0 and s["harq_rounds"] == 1
    assert s["harq_latency_s"] == pytest.approx(s["num_tbs"] * 0.5e-3) == pytest.approx(s["airtime_s"])


def test_elements_touching_an_erased_tb_are_lost() -> None:
    # 24-bit TBs, an 8-bit header, 5-bit elements: element e holds bits 8 + 5e .. 12 + 5e
    lost = lost_elements(torch.tensor([False, True, False]), 8, 12, 5, 24)
    assert lost.nonzero().flatten().tolist() == [3, 4, 5, 6, 7]  # element 3 (bits 23..27) straddles TB 0 and 1


@pytest.mark.parametrize(("path", "channel"), [("abstracted", "awgn"), ("abstracted", "rayleigh"),
                                               ("bit_true", "rayleigh")])
def test_seed_reproduces_and_global_rng_untouched(path: str, channel: str) -> None:
    imp = CodedImpairment(bits=4, path=path, channel=channel, carrier=ONE_PRB, mcs=9, max_transmissions=2)
    x, state = _x((4, 32)), ChannelState(mean_snr_db=3.0 if channel == "awgn" else 6.0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = imp.apply(x, state, torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)
    b = imp.apply(x, state, 1)
    assert torch.equal(a.x, b.x) and a.stats == b.stats
    c = imp.apply(x, state, 2)
    assert not torch.equal(a.x, c.x) or a.stats != c.stats
    assert imp.apply(x.to(torch.bfloat16), state, 1).x.dtype == torch.bfloat16


_FIRST_CALL = """
import json, sys, torch
import edgesplit, edgesplit.channel
from edgesplit.channel import ChannelState, make_impairment
imp = make_impairment("coded", bits=4, path="bit_true", carrier={"num_prbs": 1}, max_transmissions=2)
loaded_early = "sionna" in sys.modules
torch.manual_seed(7)
x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
a = imp.apply(x, ChannelState(mean_snr_db=1.0), 5)
after = torch.rand(4).tolist()
b = imp.apply(x, ChannelState(mean_snr_db=1.0), 5)
print(json.dumps({"loaded_early": loaded_early, "loaded": "sionna" in sys.modules, "after": after,
                  "same": bool(torch.equal(a.x, b.x) and a.stats == b.stats), "x": a.x.tolist(), "stats": a.stats}))
"""


def test_first_call_imports_sionna_lazily_and_reproduces() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL], capture_output=True, text=True, check=True, env=env,
                         timeout=240)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    torch.manual_seed(7)
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    expected_after = torch.rand(4).tolist()
    assert not got["loaded_early"] and got["loaded"] and got["same"]
    assert got["after"] == expected_after  # importing sionna inside apply left torch's global RNG alone
    here = make_impairment("coded", bits=4, path="bit_true", carrier=ONE_PRB, max_transmissions=2)
    local = here.apply(x, ChannelState(mean_snr_db=1.0), 5)  # this process imported sionna long ago
    assert local.x.tolist() == got["x"] and local.stats == pytest.approx(got["stats"], nan_ok=True)


def test_missing_sionna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sionna, "_MODULES", None)
    monkeypatch.setitem(sys.modules, "sionna", None)
    with pytest.raises(ImportError, match=r"pip install 'edgesplit\[nr\]'"):
        _sionna.load_sionna()


_WITHOUT_SIONNA = """
import sys, torch
sys.modules["sionna"] = None  # as if the nr extra were not installed
import edgesplit, edgesplit.channel
from edgesplit.channel import ChannelState, make_impairment
imp = make_impairment("coded", bits=4)
try:
    imp.apply(torch.ones(1, 4), ChannelState(mean_snr_db=10.0), 0)
except ImportError as err:
    print(err)
"""


def test_package_imports_without_sionna() -> None:
    out = subprocess.run([sys.executable, "-c", _WITHOUT_SIONNA], capture_output=True, text=True, check=True,
                         timeout=120)
    assert "pip install 'edgesplit[nr]'" in out.stdout


def test_factory_and_stats_are_floats() -> None:
    imp = make_impairment("coded", bits=6, carrier={"num_prbs": 2}, target_bler=0.05)
    assert isinstance(imp, CodedImpairment) and imp.link.carrier.prbs == 2
    result = imp.apply(_x(), ChannelState(mean_snr_db=10.0, fading_gain=0.5), 0)
    assert result.stats["reported_snr_db"] == pytest.approx(10.0 + 10 * np.log10(0.5))
    assert all(isinstance(v, float) for v in result.stats.values())
    for key in ("mcs", "modulation_order", "code_rate", "tbs_bits", "num_tbs", "transmissions", "failed_tbs",
                "first_tx_tb_error_rate", "delivered_payload_bits", "coded_bits_on_air", "airtime_s", "harq_latency_s"):
        assert key in result.stats


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"bits": 0}, r"1\.\.16"),
        ({"path": "exact"}, r"\['abstracted', 'bit_true'\]"),
        ({"channel": "tdl-a"}, r"\['awgn', 'rayleigh', 'tdl'\]"),
        ({"num_bp_iter": 0}, "num_bp_iter"),
        ({"carrier": {"num_prbs": 1}, "mcs": 2}, r"no BLER curve for MCS 2.*path='bit_true'"),
        ({"carrier": {"bandwidth_hz": 7e6}}, "channel bandwidth"),
        ({"carrier": "20MHz"}, "CarrierConfig"),
        ({"mcs": -1}, r"0\.\.28"),
        ({"max_transmissions": 17}, r"1\.\.16"),
        ({"combining": "mrc"}, r"\['symbol', 'llr'\]"),
        ({"combining": "llr"}, "needs path='bit_true'"),
    ],
)
def test_bad_input_raises_value_error(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_impairment("coded", **params)
    with pytest.raises(ValueError, match="generator"):
        CodedImpairment().apply(_x(), ChannelState(mean_snr_db=5.0), "seed")
