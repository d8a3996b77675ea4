"""The split controller's policies: a UE's state in, a split decision out (plain classes, no Ray, no pickle).

policy = load_policy(PolicySpec(kind="rllib", path="runs/policy_export", model="smollm2-135m"))
decision = policy.decide(UEState(snr_db_history=[11.0, 12.3]))        # SplitDecision: k, encoding, reason, ...

- :class:`ExportedRLPolicy` (``rllib``): a policy trained by ``train-policy`` / ``mbrl`` and exported with
  ``edgesplit export-policy`` (safetensors + JSON, :mod:`rllib_env.export`), run in pure torch, greedy.
- :class:`SurrogateGreedyPolicy` (``surrogate_greedy``): a surrogate checkpoint (``fit-surrogate``); the split
  whose predicted reward is highest at the UE's state.
- :class:`RuleTablePolicy` (``rule``): the best split by a profile table's measured quality plus the cost model's
  price (``edgesplit profile``'s ``cells.parquet``), or — with no table — the built-in SNR rule
  :data:`DEFAULT_RULE`. This is the controller's fallback.

Surrogate-greedy and rule decisions are priced at the UE's device, clock, SNR, loss rate, request size, battery and
latency budget (:mod:`serve_deployments.split_pricing`). Paths come only from :class:`PolicySpec`, i.e. from the
server's own configuration; a :class:`~serve_deployments.split_schema.UEState` names no file. Everything a decision
needs is loaded (and, for the surrogate, predicted on an SNR grid) when the policy is built, so ``decide`` does no
file IO.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgesplit.cost import ModelProfile
from edgesplit.reward import RewardConfig, reward_preset
from serve_deployments.split_pricing import (
    SNR_RANGE_DB,
    SNR_STEP_DB,
    Pricer,
    make_setting,
    rounded_loss,
    rounded_snr,
    warm_grid,
)
from serve_deployments.split_schema import ENCODING_WIDTHS, SplitDecision, UEState

DEFAULT_RULE = ((10.0, 0.5), (20.0, 2 / 15))
"""Built-in rule: (SNR threshold in dB, k / L) used from each threshold up; below the first, k = L (nothing
crosses a poor link). On the 30-layer built-in: k = 30 below 10 dB, 15 from 10 dB, 4 from 20 dB."""
RULE_VERSION = "rule:builtin-v1"
LOW_BATTERY = 0.2
"""Below this state of charge the built-in rule takes the least-UE-energy split at or below its choice."""
QUALITY_COLUMNS = ("log_ppl_ratio", "kl_nats", "top1_agreement")


class ServingPolicy(Protocol):
    """What the controller calls."""

    kind: str
    version: str
    num_layers: int

    def decide(self, state: UEState) -> SplitDecision: ...


@lru_cache(maxsize=16)
def light_profile(model: str) -> ModelProfile:
    """The cost profile of ``model`` from its config alone: a built-in that is not converted yet is described from
    its GGUF header (no weights loaded or converted); local directories and ``synthetic-8l`` as in training."""
    from edgesplit.models.builtin import BUILTINS, cache_root
    from surrogate.dataset import model_profile

    cached = cache_root() / "models" / model
    if model not in BUILTINS or (cached / "config.json").is_file():
        return model_profile(model)
    import importlib.util

    from transformers import AutoConfig

    spec = BUILTINS[model]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ValueError(f"built-in model {model!r} needs {spec.distribution!r}; install it with: {spec.install}")
    package = Path(next(iter(found.submodule_search_locations)))
    return ModelProfile.from_config(AutoConfig.from_pretrained(package, gguf_file=spec.gguf_file))


def encoding_for(k: int, bits: int) -> tuple[str, int | None]:
    """The ActivationPacket encoding that carries ``bits``-bit elements (the narrowest wide enough; token ids at
    ``k = 0``) and the bits reported with it."""
    if k == 0:
        return "token_ids", None
    name = next(n for n in ("int4", "int8", "float16", "float32") if ENCODING_WIDTHS[n] >= min(bits, 32))
    return name, min(bits, 32)


def policy_files(kind: str, path: Path) -> list[Path]:
    """The files a policy of ``kind`` reads from ``path`` (what its version hashes); ValueError when one is missing."""
    names = {"rllib": ("policy.json", "policy.safetensors"), "surrogate_greedy": ("surrogate.json",
                                                                                   "weights.safetensors")}
    if kind == "co_opt":
        from serve_deployments.co_opt_policy import co_opt_files

        return co_opt_files(path)
    if kind == "rule":
        files = [path] if path.is_file() else sorted(path.rglob("cells.parquet"))
        if not files:
            raise ValueError(f"{path} holds no cells.parquet (write one with `edgesplit profile`)")
        return files
    missing = [n for n in names[kind] if not (path / n).is_file()]
    if missing:
        raise ValueError(f"{path} is not a {kind} policy directory: {', '.join(missing)} missing")
    return [path / n for n in names[kind]]


def content_version(kind: str, path: Path) -> str:
    """``kind:`` + the first 12 hex digits of the sha256 over the policy's files (names and bytes)."""
    digest = hashlib.sha256()
    for file in policy_files(kind, path):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return f"{kind}:{digest.hexdigest()[:12]}"


