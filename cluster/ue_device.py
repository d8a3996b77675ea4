"""One simulated UE: a device profile, a seeded channel process, the model's head, and a split policy.

For each request the UE measures the channel, asks its policy for ``k``, and then, step by step (the prompt,
then one token at a time), runs the head with its own KV cache, impairs the hidden state with the channel of that
step, encodes it as an :class:`~edgesplit.packet.ActivationPacket` and hands the bytes to the fleet, which sends
them to the UE's edge. At ``k = L`` nothing crosses the link: the UE also runs the final norm and LM head.

Beside the measured compute times, every step is priced by the cost model
(:func:`edgesplit.cost.split_costs` with that step's channel state): simulated device/edge compute, uplink,
downlink and UE energy. The channel process steps once per packet (one fading block per decoding step). With the
``coded`` impairment (the 5G NR link) the uplink is priced by the NR cost model on the impairment's carrier, which
must have the link preset's bandwidth (:mod:`edgesplit.cost.coded_uplink`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from cluster.messages import EdgeReply
from cluster.policies import Observation, SplitPolicy, choose_split, parse_policy
from edgesplit.channel import ChannelState, make_impairment, make_process
from edgesplit.channel.nr import NrLinkConfig
from edgesplit.cost import ModelProfile, get_device, get_edge, get_link, split_costs
from edgesplit.cost.coded_uplink import check_carrier
from edgesplit.models import LoadedModel
from edgesplit.packet import ENCODINGS, ActivationPacket
from edgesplit.scenario import ENCODING_BITS
from edgesplit.split import DeviceHead, EdgeTail, SideSession


def derive_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed for a component (e.g. ``(seed, ue_id, 0)`` for a UE's channel)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class UESpec:
    """Everything that defines one UE."""

    ue_id: int
    """Index of the UE in the fleet."""
    edge: int = 0
    """Index of the edge worker the UE is attached to."""
    device: str = "phone-soc"
    """Device profile preset (:func:`edgesplit.cost.get_device`)."""
    channel: str = "gauss_markov"
    """Channel process kind (:func:`edgesplit.channel.make_process`)."""
    channel_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the channel process (e.g. ``distance_m``)."""
    impairment: str = "none"
    """Impairment applied to the hidden state (:func:`edgesplit.channel.make_impairment`)."""
    impairment_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the impairment (e.g. ``p`` for dropout, ``bits`` for digital)."""
    encoding: str = "float32"
    """Packet encoding of hidden states (float32, float16, bfloat16, int8, int4)."""
    policy: str | SplitPolicy = "fixed:15"
    """Split policy: a ``--policy`` string or an object with ``choose(observation)``."""
    link: str = "5g-nr-20mhz"
    """Link profile preset for the simulated link time."""
    edge_profile: str = "a100"
    """Edge profile preset for the simulated edge compute time."""
    seed: int = 0
    """Run seed; the UE derives its channel and noise seeds from it and its id."""

    def __post_init__(self) -> None:
        if self.ue_id < 0 or self.edge < 0:
            raise ValueError(f"ue_id and edge must be >= 0, got {self.ue_id}, {self.edge}")
        if self.encoding not in ENCODINGS or self.encoding == "token_ids":
            raise ValueError(f"unknown hidden-state encoding {self.encoding!r}; accepted: float32, float16, "
                             f"bfloat16, int8, int4")
        get_device(self.device)
        get_link(self.link)
        get_edge(self.edge_profile)
        make_process(self.channel, seed=0, **self.channel_params)
        make_impairment(self.impairment, **self.impairment_params)
        if self.nr_link is not None:  # the coded link's carrier must be the one the cost model charges
            check_carrier(get_link(self.link), self.nr_link)
        parse_policy(self.policy)

    @property
    def bits(self) -> int:
        """Bits per element the cost model charges: the quantiser's for a digital or coded channel, else the
        encoding's."""
        if self.impairment in ("digital", "coded"):
            return int(self.impairment_params.get("bits", 8))
        return ENCODING_BITS[self.encoding]

    @property
    def nr_link(self) -> NrLinkConfig | None:
        """The coded 5G NR link's configuration (the uplink is then priced by the NR cost model), else None."""
        if self.impairment != "coded":
            return None
        return make_impairment("coded", **self.impairment_params).link


