"""Cells as tables, and the feature vector a surrogate sees for each cell.

A *cell* is one split ``k`` of one model under one channel setting (and one seed of its random draws). Cells travel
as pandas rows with the column names of the profiler's ``cells.parquet`` (``model``, ``num_layers``, ``k``,
``channel``, ``snr_db``, ``p``, ``bits_per_element``, ``modulation``, ``encoding``, ``fading_gain``, ``seed``) plus
two model descriptors (``hidden_size``, ``num_params``; :func:`surrogate.descriptors.add_descriptors` fills them in
for tables that lack them) and an optional ``loss_rate``.

Features (:data:`FEATURES`, in order): ``k / L``; the instantaneous SNR in dB (``snr_db + 10·log10(fading_gain)``,
:data:`NOISELESS_SNR_DB` for the kinds that add no noise: ideal and dropout); the dropout probability ``p``; the
fragment loss rate; bits per element / 32; modulation bits per symbol / 6 (0 for analog kinds); the channel kind
one-hot; and the model descriptors ``log L``, ``log hidden_size``, ``log num_params``. Raw values are checked
against :data:`RANGES` before anything is computed, so a surrogate is never silently asked about a cell it cannot
describe.

Coded cells (the 5G NR link, :mod:`edgesplit.channel.nr`) carry the columns of their setting's NR options
(:data:`CODED_COLUMNS`; defaults filled in, null for the other kinds). What reaches the activations of a coded cell
is the ``bits``-bit quantiser (``bits_frac``) and the elements of the transport blocks HARQ gives up on, set to 0
(CRC-detected: no bit errors, so ``modulation_frac`` is 0). The ``loss_rate`` feature of a coded cell is therefore
the NR cost model's expected TB erasure rate after HARQ at the cell's instantaneous SNR
(:func:`coded_erasure_rate`: the MCS link adaptation picks, chase combining over ``harq_transmissions``), the
physical loss the activations see (its ``loss_rate`` column, an ARQ'd loss above the PHY, changes only the cost).
The feature layout gained ``kind_coded`` with this kind: checkpoints saved before it no longer match (they say so).

With sensitivity profiles (:mod:`surrogate.sensitivity`, one per model, measured once from a clean pass) a last
feature, :data:`SENSITIVITY_FEATURE`, is appended: log10 of the cell's first-order KL — the physics of the split
point and the link in one number, which lines cells of different splits up on one curve. :func:`feature_names`
gives the layout for either case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edgesplit.channel import MODULATIONS
from edgesplit.scenario import CHANNEL_KINDS, CODED_DEFAULTS, ChannelSetting

if TYPE_CHECKING:
    from surrogate.sensitivity import SensitivityProfile

NOISELESS_SNR_DB = 40.0
"""SNR feature of the kinds that add no Gaussian noise (ideal, dropout)."""
FEATURES = ("k_frac", "snr_db", "p", "loss_rate", "bits_frac", "modulation_frac", *(f"kind_{k}" for k in CHANNEL_KINDS),
            "log_num_layers", "log_hidden_size", "log_num_params")
SENSITIVITY_FEATURE = "log10_linearised_kl"
"""The feature a sensitivity profile adds (log10 of nats per token)."""
CODED_COLUMNS = tuple(CODED_DEFAULTS)
"""The coded link's option columns (the :class:`~edgesplit.scenario.ChannelSetting` fields of that name)."""
CELL_COLUMNS = ("model", "num_layers", "hidden_size", "num_params", "k", "channel", "snr_db", "p", "bits_per_element",
                "modulation", "encoding", "fading_gain", "loss_rate", "seed", *CODED_COLUMNS)
"""Columns that describe a cell (inputs); quality columns are added by evaluations."""
RANGES = {"snr_db": (-30.0, 60.0), "p": (0.0, 0.999), "loss_rate": (0.0, 0.999), "bits_per_element": (1, 32),
          "fading_gain": (1e-6, 1e3), "num_layers": (1, 1000), "hidden_size": (1, 1_000_000),
          "num_params": (1, 1e13)}
"""Accepted range of each raw input (inclusive)."""


def _check_range(frame: pd.DataFrame, column: str) -> None:
    low, high = RANGES[column]
    values = frame[column].to_numpy(dtype=float)
    bad = ~((values >= low) & (values <= high))
    if bad.any():
        raise ValueError(f"{column}={values[bad][0]:g} is out of range for the surrogate; accepted: {low:g}..{high:g}")