class PolicySpec(BaseModel):
    """Which policy the controller serves (from the server's config — Serve's ``user_config`` — never a request)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["rllib", "surrogate_greedy", "rule", "co_opt"]
    """An exported RLlib policy, the surrogate's greedy choice, the rule (table or built-in), or the joint optimiser
    (a pruning sweep table, its variants in ``co_opt.json`` beside it: :mod:`serve_deployments.co_opt_policy`)."""
    path: str | None = None
    """Server-side path: an export directory (rllib), a surrogate checkpoint (surrogate_greedy), or a profile
    ``cells.parquet`` / run directory (rule; None: the built-in rule). Must exist; resolved to an absolute path."""
    version: str = Field("", max_length=128)
    """Reported with every decision; empty: ``kind:`` + a content hash of the files (:func:`content_version`)."""
    model: str | None = None
    """Model whose split is chosen (built-in name, local directory, ``synthetic-8l``); None: the controller's."""
    reward: str | None = None
    """Reward preset of surrogate_greedy / rule; None: the surrogate checkpoint's own reward, else ``paper``."""
    channel: Literal["awgn", "digital"] = "awgn"
    """Channel kind a surrogate is queried at / a table's rows are taken from."""
    bits: int = Field(8, ge=1, le=16)
    """Quantiser bits a surrogate is queried at on a digital channel (tables offer their own)."""
    modulation: str = "qpsk"
    """Modulation of a digital channel."""

    @model_validator(mode="after")
    def _check(self) -> PolicySpec:
        if self.reward is not None:
            reward_preset(self.reward)
        if self.path is None:
            if self.kind != "rule":
                raise ValueError(f"a {self.kind} policy needs a path (a server-side directory)")
            self.version = self.version or RULE_VERSION
            return self
        path = Path(self.path).expanduser().resolve()
        if not path.exists():
            raise ValueError(f"policy path {path} does not exist")
        self.path = str(path)
        self.version = self.version or content_version(self.kind, path)
        return self


def _decision(policy: ServingPolicy, k: int, bits: int, reason: str) -> SplitDecision:
    encoding, bits = encoding_for(k, bits)
    return SplitDecision(k=int(k), encoding=encoding, bits=bits, policy=policy.kind, policy_version=policy.version,
                         reason=reason[:240], num_layers=policy.num_layers)