@dataclass(frozen=True)
class RequestSpec:
    """One generation request: which UE, which prompt, how many tokens."""

    request_id: int
    """Unique id within the run."""
    ue: int
    """The UE that issues it."""
    prompt: tuple[int, ...]
    """Prompt token ids."""
    max_new_tokens: int
    """Tokens to generate (greedy; EOS does not stop it, so every request does the same work)."""

    def __post_init__(self) -> None:
        if not self.prompt or self.max_new_tokens < 1:
            raise ValueError("a request needs a non-empty prompt and max_new_tokens >= 1")


_TOTALS = ("head_s", "encode_s", "edge_decode_s", "edge_compute_s", "rtt_s", "call_overhead_s", "bytes_sent",
           "packets", "sim_device_s", "sim_uplink_s", "sim_edge_s", "sim_downlink_s", "ue_energy_j",
           "edge_batch_size")


@dataclass
class RequestRun:
    """The state of one attempt at one request on one UE."""

    spec: RequestSpec
    """The request."""
    k: int
    """Split chosen for this attempt (-1 when the policy failed)."""
    attempt: int
    """0 for the first try; the number of retries so far."""
    session_id: str
    """Session id carried in every packet of this attempt (unique per UE, request and attempt)."""
    head_session: SideSession | None
    """The UE's KV cache for layers 0..k-1."""
    local_session: SideSession | None
    """At k = L: the cache-less state of the on-device final norm + LM head."""
    decision_state: ChannelState
    """The channel block measured when the split was chosen (also the first packet's block)."""
    error: str | None = None
    """Why the attempt could not start (policy failure), else None."""
    tokens: list[int] = field(default_factory=list)
    """Tokens generated so far."""
    position: int = 0
    """Tokens processed so far (prompt + fed-back tokens): the next packet's position_start."""
    states: list[ChannelState] = field(default_factory=list)
    """Channel block of every step sent so far."""
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_TOTALS, 0.0))
    """Running sums of the measured and simulated figures."""
    last_link_s: tuple[float, float] = (0.0, 0.0)
    """Simulated (uplink, downlink) time of the latest step, for --enforce-link-latency."""
    started_s: float = field(default_factory=time.perf_counter)
    """perf_counter() when this attempt started."""

    @property
    def done(self) -> bool:
        return len(self.tokens) >= self.spec.max_new_tokens

    @property
    def last_step(self) -> bool:
        """True while emitting the request's final step (the edge may then free the session)."""
        return len(self.tokens) == self.spec.max_new_tokens - 1

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.totals[key] += value


