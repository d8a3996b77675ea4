"""What a policy that spends no real evaluation can reach, on a pooled truth and on a single noise draw.

    .venv/bin/python benchmarks/mbrl_prior_limit.py [--truth runs/surrogate_truth_awgn3] [--traces 16]

For every grid setting of the truth (the SNRs the environment snaps to) the greedy oracle takes the best allowed
split under the measured quality; two policies that never measure a cell take the best split under a stand-in for
the *expected* quality: ``prior`` — the first-order KL of the sensitivity profile as the log-PPL ratio (what
the model-based loop's decisive design starts from), and ``measured-kl`` — the cell's measured KL as the log-PPL
ratio (the KL averages over the whole next-token distribution, so it carries little of one draw's luck). Each
setting is weighted by how often the benchmark's held-out traces visit it (``rllib_env.mbrl.setting_visits``, the
same moving-UE process and SNR grid as ``benchmarks/mbrl_vs_modelfree.py``), and the shares are of the oracle's
visit-weighted mean reward. Done twice: on the truth with its noise seeds pooled per cell
(:func:`surrogate.dataset.pool_seeds`) and on the first seed alone — the gap between the two is how much of the
single-draw oracle's reward is luck that no model can predict. Prints one line per setting and the shares; writes
nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rllib_env.evaluate import HELDOUT_SEED  # noqa: E402
from rllib_env.mbrl import setting_visits  # noqa: E402
from rllib_env.registry import describe  # noqa: E402
from rllib_env.sources import TableRewardSource, cell_frame, lossless  # noqa: E402
from rllib_env.split_env import DEFAULT_PROCESS, SplitEnv  # noqa: E402
from surrogate.dataset import load_cells, pool_seeds  # noqa: E402
from surrogate.features import linearised_kl_of  # noqa: E402
from surrogate.sensitivity import SensitivityProfile  # noqa: E402


def shares(table, sensitivity: dict, traces: int, label: str) -> dict[str, float]:
    """Visit-weighted mean reward of the oracle, the prior policy and the measured-KL policy; printed per setting."""
    model = str(table["model"].iloc[0])
    truth = TableRewardSource(table, describe(model))
    env = SplitEnv({"model": model, "reward": "paper", "snr_grid_db": list(truth.snr_grid_db),
                    "process": "gauss_markov", "process_params": DEFAULT_PROCESS, "episode_steps": 64}, source=truth)
    visits = setting_visits(env, traces, HELDOUT_SEED)
    reward_fn = env.book(env.device_state)
    ks = list(range(env.low_k, env.high_k + 1))
    totals = {"oracle": 0.0, "prior": 0.0, "measured-kl": 0.0}
    for setting, count in sorted(visits.items(), key=lambda item: item[0].snr_db):
        quality = truth.quality(ks, [setting] * len(ks))
        lossy = np.array([not lossless(k, setting, env.num_layers) for k in ks])
        prior = np.zeros(len(ks))
        prior[lossy] = linearised_kl_of(cell_frame(truth.descriptor, [(k, setting) for k in np.asarray(ks)[lossy]]),
                                        sensitivity)
        measured, ok = reward_fn.rewards(ks, [setting] * len(ks), *quality.T)
        true_reward = np.where(ok, measured, -np.inf)
        picks = {"oracle": int(np.argmax(true_reward))}
        for name, stand_in in (("prior", prior), ("measured-kl", quality[:, 1])):
            reward, feasible = reward_fn.rewards(ks, [setting] * len(ks), stand_in, stand_in, 1.0)
            picks[name] = int(np.argmax(np.where(feasible, reward, -np.inf)))
        for name, i in picks.items():
            totals[name] += count * true_reward[i]
        print(f"  {label} {setting.snr_db:4.0f} dB ({count:4d} blocks): " + ", ".join(
            f"{name} k={ks[i]} reward {true_reward[i]:.3f}" for name, i in picks.items()))
    return {name: 100.0 * value / totals["oracle"] for name, value in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, default=Path("runs/surrogate_truth_awgn3"))
    parser.add_argument("--sensitivity", type=Path, default=None, help="default: sensitivity.json beside the truth")
    parser.add_argument("--traces", type=int, default=16, help="held-out traces weighting the settings")
    args = parser.parse_args()
    table = load_cells(args.truth)
    path = args.sensitivity or args.truth / "sensitivity.json"
    if not path.is_file():
        raise SystemExit(f"no sensitivity profile at {path}; edgesplit sensitivity writes one")
    sensitivity = {str(table["model"].iloc[0]): SensitivityProfile.load(path)}
    seeds = sorted(table["seed"].unique())
    for label, part in ((f"pooled {len(seeds)} seeds", pool_seeds(table)),
                        (f"seed {seeds[0]} only", table[table["seed"] == seeds[0]])):
        result = shares(part, sensitivity, args.traces, label)
        print(f"{label}: prior (no evaluation) {result['prior']:.1f}%, measured KL as the expected quality "
              f"{result['measured-kl']:.1f}% of the greedy oracle")


if __name__ == "__main__":
    main()