class ExportedRLPolicy:
    """A policy exported by ``edgesplit export-policy``, greedy, in pure torch.

    It sees what :class:`~rllib_env.split_env.SplitEnv` showed it in training, rebuilt from the UE's report with the
    export's ``env_config`` (``full`` observation, in SplitEnv's order and scaling, clipped to ±10):

    - instantaneous SNR: the newest ``snr_db_history`` entry, ``(snr − 15) / 15``;
    - reported SNR: that SNR snapped to the config's ``snr_grid_db`` (or rounded to ``snr_resolution_db``);
    - the ``history`` previous SNRs, most recent first: ``snr_db_history[-2::-1]``, padded with the oldest entry
      (as SplitEnv's reset fills the history with its first SNR);
    - ``loss_rate``; the dropout probability: 0 unless ``channel_kind="dropout"``, then the median of
      ``p_values`` (the UE does not report it);
    - CPU clock / 3.2 GHz: ``cpu_freq_hz``, or the device preset's default clock;
    - background load: 0 (not reported);
    - previous split / L: ``current_k``, or the highest allowed split (SplitEnv's reset value);
    - previous bits / 32 (with ``bits_options``): the widest option (SplitEnv's reset value);
    - with ``switching``, the context fraction ``context_tokens / (prompt_tokens + episode_steps · tokens_per_block)``:
      the report's ``context_tokens`` (0, not reported: ``prompt_tokens``, the first block's), clipped to [0, 1] —
      the range training saw.

    The ``paper`` observation is (reported SNR — or ``p`` for dropout —, previous split / L). Relative actions move
    ``current_k``. Battery and latency budget are not in the observation, so this policy cannot honour them.
    """

    kind = "rllib"

    def __init__(self, path: str | Path, version: str | None = None) -> None:
        from rllib_env.export import load_exported
        from rllib_env.split_env import SplitEnvConfig

        self.net = load_exported(path)
        self.config = SplitEnvConfig.from_dict(self.net.spec["env_config"])
        self.num_layers = int(self.net.spec["num_layers"])
        self.version = version or content_version("rllib", Path(path))
        c = self.config
        self.low_k, self.high_k = reward_preset(c.reward, **c.reward_overrides).split_range(self.num_layers)
        self.p = float(np.median(c.p_values)) if c.channel_kind == "dropout" else 0.0
        size = (2 if c.observation == "paper" else 7 + c.history + (c.bits_options is not None)) + c.switching
        if size != self.net.obs_dim:
            raise ValueError(f"the export's env_config gives {size} observations, its net reads {self.net.obs_dim}")

    def reported_snr(self, snr_db: float) -> float:
        """SplitEnv's reward SNR for an instantaneous SNR (grid snap or rounding)."""
        from rllib_env.split_env import snap

        c = self.config
        if c.snr_grid_db is not None:
            return snap(snr_db, c.snr_grid_db)
        return float(np.clip(round(snr_db / c.snr_resolution_db) * c.snr_resolution_db, -30.0, 60.0))

    def prev_k(self, state: UEState) -> int:
        """The split the observation calls previous (``current_k`` or SplitEnv's reset value)."""
        return self.high_k if state.current_k is None else state.current_k

    def observation(self, state: UEState) -> np.ndarray:
        """The SplitEnv observation of ``state`` (see the class docstring)."""
        from rllib_env.split_env import F_SCALE_HZ, OBS_BOUND

        c, snr = self.config, state.snr_db
        reported, prev = (self.reported_snr(snr) - 15.0) / 15.0, self.prev_k(state) / self.num_layers
        if c.observation == "paper":
            values = [self.p if c.channel_kind == "dropout" else reported, prev]
        else:
            past = state.snr_db_history[-2::-1] or [snr]
            history = [(s - 15.0) / 15.0 for s in (past + [past[-1]] * c.history)[:c.history]]
            values = [(snr - 15.0) / 15.0, reported, *history, state.loss_rate, self.p, state.f_hz / F_SCALE_HZ, 0.0,
                      prev]
            if c.bits_options is not None:
                values.append(c.bits_options[-1] / 32.0)
        if c.switching:
            context = state.context_tokens or c.prompt_tokens
            values.append(min(context / (c.prompt_tokens + c.episode_steps * c.tokens_per_block), 1.0))
        return np.clip(np.asarray(values, dtype=np.float32), -OBS_BOUND, OBS_BOUND)

    def decide(self, state: UEState) -> SplitDecision:
        c, action = self.config, self.net.act(self.observation(state))
        if c.action == "relative":
            move = int(action) - c.max_move
            k, bits = int(np.clip(self.prev_k(state) + move, self.low_k, self.high_k)), c.bits
            what = f"move {move:+d} from k={self.prev_k(state)}"
        elif c.bits_options is not None:
            k, bits = int(action[0]), c.bits_options[int(action[1])]
            what = f"action ({k}, {bits} bits)"
        else:
            k, bits, what = int(action), c.bits, f"action {int(action)}"
        bits = bits if c.channel_kind == "digital" else 32
        return _decision(self, k, bits, f"rllib greedy {what} at snr {state.snr_db:.1f} dB -> k={k}")


