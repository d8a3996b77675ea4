"""Reinforcement learning of the split point with RLlib: the environment, reward sources, training, the model-based
loop, evaluation and baselines.

- :mod:`rllib_env.split_env` — ``SplitEnv``: channel + device state in, split ``k`` out (gymnasium);
- :mod:`rllib_env.sources` / :mod:`rllib_env.registry` — quality from the surrogate, the counted real LLM or a
  measured table;
- :mod:`rllib_env.train` — PPO / DQN on the new API stack (``train_policy``), :mod:`rllib_env.policy` — loading;
- :mod:`rllib_env.mbrl` — the model-based loop (``run_mbrl``), :mod:`rllib_env.evaluate` — held-out evaluation,
  :mod:`rllib_env.baselines` — fixed, random, oracle, cost-only, the paper's scheme, model-free PPO;
- :mod:`rllib_env.compare` — everything side by side (``benchmarks/mbrl_vs_modelfree.py``),
  :mod:`rllib_env.smoke` — the ``make demo`` step; :mod:`rllib_env.command` — the CLI commands.

Importing this package does not import Ray; training functions start (or join) it when called.
"""