def validate_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The cell columns of ``frame`` with defaults filled in; ValueError naming the first bad value."""
    missing = [c for c in ("num_layers", "hidden_size", "num_params", "k", "channel") if c not in frame.columns]
    if missing:
        raise ValueError(f"cells are missing column(s) {missing}; needed: {', '.join(CELL_COLUMNS)}")
    cells = frame.copy()
    defaults = {"model": "unknown", "snr_db": NOISELESS_SNR_DB, "p": 0.0, "bits_per_element": 32, "modulation": None,
                "encoding": "float32", "fading_gain": 1.0, "loss_rate": 0.0, "seed": 0}
    for column, value in defaults.items():
        if column not in cells.columns:
            cells[column] = value
    cells["p"] = cells["p"].fillna(0.0)
    unknown = sorted(set(cells["channel"]) - set(CHANNEL_KINDS))
    if unknown:
        raise ValueError(f"unknown channel kind {unknown[0]!r}; accepted: {', '.join(CHANNEL_KINDS)}")
    digital = cells["channel"] == "digital"
    bad_mod = sorted(set(cells.loc[digital, "modulation"].astype(str)) - set(MODULATIONS))
    if bad_mod:
        raise ValueError(f"unknown modulation {bad_mod[0]!r}; accepted: {', '.join(MODULATIONS)}")
    for column in RANGES:
        _check_range(cells, column)
    _normalise_coded(cells)
    k, layers = cells["k"].to_numpy(dtype=float), cells["num_layers"].to_numpy(dtype=float)
    bad = (k < 0) | (k > layers) | (k != np.round(k))
    if bad.any():
        raise ValueError(f"split k={k[bad][0]:g} is out of range; accepted: integers 0..num_layers "
                         f"({layers[bad][0]:g})")
    return cells


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalise_coded(cells: pd.DataFrame) -> None:
    """Coded option columns in place: the row's value (default when missing) for coded rows, None for the others,
    as plain Python values, so keys built from them read alike whichever table or query they come from; every
    distinct coded setting is validated by :class:`~edgesplit.scenario.ChannelSetting` (its messages)."""
    coded = (cells["channel"] == "coded").to_numpy()
    for name, default in CODED_DEFAULTS.items():
        column = cells[name].tolist() if name in cells.columns else [None] * len(cells)
        values = [_coded_value(name, default, value) if is_coded else None
                  for value, is_coded in zip(column, coded, strict=True)]
        cells[name] = pd.Series(values, index=cells.index, dtype=object)
    for row in _distinct_coded(cells).values():
        setting_of(row)


def _coded_value(name: str, default: object, value: object) -> object:
    if _missing(value):
        return default
    if isinstance(default, int) and not (isinstance(value, int | float | np.number) and float(value).is_integer()):
        raise ValueError(f"{name}={value!r} must be an integer for a coded cell")
    return type(default)(value)


_CODED_KEY = ("snr_db", "fading_gain", "bits_per_element", *CODED_DEFAULTS)


def _distinct_coded(cells: pd.DataFrame) -> dict[tuple, dict]:
    """One row dict per distinct coded setting of validated ``cells`` (keyed by the columns that define it)."""
    rows = cells.loc[(cells["channel"] == "coded").to_numpy()].to_dict("records")
    return {tuple(row[c] for c in _CODED_KEY): row for row in rows}


def coded_erasure_rate(frame: pd.DataFrame) -> np.ndarray:
    """Per cell: the NR cost model's expected TB erasure rate after HARQ at its instantaneous SNR for coded cells
    (``residual_tb_loss`` of :func:`edgesplit.channel.nr.nr_uplink_cost`; needs Sionna), 0 for the other kinds."""
    return _erasure_rate(validate_cells(frame))


def _erasure_rate(cells: pd.DataFrame) -> np.ndarray:
    coded = (cells["channel"] == "coded").to_numpy()
    if not coded.any():
        return np.zeros(len(cells))
    from edgesplit.channel.nr import nr_uplink_cost

    rates = {}
    for key, row in _distinct_coded(cells).items():
        setting = setting_of(row)
        rates[key] = nr_uplink_cost(1, setting.state().snr_db, setting.nr_link()).residual_tb_loss
    keys = zip(*(cells[c].tolist() for c in _CODED_KEY), strict=True)
    return np.array([rates[key] if is_coded else 0.0 for key, is_coded in zip(keys, coded, strict=True)])


def feature_names(sensitivity: bool) -> tuple[str, ...]:
    """The feature layout: :data:`FEATURES`, plus :data:`SENSITIVITY_FEATURE` when profiles are used."""
    return (*FEATURES, SENSITIVITY_FEATURE) if sensitivity else FEATURES


def feature_matrix(frame: pd.DataFrame, sensitivity: Mapping[str, SensitivityProfile] | None = None) -> np.ndarray:
    """``[cells, len(feature_names(bool(sensitivity)))]`` float64 raw (unscaled) features of validated cells.

    ``sensitivity`` maps model names to their profiles; every model of ``frame`` needs one (ValueError otherwise).
    None or an empty mapping gives the base features.
    """
    cells = validate_cells(frame)
    base = _base_features(cells)
    if not sensitivity:
        return base
    return np.concatenate([base, np.log10(linearised_kl_of(cells, sensitivity))[:, None]], axis=1)


def linearised_kl_of(frame: pd.DataFrame, sensitivity: Mapping[str, SensitivityProfile]) -> np.ndarray:
    """First-order KL of every cell from its model's profile (:func:`surrogate.sensitivity.linearised_kl`)."""
    from edgesplit.channel.modulation import ber_awgn
    from surrogate.sensitivity import linearised_kl

    cells = validate_cells(frame)
    out = np.empty(len(cells))
    snr = cells["snr_db"].to_numpy(dtype=float) + 10.0 * np.log10(cells["fading_gain"].to_numpy(dtype=float))
    for model, rows in cells.groupby("model", sort=False).indices.items():
        profile = sensitivity.get(model)
        if profile is None:
            raise ValueError(f"no sensitivity profile for model {model!r} (have: {sorted(sensitivity) or 'none'}); "
                             f"measure one (surrogate.sensitivity.measure_sensitivity) or use a surrogate without")
        part = cells.iloc[rows]
        layers = part["num_layers"].to_numpy(dtype=int)
        if (layers != profile.num_layers).any():
            raise ValueError(f"cells of {model!r} have num_layers {int(layers[0])}, its sensitivity profile "
                             f"{profile.num_layers}")
        kind = part["channel"].to_numpy()
        ber = np.array([float(ber_awgn(str(m), s)) if c == "digital" else 0.0
                        for m, s, c in zip(part["modulation"], snr[rows], kind, strict=True)])
        loss = np.where(kind == "coded", _erasure_rate(part), part["loss_rate"].to_numpy(dtype=float))
        out[rows] = linearised_kl(profile, part["k"].to_numpy(), kind, snr[rows], part["p"].to_numpy(dtype=float),
                                  part["bits_per_element"].to_numpy(), ber, loss,
                                  part["encoding"].astype(str).to_numpy())
    return out