class SurrogateGreedyPolicy:
    """The split with the highest predicted reward: the surrogate's quality plus the priced cost part.

    The surrogate is queried at the newest SNR rounded to 0.1 dB (clipped to −30..60 dB) and the loss rate rounded
    to 0.01; predictions at zero loss are made for the whole SNR range when the policy is built, others on first
    use (then kept, up to :data:`QUALITY_CACHE` settings).
    """

    kind = "surrogate_greedy"
    QUALITY_CACHE = 65_536

    def __init__(self, path: str | Path, model: str, reward: str | None = None, channel: str = "awgn",
                 bits: int = 8, modulation: str = "qpsk", version: str | None = None) -> None:
        from rllib_env.sources import SurrogateRewardSource
        from surrogate.checkpoint import load_surrogate, read_meta
        from surrogate.dataset import ModelDescriptor

        path = Path(path)
        profile = light_profile(model)
        recorded = read_meta(path).get("extra", {}).get("reward")
        config = reward_preset(reward) if reward else RewardConfig.from_dict(recorded) if recorded else \
            reward_preset("paper")
        self.num_layers, self.version = profile.num_layers, version or content_version(self.kind, path)
        self.channel, self.bits, self.modulation = channel, (bits if channel == "digital" else 32), modulation
        self.pricer = Pricer(config, profile)
        self.source = SurrogateRewardSource(load_surrogate(path), ModelDescriptor.from_profile(model, profile))
        self.ks = np.arange(self.num_layers + 1)
        count = int(round((SNR_RANGE_DB[1] - SNR_RANGE_DB[0]) / SNR_STEP_DB)) + 1
        self._quality: dict[tuple[float, float], np.ndarray] = {}
        self._fill([(rounded_snr(SNR_RANGE_DB[0] + i * SNR_STEP_DB), 0.0) for i in range(count)])
        self.pricer.warm(warm_grid(), channel, self.bits, modulation)

    def _fill(self, keys: list[tuple[float, float]]) -> None:
        settings = [make_setting(self.channel, snr, loss, self.bits, self.modulation) for snr, loss in keys]
        cells = [(int(k), setting) for setting in settings for k in self.ks]
        values = self.source.predict(cells).reshape(len(keys), len(self.ks), -1)
        if len(self._quality) + len(keys) > self.QUALITY_CACHE:
            self._quality = {key: q for key, q in self._quality.items() if key[1] == 0.0}
        self._quality.update(zip(keys, values, strict=True))

    def quality(self, state: UEState) -> np.ndarray:
        """``[L + 1, 3]`` predicted (log PPL ratio, KL, top-1) of every split at the state's rounded SNR and loss."""
        key = (rounded_snr(state.snr_db), rounded_loss(state.loss_rate))
        if key not in self._quality:
            self._fill([key])
        return self._quality[key]

    def decide(self, state: UEState) -> SplitDecision:
        bits = np.full(len(self.ks), self.bits)
        choice = self.pricer.choose(self.ks, bits, self.quality(state), state, self.channel, self.modulation)
        k = int(self.ks[choice.index])
        note = f"; {choice.note}" if choice.note else ""
        return _decision(self, k, self.bits, f"surrogate argmax reward {choice.reward:.3g} at snr "
                                             f"{state.snr_db:.1f} dB ({choice.feasible} feasible){note} -> k={k}")


def read_profile_table(path: str | Path) -> pd.DataFrame:
    """A profile's cells (one ``cells.parquet`` or every one under a directory), with ``log_ppl_ratio``."""
    path = Path(path)
    frame = pd.concat([pd.read_parquet(p) for p in policy_files("rule", path)], ignore_index=True)
    missing = {"k", "num_layers", "channel", "snr_db", "bits_per_element"} - set(frame.columns)
    if missing or not ({"log_ppl_ratio"} <= set(frame.columns) or {"perplexity", "clean_perplexity"} <= set(frame)):
        raise ValueError(f"{path} is not a profile table: needs k, num_layers, channel, snr_db, bits_per_element and "
                         f"perplexity + clean_perplexity (missing {sorted(missing) or 'perplexity'})")
    if "log_ppl_ratio" not in frame.columns:
        frame["log_ppl_ratio"] = np.log(frame["perplexity"] / frame["clean_perplexity"])
    return frame


