"""Save and load a trained :class:`~surrogate.model.QualitySurrogate`: safetensors weights + a JSON file, no pickle.

A checkpoint is a directory with ``weights.safetensors`` (the ensemble's stacked member weights) and
``surrogate.json`` (format version, ensemble config, feature names, feature scaling, target codec and transforms,
observation noise, calibrated interval scale, the sensitivity profiles the features use, and free-form ``extra``
such as the reward config and the data it was trained on). Loading
checks the feature and target layout against this code, so an incompatible checkpoint fails with a clear message
instead of predicting nonsense.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from surrogate.dataset import TARGETS
from surrogate.ensemble import EnsembleConfig
from surrogate.features import FeatureScaler, feature_names
from surrogate.model import TRANSFORMS, QualitySurrogate, TargetCodec
from surrogate.sensitivity import SensitivityProfile

FORMAT = "edgesplit-quality-surrogate"
VERSION = 2
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "surrogate.json"


def save_surrogate(surrogate: Any, path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``surrogate`` to the directory ``path`` (created); returns it. Only the deep ensemble can be saved."""
    if not isinstance(surrogate, QualitySurrogate):
        raise ValueError(f"only the deep-ensemble surrogate can be checkpointed (safetensors + JSON); got a "
                         f"{getattr(surrogate, 'kind', type(surrogate).__name__)!r} surrogate, whose scikit-learn "
                         f"or ad-hoc state would need pickle")
    if surrogate.ensemble is None or surrogate.z_noise is None:
        raise ValueError("the surrogate is not trained; nothing to save")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(surrogate.ensemble.state_dict(), str(path / WEIGHTS_FILE))
    meta = {"format": FORMAT, "version": VERSION, "config": surrogate.config.to_dict(),
            "monotone": surrogate.use_monotone, "features": list(surrogate.features), "targets": list(TARGETS),
            "transforms": {name: list(TRANSFORMS[name]) for name in TARGETS}, "scaler": surrogate.scaler.to_dict(),
            "codec": surrogate.codec.to_dict(), "z_noise": surrogate.z_noise.tolist(),
            "interval_scale": np.asarray(surrogate.interval_scale, dtype=float).tolist(),
            "sensitivity": {name: p.to_dict() for name, p in (surrogate.sensitivity or {}).items()},
            "trained_on": surrogate.trained_on, "extra": extra or {}}
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON half of a checkpoint, checked for format and layout."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ValueError(f"{path} is not a surrogate checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((path / CONFIG_FILE).read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r} v{meta.get('version')}; "
                         f"this code reads {FORMAT} v{VERSION}")
    expected = {"features": list(feature_names(bool(meta.get("sensitivity")))), "targets": list(TARGETS),
                "transforms": {name: list(TRANSFORMS[name]) for name in TARGETS}}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(f"{path}: checkpoint {key} {meta.get(key)} differ from this code's {value}")
    return meta


def load_surrogate(path: Path, device: str = "cpu") -> QualitySurrogate:
    """Rebuild the surrogate saved by :func:`save_surrogate` (predictions are identical) on ``device``."""
    meta = read_meta(path)
    sensitivity = {name: SensitivityProfile.from_dict(data) for name, data in meta["sensitivity"].items()}
    surrogate = QualitySurrogate(EnsembleConfig.from_dict(meta["config"]), monotone=meta["monotone"],
                                 scaler=FeatureScaler.from_dict(meta["scaler"]), sensitivity=sensitivity or None,
                                 device=device)
    surrogate.codec = TargetCodec.from_dict(meta["codec"])
    surrogate.ensemble = surrogate.new_ensemble()
    surrogate.ensemble.load_state_dict(load_file(str(Path(path) / WEIGHTS_FILE)))
    surrogate.z_noise = np.asarray(meta["z_noise"], dtype=float)
    surrogate.interval_scale = np.asarray(meta["interval_scale"], dtype=float)
    surrogate.trained_on = int(meta["trained_on"])
    return surrogate


__all__ = ["CONFIG_FILE", "FORMAT", "VERSION", "WEIGHTS_FILE", "load_surrogate", "read_meta", "save_surrogate"]