def _base_features(cells: pd.DataFrame) -> np.ndarray:
    kind = cells["channel"].to_numpy()
    noisy = np.isin(kind, ("awgn", "digital", "coded"))
    loss = np.where(kind == "coded", _erasure_rate(cells), cells["loss_rate"].to_numpy(dtype=float))
    snr = cells["snr_db"].to_numpy(dtype=float) + 10.0 * np.log10(cells["fading_gain"].to_numpy(dtype=float))
    modulation = np.array([MODULATIONS.get(str(m), 0) if d else 0 for m, d in zip(cells["modulation"], kind ==
                                                                                    "digital", strict=True)])
    columns = [cells["k"].to_numpy(dtype=float) / cells["num_layers"].to_numpy(dtype=float),
               np.where(noisy, np.clip(snr, *RANGES["snr_db"]), NOISELESS_SNR_DB),
               np.where(kind == "dropout", cells["p"].to_numpy(dtype=float), 0.0), loss,
               cells["bits_per_element"].to_numpy(dtype=float) / 32.0, modulation / 6.0,
               *((kind == name).astype(float) for name in CHANNEL_KINDS),
               np.log(cells["num_layers"].to_numpy(dtype=float)), np.log(cells["hidden_size"].to_numpy(dtype=float)),
               np.log(cells["num_params"].to_numpy(dtype=float))]
    return np.stack(columns, axis=1)