class RuleTablePolicy:
    """The rule fallback: a profile table's best split for the reported SNR, or the built-in SNR rule.

    With a table, the rows of ``channel`` (and ``modulation`` for digital) are averaged over seeds per (SNR, bits,
    k); a decision takes the table SNR nearest the UE's newest SNR (the lower one on a tie) and picks the (k, bits)
    with the best measured quality plus the priced cost part, within the latency budget and with the battery's
    energy penalty. Without a table, :data:`DEFAULT_RULE` picks k from the SNR; the split range, memory and the
    latency budget then move it to the nearest allowed split, and a battery below :data:`LOW_BATTERY` takes the
    least-UE-energy split at or below it.
    """

    kind = "rule"

    def __init__(self, profile: ModelProfile, config: RewardConfig, table: pd.DataFrame | None = None,
                 channel: str = "awgn", modulation: str = "qpsk", version: str = RULE_VERSION) -> None:
        self.num_layers, self.version, self.channel, self.modulation = profile.num_layers, version, channel, modulation
        self.pricer = Pricer(config, profile)
        self.grid: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if table is not None:
            self._load(table)
        for bits in sorted({int(b) for _, widths, _ in self.grid.values() for b in widths}) or [32]:
            self.pricer.warm(warm_grid(), channel, bits, modulation)

    def _load(self, table: pd.DataFrame) -> None:
        layers = set(table["num_layers"].astype(int))
        if layers != {self.num_layers}:
            raise ValueError(f"the profile table describes {sorted(layers)} layers, the model has {self.num_layers}")
        rows = table[table["channel"] == self.channel]
        if self.channel == "digital" and "modulation" in rows.columns:
            rows = rows[rows["modulation"] == self.modulation]
        if rows.empty:
            raise ValueError(f"the profile table has no {self.channel} rows"
                             f"{' with ' + self.modulation if self.channel == 'digital' else ''}; it holds "
                             f"{sorted(set(table['channel']))}")
        defaults = {"kl_nats": 0.0, "top1_agreement": 1.0}
        rows = rows.assign(**{c: v for c, v in defaults.items() if c not in rows.columns})
        means = rows.groupby(["snr_db", "bits_per_element", "k"])[list(QUALITY_COLUMNS)].mean().reset_index()
        for snr, group in means.groupby("snr_db"):
            self.grid[float(snr)] = (group["k"].to_numpy(int), group["bits_per_element"].to_numpy(int),
                                     group[list(QUALITY_COLUMNS)].to_numpy(float))
        self._snrs = np.array(sorted(self.grid))

    def decide(self, state: UEState) -> SplitDecision:
        return self._from_table(state) if self.grid else self._from_rule(state)

    def _from_table(self, state: UEState) -> SplitDecision:
        snr = float(self._snrs[int(np.argmin(np.abs(self._snrs - state.snr_db)))])
        ks, bits, quality = self.grid[snr]
        choice = self.pricer.choose(ks, bits, quality, state, self.channel, self.modulation)
        k, b = int(ks[choice.index]), int(bits[choice.index])
        note = f"; {choice.note}" if choice.note else ""
        return _decision(self, k, b, f"profile table at {snr:g} dB (snr {state.snr_db:.1f} dB): best measured "
                                     f"quality+cost {choice.reward:.3g}{note} -> k={k}")

    def _from_rule(self, state: UEState) -> SplitDecision:
        snr, k, why = state.snr_db, self.num_layers, f"snr {state.snr_db:.1f} dB < {DEFAULT_RULE[0][0]:g} dB"
        for threshold, share in DEFAULT_RULE:
            if snr >= threshold:
                k, why = int(round(share * self.num_layers)), f"snr {snr:.1f} dB >= {threshold:g} dB threshold"
        chosen, note = self.pricer.nearest_feasible(k, state)
        if state.battery is not None and state.battery < LOW_BATTERY:
            chosen, note = self.pricer.least_energy(chosen, state), f"battery {state.battery:.2f} < {LOW_BATTERY:g}"
        tail = f"; {note} -> k={chosen}" if chosen != k or note else ""
        return _decision(self, chosen, 32, f"{why} -> k={k}{tail}")


def load_policy(spec: PolicySpec) -> ServingPolicy:
    """Build the policy a spec names, fully (weights read, predictions made) before returning it."""
    model = spec.model or "smollm2-135m"
    if spec.kind == "rllib":
        return ExportedRLPolicy(spec.path, spec.version)
    if spec.kind == "surrogate_greedy":
        return SurrogateGreedyPolicy(spec.path, model, spec.reward, spec.channel, spec.bits, spec.modulation,
                                     spec.version)
    if spec.kind == "co_opt":
        from serve_deployments.co_opt_policy import CoOptPolicy

        return CoOptPolicy.from_path(spec.path, model, spec.reward, spec.version)
    table = read_profile_table(spec.path) if spec.path is not None else None
    return RuleTablePolicy(light_profile(model), reward_preset(spec.reward or "paper"), table, spec.channel,
                           spec.modulation, spec.version)


__all__ = ["DEFAULT_RULE", "LOW_BATTERY", "RULE_VERSION", "ExportedRLPolicy", "PolicySpec", "RuleTablePolicy",
           "ServingPolicy", "SurrogateGreedyPolicy", "content_version", "encoding_for", "light_profile",
           "load_policy", "policy_files", "read_profile_table"]
