"""Channel states and seeded processes of the UE→edge uplink, and impairments applied to activations.

Processes (one :class:`ChannelState` per block): static, path loss + shadowing, Rayleigh and
Nakagami-m block fading, Gauss–Markov mobility / correlated fading, trace replay — all built with
:func:`make_process`. Impairments (``apply(x, state, generator)``): dropout (the reference paper's
model), analog AWGN with per-token SNR, digital (quantisation + Gray-mapped modulation + bit errors +
erasures / ARQ), fragment erasures, the coded 5G NR uplink (LDPC, MCS link adaptation, HARQ;
:mod:`edgesplit.channel.nr`, needs the ``nr`` extra, loaded lazily) and :class:`Compose` chains — all built
with :func:`make_impairment`.
"""

from edgesplit.channel.awgn import AwgnImpairment
from edgesplit.channel.digital import DigitalImpairment
from edgesplit.channel.dropout import DropoutImpairment
from edgesplit.channel.erasure import ERASURE_MODES, ErasureImpairment
from edgesplit.channel.factory import IMPAIRMENTS, PROCESSES, make_config, make_impairment, make_process
from edgesplit.channel.fading import FADING_KINDS, NakagamiConfig, NakagamiProcess, RayleighConfig, RayleighProcess
from edgesplit.channel.gauss_markov import GaussMarkovConfig, GaussMarkovProcess, jakes_rho
from edgesplit.channel.impairment import Compose, Impairment, ImpairmentResult, NoImpairment, as_generator
from edgesplit.channel.modulation import (
    MODULATIONS,
    ber_awgn,
    ber_fading_avg,
    ber_rayleigh_avg,
    demodulate,
    modulate,
    packet_error_rate,
    transmit_bits,
)
from edgesplit.channel.nr import CodedImpairment
from edgesplit.channel.path_loss import LinkBudgetConfig, PathLossConfig, PathLossProcess
from edgesplit.channel.process import ChannelProcess, LossConfig
from edgesplit.channel.state import ChannelState
from edgesplit.channel.static import StaticConfig, StaticProcess
from edgesplit.channel.trace import TraceConfig, TraceProcess, load_snr_trace

__all__ = [
    "ERASURE_MODES",
    "FADING_KINDS",
    "IMPAIRMENTS",
    "MODULATIONS",
    "PROCESSES",
    "AwgnImpairment",
    "ChannelProcess",
    "ChannelState",
    "CodedImpairment",
    "Compose",
    "DigitalImpairment",
    "DropoutImpairment",
    "ErasureImpairment",
    "GaussMarkovConfig",
    "GaussMarkovProcess",
    "Impairment",
    "ImpairmentResult",
    "LinkBudgetConfig",
    "LossConfig",
    "NakagamiConfig",
    "NakagamiProcess",
    "NoImpairment",
    "PathLossConfig",
    "PathLossProcess",
    "RayleighConfig",
    "RayleighProcess",
    "StaticConfig",
    "StaticProcess",
    "TraceConfig",
    "TraceProcess",
    "as_generator",
    "ber_awgn",
    "ber_fading_avg",
    "ber_rayleigh_avg",
    "demodulate",
    "jakes_rho",
    "load_snr_trace",
    "make_config",
    "make_impairment",
    "make_process",
    "modulate",
    "packet_error_rate",
    "transmit_bits",
]