class UEDevice:
    """One UE (plain class; the fleet actor holds many of them)."""

    def __init__(self, spec: UESpec, loaded: LoadedModel) -> None:
        self.spec = spec
        self.loaded = loaded
        self.process = make_process(spec.channel, seed=derive_seed(spec.seed, spec.ue_id, 0), **spec.channel_params)
        self.impairment = make_impairment(spec.impairment, **spec.impairment_params)
        self.generator = torch.Generator().manual_seed(derive_seed(spec.seed, spec.ue_id, 1))
        self.policy = parse_policy(spec.policy)
        self.profile = ModelProfile.from_config(loaded.model.config)
        self.device, self.link, self.edge = get_device(spec.device), get_link(spec.link), get_edge(spec.edge_profile)
        self._heads: dict[int, DeviceHead] = {}
        self._local_tail = EdgeTail(loaded, loaded.num_layers)

    def head(self, k: int) -> DeviceHead:
        if k not in self._heads:
            self._heads[k] = DeviceHead(self.loaded, k)
        return self._heads[k]

    def begin(self, request: RequestSpec, attempt: int = 0) -> RequestRun:
        """Measure the channel, pick ``k`` and open fresh KV caches for one attempt at ``request``.

        A policy that fails or answers an invalid split gives a run with ``error`` set (logged as failed).
        """
        state = self.process.step()
        observation = Observation(self.spec.ue_id, request.request_id, attempt, state, len(request.prompt),
                                  request.max_new_tokens, self.loaded.num_layers, self.spec.device)
        session_id = f"ue{self.spec.ue_id}-r{request.request_id}-a{attempt}"
        try:
            k = choose_split(self.policy, observation)
        except Exception as err:  # a user policy may raise anything; the request fails, the fleet goes on
            return RequestRun(request, -1, attempt, session_id, None, None, state, error=f"policy error: {err}")
        local = self._local_tail.new_session() if k == self.loaded.num_layers else None
        return RequestRun(request, k, attempt, session_id, self.head(k).new_session(), local, state)

    def _step_input(self, run: RequestRun) -> torch.Tensor:
        ids = run.spec.prompt if not run.tokens else run.tokens[-1:]
        return torch.tensor([list(ids)], dtype=torch.long)

    def _step_state(self, run: RequestRun) -> ChannelState:
        state = run.decision_state if not run.states else self.process.step()
        run.states.append(state)
        return state

    def _price(self, run: RequestRun, state: ChannelState, tokens: int) -> None:
        phase = "prefill" if run.position == 0 else "decode"
        cost = split_costs(self.profile, run.k, self.device, self.edge, self.link, state, tokens, self.spec.bits,
                           context_len=run.position + tokens, phase=phase, nr_link=self.spec.nr_link)
        run.add(sim_device_s=cost.device_compute_s, sim_uplink_s=cost.uplink_s, sim_edge_s=cost.edge_compute_s,
                sim_downlink_s=cost.downlink_s, ue_energy_j=cost.ue_energy_j)
        run.last_link_s = (cost.uplink_s, cost.downlink_s)
        run.position += tokens

    @torch.inference_mode()
    def emit(self, run: RequestRun) -> bytes:
        """Run the head on this step's tokens and return the packet to send (``k < L``)."""
        state = self._step_state(run)
        ids = self._step_input(run)
        start = time.perf_counter()
        out = self.head(run.k)(ids, session=run.head_session)
        encode_start = time.perf_counter()
        if run.k > 0:
            out = self.impairment.apply(out, state, self.generator).x
        packet = ActivationPacket.from_tensor(out, session_id=run.session_id, split_k=run.k,
                                              position_start=run.position,
                                              encoding="token_ids" if run.k == 0 else self.spec.encoding)
        frame = packet.encode()
        run.add(head_s=encode_start - start, encode_s=time.perf_counter() - encode_start, bytes_sent=len(frame),
                packets=1)
        self._price(run, state, ids.shape[1])
        return frame

    @torch.inference_mode()
    def run_local(self, run: RequestRun) -> None:
        """One step entirely on the UE (``k = L``): every layer, the final norm and the LM head."""
        state = self._step_state(run)
        ids = self._step_input(run)
        start = time.perf_counter()
        hidden = self.head(run.k)(ids, session=run.head_session)
        logits = self._local_tail(hidden, session=run.local_session, last_only=True)
        run.tokens.append(int(logits[0, -1].argmax()))
        run.add(head_s=time.perf_counter() - start)
        self._price(run, state, ids.shape[1])

    def receive(self, run: RequestRun, reply: EdgeReply, rtt_s: float) -> None:
        """Take the edge's token for the step just sent."""
        run.tokens.append(int(reply.token))
        run.add(edge_decode_s=reply.decode_s, edge_compute_s=reply.compute_s, rtt_s=rtt_s,
                call_overhead_s=max(rtt_s - reply.handler_s, 0.0), edge_batch_size=reply.batch_size)

    def row(self, run: RequestRun, status: str = "ok", error: str | None = None) -> dict[str, Any]:
        """The per-request log record of a finished (or failed) run."""
        snr = [s.snr_db for s in run.states] or [run.decision_state.snr_db]
        totals = dict(run.totals)
        steps_at_edge = max(totals["packets"], 1.0)
        totals["edge_batch_size"] /= steps_at_edge
        sim_link = totals["sim_uplink_s"] + totals["sim_downlink_s"]
        return {
            "request_id": run.spec.request_id, "ue": self.spec.ue_id,
            "edge": self.spec.edge if 0 <= run.k < self.loaded.num_layers else -1, "k": run.k, "status": status,
            "error": error, "retries": run.attempt, "device": self.spec.device,
            "prompt_tokens": len(run.spec.prompt), "new_tokens": len(run.tokens), "tokens": list(run.tokens),
            "snr_db_start": run.decision_state.snr_db, "mean_snr_db_start": run.decision_state.mean_snr_db,
            "snr_db_mean": float(np.mean(snr)), "snr_db_min": float(np.min(snr)),
            "fading_gain_mean": float(np.mean([s.fading_gain for s in run.states] or [1.0])),
            "loss_rate_mean": float(np.mean([s.loss_rate for s in run.states] or [0.0])),
            **totals, "bytes_sent": int(totals["bytes_sent"]), "packets": int(totals["packets"]),
            "sim_link_s": sim_link,
            "sim_total_s": sim_link + totals["sim_device_s"] + totals["sim_edge_s"],
            "wall_s": time.perf_counter() - run.started_s,
        }