@dataclass
class FeatureScaler:
    """Standardisation of the feature columns (constant columns are centred and left unscaled)."""

    mean: np.ndarray
    """Per-feature mean."""
    scale: np.ndarray
    """Per-feature standard deviation (1 where a column is constant)."""

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureScaler:
        """From raw features (the candidate pool may be used: no labels are involved)."""
        std = features.std(axis=0)
        return cls(mean=features.mean(axis=0), scale=np.where(std > 1e-8, std, 1.0))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardised features."""
        if features.ndim != 2 or features.shape[1] != len(self.mean):
            raise ValueError(f"expected features of shape [n, {len(self.mean)}], got {features.shape}")
        return (features - self.mean) / self.scale

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready dict."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> FeatureScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(mean=np.asarray(data["mean"], dtype=float), scale=np.asarray(data["scale"], dtype=float))


def lossless_mask(frame: pd.DataFrame) -> np.ndarray:
    """Cells whose quality equals the clean model's by construction (no LLM needed): ``k = 0`` (token ids cross
    losslessly), ``k = L`` (nothing crosses) and an ideal float32 link."""
    cells = validate_cells(frame)
    k, layers = cells["k"].to_numpy(), cells["num_layers"].to_numpy()
    ideal = (cells["channel"] == "ideal").to_numpy() & (cells["encoding"] == "float32").to_numpy()
    return (k == 0) | (k == layers) | ideal


STATE_COLUMNS = ("model", "channel", "snr_db", "p", "bits_per_element", "modulation", "encoding", "fading_gain",
                 "loss_rate", *CODED_COLUMNS)
"""Columns that identify a channel state (and model): the split decision is made per state."""


def state_keys(frame: pd.DataFrame) -> np.ndarray:
    """One integer id per distinct channel state (seeds of a state without fading share it)."""
    return pd.factorize(row_keys(validate_cells(frame), STATE_COLUMNS))[0]


def row_keys(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> pd.Index:
    """One string per row joining the values of ``columns`` (NaN and None spelt consistently)."""
    return pd.Index(["|".join(map(str, row)) for row in frame[list(columns)].itertuples(index=False)])


def setting_of(row: pd.Series | dict) -> ChannelSetting:
    """The :class:`ChannelSetting` a cell row describes (its fading gain included)."""
    get = row.get
    kind = str(get("channel"))
    bits = int(get("bits_per_element", 8)) if kind in ("digital", "coded") else 8
    modulation = str(get("modulation")) if kind == "digital" else "qpsk"
    p = get("p", 0.0)
    encoding = get("encoding", "float32") or "float32"
    loss_rate = float(get("loss_rate", 0.0) or 0.0)
    coded = {} if kind != "coded" else {name: type(default)(default if _missing(get(name)) else get(name))
                                        for name, default in CODED_DEFAULTS.items()}
    return ChannelSetting(kind=kind, snr_db=float(get("snr_db", 30.0)), p=0.0 if p is None or math.isnan(p) else p,
                          bits=bits, modulation=modulation, loss_rate=loss_rate, encoding=str(encoding),
                          fading_gain=float(get("fading_gain", 1.0) or 1.0), **coded)


def settings_of(frame: pd.DataFrame) -> list[ChannelSetting]:
    """:func:`setting_of` for every row."""
    return [setting_of(row) for row in frame.to_dict("records")]


def setting_columns(setting: ChannelSetting) -> dict[str, object]:
    """The cell columns of a setting (inverse of :func:`setting_of`)."""
    return {"channel": setting.kind, "snr_db": float(setting.snr_db),
            "p": float(setting.p) if setting.kind == "dropout" else math.nan,
            "bits_per_element": setting.bits_per_element,
            "modulation": setting.modulation if setting.kind == "digital" else None, "encoding": setting.encoding,
            "fading_gain": float(setting.fading_gain), "loss_rate": float(setting.loss_rate),
            **{name: getattr(setting, name) if setting.kind == "coded" else None for name in CODED_COLUMNS}}


__all__ = ["CELL_COLUMNS", "CODED_COLUMNS", "FEATURES", "NOISELESS_SNR_DB", "RANGES", "SENSITIVITY_FEATURE",
           "STATE_COLUMNS", "FeatureScaler", "coded_erasure_rate", "feature_matrix", "feature_names",
           "linearised_kl_of", "lossless_mask", "row_keys", "setting_columns", "setting_of", "settings_of",
           "state_keys", "validate_cells"]
