"""``edgesplit train-policy``, ``edgesplit mbrl`` and ``edgesplit evaluate-policy`` (typer command functions).

edgesplit train-policy --reward surrogate --surrogate runs/surrogate_ckpt --iterations 20 --out runs/policy
edgesplit train-policy --reward real --table runs/surrogate_truth_awgn --iterations 20   # counted replay
edgesplit mbrl --budget 20 --out runs/mbrl --oracle-table runs/surrogate_truth_awgn       # the real LLM, counted
edgesplit evaluate-policy --checkpoint runs/mbrl/policy/checkpoint --table runs/surrogate_truth_awgn --out runs/eval
edgesplit train-policy --reward real --table runs/surrogate_truth_awgn --num-env-runners 4 --num-envs-per-env-runner 4 \
    --num-learners 1 --num-gpus-per-learner 1      # 4 sampling processes, one learner actor on a GPU

``--reward real`` evaluates with the LLM (``--model``, ``--corpus``, ``--tokens``, ``--context``) unless ``--table``
is given, in which case real evaluations measured earlier are replayed and counted the same way. The scale options
(:mod:`rllib_env.scale`) default to today's run: sampling and learning in this process, the learner on a GPU when
the Ray cluster reports one and this process sees CUDA. Bad input prints
``error: …`` on stderr and exits with status 2 before any work. Registered by ``edgesplit.cli`` as
``app.command("train-policy")(train_policy_command)`` and likewise for the other two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from edgesplit.clierrors import fail as _fail
from edgesplit.clierrors import require_writable_dir


def _grid(text: str) -> tuple[float, ...] | None:
    from edgesplit.profile import parse_float_grid

    if text.strip().lower() in ("", "none", "continuous"):
        return None
    try:
        return parse_float_grid(text, "--snr-grid")
    except ValueError as err:
        _fail(f"{err} (or 'none' for a continuous SNR)")


def _env_config(model: str, preset: str, process: str, snr_grid: str, steps: int) -> dict[str, Any]:
    """A validated SplitEnv config from the shared options (exit 2 on bad values)."""
    from rllib_env.split_env import DEFAULT_PROCESS, SplitEnvConfig

    data = {"model": model, "reward": preset, "process": process, "snr_grid_db": _grid(snr_grid),
            "episode_steps": steps, "process_params": DEFAULT_PROCESS if process == "gauss_markov" else {}}
    try:
        SplitEnvConfig.from_dict({**data, "source": {"kind": "table", "path": "-"}})
        from edgesplit.channel import make_config

        make_config(process, **data["process_params"])
        from surrogate.dataset import model_profile

        model_profile(model)
    except (ValueError, TypeError) as err:
        _fail(str(err))
    return data


def _existing(path: Path | None, what: str) -> Path | None:
    if path is not None and not path.exists():
        _fail(f"{what} {path} does not exist")
    return path


def _real_spec(table: Path | None, model: str, corpus: str, tokens: int, context: int, device: str = "cpu",
               remote: bool = False) -> dict[str, Any]:
    if table is not None:
        return {"table": str(table.resolve())}
    if tokens < context + 1 or context < 2:
        _fail(f"--tokens ({tokens}) must exceed --context ({context}), and --context must be >= 2")
    return {"model": model, "corpus": corpus, "tokens": tokens, "context": context,
            "device": _evaluator_device(device, remote)}


def _evaluator_device(device: str, remote: bool) -> str:
    """``--torch-device`` of the real LLM evaluator (float32 always: it measures quality); exit 2 when unusable.
    In this process it is resolved now; remote env runners reserve no GPU, so there only auto (= cpu) and cpu fit."""
    from edgesplit.clidevice import device_and_dtype
    from edgesplit.models.device import check_device_name

    if not remote:
        return str(device_and_dtype(device, "float32")[0])
    try:
        name = check_device_name(device)
    except ValueError as err:
        _fail(f"--torch-device: {err}")
    if name not in ("auto", "cpu"):
        _fail(f"--torch-device {name}: with --num-env-runners the real evaluator runs in each env runner, which "
              f"reserves no GPU; use cpu or auto, or sample in this process")
    return name


MODEL = typer.Option("smollm2-135m", help="Model whose split is chosen (built-in name or local directory).")
PRESET = typer.Option("paper", help="Reward preset: paper or latency-energy.")
PROCESS = typer.Option("gauss_markov", help="Channel process: gauss_markov, rayleigh, path_loss, nakagami, static.")
SNR_GRID = typer.Option("0,5,10,15,20,25,30", help="SNRs (dB) rewards are computed at (nearest); 'none': continuous.")
STEPS = typer.Option(64, min=1, help="Blocks per episode / trace.")
CORPUS = typer.Option("wikitext2", help="Corpus of the real evaluator (default, wikitext2 or a text file).")
TOKENS = typer.Option(1024, help="Tokens the real evaluator scores.")
CONTEXT = typer.Option(256, help="Context window of the real evaluator.")
EVALUATOR_DEVICE = typer.Option("auto", "--torch-device", help="Where the real LLM evaluator runs (float32): auto "
                                "(cuda if this process sees a GPU; cpu in remote env runners), cpu, cuda, cuda:N.")
ENV_RUNNERS = typer.Option(0, min=0, help="Remote env runners (0: sample in this process); each counts its own real "
                           "evaluations and the curve sums them.")
ENVS_PER_RUNNER = typer.Option(None, min=1, help="Sub-environments per env runner (default: the algorithm YAML's).")
LEARNERS = typer.Option(0, min=0, help="Remote learner actors (0: one local learner in this process).")
GPUS_PER_LEARNER = typer.Option("auto", help="GPUs per learner: auto (1 when the Ray cluster reports a GPU for every "
                                "learner; for the local learner also this process must see CUDA; else 0) or a number.")


def _scale(num_env_runners: int, num_envs_per_env_runner: int | None, num_learners: int, num_gpus_per_learner: str):
    """The validated :class:`~rllib_env.scale.TrainScale` of the options (exit 2 on a bad combination)."""
    from rllib_env.scale import TrainScale

    try:
        return TrainScale(num_env_runners, num_envs_per_env_runner, num_learners, num_gpus_per_learner)
    except ValueError as err:
        _fail(str(err))


def train_policy_command(
    reward: str = typer.Option("surrogate", help="surrogate | real | table"),
    iterations: int = typer.Option(20, help="Training iterations."),
    out: Path = typer.Option(Path("runs/policy"), help="Writes checkpoint/, curve.parquet, curve.png."),
    surrogate: Path | None = typer.Option(None, help="Surrogate checkpoint (reward=surrogate)."),
    table: Path | None = typer.Option(None, help="Measured grid (reward=table), or a counted replay (reward=real)."),
    algo: str = typer.Option("ppo", help="ppo or dqn."),
    config: Path | None = typer.Option(None, help="YAML override (default rllib_env/configs/<algo>.yaml)."),
    num_env_runners: int = ENV_RUNNERS, num_envs_per_env_runner: int | None = ENVS_PER_RUNNER,
    num_learners: int = LEARNERS, num_gpus_per_learner: str = GPUS_PER_LEARNER,
    seed: int = typer.Option(0, help="Seed of PPO and the environments."),
    model: str = MODEL, preset: str = PRESET, process: str = PROCESS, snr_grid: str = SNR_GRID, steps: int = STEPS,
    corpus: str = CORPUS, tokens: int = TOKENS, context: int = CONTEXT, torch_device: str = EVALUATOR_DEVICE,
) -> None:
    """Train a split policy with RLlib on the surrogate, the counted real evaluator or a measured table."""
    from rllib_env.train import ALGORITHMS, REWARDS, reward_spec, train_policy

    if reward not in REWARDS:
        _fail(f"--reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    if algo not in ALGORITHMS:
        _fail(f"--algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")
    if iterations < 1:
        _fail(f"--iterations must be >= 1, got {iterations}")
    scale = _scale(num_env_runners, num_envs_per_env_runner, num_learners, num_gpus_per_learner)
    require_writable_dir(out)
    _existing(surrogate, "surrogate checkpoint")
    _existing(table, "table")
    _existing(config, "config file")
    if surrogate is not None:
        from surrogate.checkpoint import read_meta

        try:
            read_meta(surrogate)
        except ValueError as err:
            _fail(str(err))
    env_config = _env_config(model, preset, process, snr_grid, steps)
    real = _real_spec(table, model, corpus, tokens, context, torch_device, remote=scale.num_env_runners > 0) \
        if reward == "real" else None
    try:
        reward_spec(reward, surrogate, table, real)
        outcome = train_policy(reward, iterations, out, surrogate=surrogate, table=table, real=real,
                               env_config=env_config, algo=algo, config_file=config, seed=seed,
                               num_env_runners=scale.num_env_runners, num_learners=scale.num_learners,
                               num_envs_per_env_runner=scale.num_envs_per_env_runner,
                               num_gpus_per_learner=scale.num_gpus_per_learner)
    except ValueError as err:
        _fail(str(err))
    last = outcome.curve.iloc[-1]
    typer.echo(f"{iterations} iterations, {int(last['env_steps'])} steps, return {last['episode_return_mean']:.4g}; "
               f"checkpoint {outcome.checkpoint}")


def mbrl_command(
    budget: int = typer.Option(20, help="Real LLM evaluations in total."),
    initial: int = typer.Option(8, help="Space-filling initial design."),
    per_round: int = typer.Option(4, help="Most new real evaluations per round."),
    iterations_first: int = typer.Option(12, help="PPO iterations after the first fit."),
    iterations_per_round: int = typer.Option(3, help="PPO iterations after each refit."),
    final_iterations: int = typer.Option(6, help="PPO iterations once the budget is spent."),
    out: Path = typer.Option(Path("runs/mbrl"), help="Writes evaluations/rounds.parquet, policy/, surrogate/."),
    table: Path | None = typer.Option(None, help="Replay real evaluations from this grid instead of running the LLM."),
    oracle_table: Path | None = typer.Option(None, help="Measured grid for the held-out reward after each round."),
    surrogate_config: Path | None = typer.Option(None, help="Tune's best_config.json (default: built-in config)."),
    traces: int = typer.Option(8, min=1, help="Held-out traces for the per-round reward (with --oracle-table)."),
    seed: int = typer.Option(0, help="Seed of the design, the surrogate and PPO."),
    model: str = MODEL, preset: str = PRESET, process: str = PROCESS, snr_grid: str = SNR_GRID, steps: int = STEPS,
    corpus: str = CORPUS, tokens: int = TOKENS, context: int = CONTEXT,
    num_env_runners: int = ENV_RUNNERS, num_envs_per_env_runner: int | None = ENVS_PER_RUNNER,
    num_learners: int = LEARNERS, num_gpus_per_learner: str = GPUS_PER_LEARNER, torch_device: str = EVALUATOR_DEVICE,
) -> None:
    """Model-based RL: surrogate → PPO → real rollouts → refit, until the real-evaluation budget is spent."""
    from rllib_env.mbrl import MbrlConfig, run_mbrl

    scale = _scale(num_env_runners, num_envs_per_env_runner, num_learners, num_gpus_per_learner)
    require_writable_dir(out)
    _existing(table, "table")
    _existing(oracle_table, "oracle table")
    _existing(surrogate_config, "surrogate config")
    try:
        config = MbrlConfig(budget=budget, initial=initial, per_round=per_round, iterations_first=iterations_first,
                            iterations_per_round=iterations_per_round, final_iterations=final_iterations,
                            surrogate_config=surrogate_config, seed=seed)
    except ValueError as err:
        _fail(str(err))
    env_config = _env_config(model, preset, process, snr_grid, steps)
    if env_config["snr_grid_db"] is None:
        _fail("mbrl needs an --snr-grid: its initial design is drawn from grid cells")
    spec = {"kind": "real", **_real_spec(table, model, corpus, tokens, context, torch_device)}  # in this process
    try:
        from rllib_env.registry import source_from_spec

        real = source_from_spec(spec, model)
        evaluate = _heldout(env_config, oracle_table, traces)
        outcome = run_mbrl(real, {**env_config, "source": spec}, config, out, evaluate=evaluate, scale=scale)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"{len(outcome.evaluations)} real evaluations ({real.stats.queries} reward queries); "
               f"policy {outcome.checkpoint}")


def _heldout(env_config: dict[str, Any], oracle_table: Path | None, traces: int):
    if oracle_table is None:
        return None
    from rllib_env.evaluate import heldout_reward, heldout_seeds
    from rllib_env.registry import source_from_spec

    oracle = source_from_spec({"kind": "table", "path": str(oracle_table.resolve())}, env_config["model"])
    seeds = heldout_seeds(traces)
    return lambda policy: heldout_reward(policy, env_config, oracle, seeds)


def evaluate_policy_command(
    checkpoint: Path = typer.Option(..., help="Policy checkpoint (train-policy's or mbrl's checkpoint/)."),
    out: Path = typer.Option(Path("runs/policy_eval"), help="Writes steps.parquet, summary.csv, splits.png."),
    table: Path | None = typer.Option(None, help="Measured grid to score with (default: real LLM evaluations)."),
    traces: int = typer.Option(8, min=1, help="Held-out traces."),
    baselines: bool = typer.Option(True, help="Also run the rule baselines (oracle, random, fixed k, cost-only)."),
    corpus: str = CORPUS, tokens: int = TOKENS, context: int = CONTEXT, torch_device: str = EVALUATOR_DEVICE,
) -> None:
    """Evaluate a policy on held-out traces: reward, % of the oracle, quality, latency, energy, splits over time.

    Without --table every block is scored by the real LLM (counted), and so is the greedy oracle: it needs every
    split of every visited setting (L − 1 evaluations per grid setting, cached).
    """
    from rllib_env.baselines import rule_policies
    from rllib_env.evaluate import evaluate_policies, heldout_seeds, write_evaluation
    from rllib_env.policy import Policy, module_dir
    from rllib_env.registry import source_from_spec
    from rllib_env.split_env import SplitEnv, SplitEnvConfig

    _existing(checkpoint, "checkpoint")
    _existing(table, "table")
    require_writable_dir(out)
    config_file = next((p / "env_config.json" for p in (checkpoint, checkpoint.parent) if
                        (p / "env_config.json").is_file()), None)
    if config_file is None:
        _fail(f"no env_config.json beside {checkpoint}; evaluate a checkpoint written by train-policy or mbrl")
    try:
        module_dir(checkpoint)
        env_config = SplitEnvConfig.from_dict(json.loads(config_file.read_text())).to_dict()
        spec = {"kind": "table", "path": str(table.resolve())} if table is not None else \
            {"kind": "real", **_real_spec(None, env_config["model"], corpus, tokens, context, torch_device)}
        source = source_from_spec(spec, env_config["model"])
        policy = Policy.from_checkpoint(checkpoint)
        policies = {"policy": (policy, {})}
        if baselines:
            policies.update(rule_policies(SplitEnv(env_config, source=source)))
        steps, summary = evaluate_policies(policies, env_config, source, heldout_seeds(traces))
    except ValueError as err:
        _fail(str(err))
    write_evaluation(steps, summary, out, show=["policy", "neurosurgeon"])
    typer.echo(summary.head(12).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    typer.echo(f"saved {out}")


__all__ = ["evaluate_policy_command", "mbrl_command", "train_policy_command"]
