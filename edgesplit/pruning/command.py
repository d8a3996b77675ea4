"""``edgesplit co-opt``: jointly choose split k, pruning ratio, UE transmit power and CPU clock under budgets.

edgesplit co-opt --model smollm2-135m --latency-ms 200 --energy-mj 50 --snr-db 10 --method structured --side device
edgesplit co-opt --table runs/prune_sweep/cells.parquet --latency-ms 80 --energy-mj 5 --min-device-layers 4 \\
    --no-measure
edgesplit co-opt --sweep --latency-grid-ms 20,50,100,200,500 --energy-grid-mj 1,5,20,100 --out runs/co_opt

The objective is the predicted quality loss from measured curves (:mod:`edgesplit.pruning.curves`) of a pruning
sweep table (``--table``; without it a cached table, or a small one measured now and cached: see
:mod:`edgesplit.pruning.co_opt_run`). The solver (:mod:`edgesplit.pruning.co_opt`) is exact; the same solver,
restricted, gives the baselines (on-device, on-server, fixed ratio, fixed split, no pruning, and the design that
minimises the paper's bound). One solve prints the chosen configuration, its predicted quality, the baselines and,
with ``--measure`` (default), the quality of the chosen pruned split model really built and evaluated on held-out
text. ``--sweep`` runs every budget pair and writes ``sweep.parquet``, ``baselines.csv`` and plots into ``--out``.
Bad input prints ``error: …`` on stderr and exits 2; infeasible budgets print which constraint binds and the least
budget that would be feasible, and exit 1. Registered by ``edgesplit.cli`` as
``app.command("co-opt")(co_opt_command)``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from edgesplit.clierrors import fail, require_writable_dir

LATENCY_GRID_MS = "20,30,50,80,120,200,300,500,800,1200,2000"
ENERGY_GRID_MJ = "1,2,5,10,20,50,100,200,500,1000"


def co_opt_command(
    model: str = typer.Option("smollm2-135m", help="Built-in name, local directory or hub id."),
    latency_ms: float = typer.Option(200.0, "--latency-ms", help="End-to-end latency budget of one prefill (ms)."),
    energy_mj: float = typer.Option(50.0, "--energy-mj", help="UE energy budget (compute + transmit, mJ)."),
    snr_db: float = typer.Option(10.0, "--snr-db", help="Uplink SNR at the link's reference power (dB)."),
    device: str = typer.Option("phone-soc", help="UE preset."),
    edge: str = typer.Option("a100", help="Edge preset."),
    link: str = typer.Option("5g-nr-20mhz", help="Link preset."),
    method: str = typer.Option("structured", help="Pruning method: magnitude, wanda, sparsegpt, structured."),
    side: str = typer.Option("device", help="Pruned side: device, server or both."),
    table: Path | None = typer.Option(None, help="Pruning sweep table (cells.parquet); default: cached/measured."),
    tokens: int = typer.Option(128, help="Prompt tokens of the request."),
    bits: str = typer.Option("16", help="Wire widths of the hidden state, e.g. 16 or 8=0.02,16 (penalty, log ppl)."),
    min_device_layers: int = typer.Option(0, help="Privacy floor: the UE runs at least this many layers."),
    rho_step: float = typer.Option(0.0, help="Ratio grid (0.01: whole percent); 0: continuous."),
    sparse_kernel: bool = typer.Option(False, help="Assume a sparse kernel: unstructured pruning saves compute."),
    p_max_w: float | None = typer.Option(None, help="Highest transmit power (default: the link's reference)."),
    f_max_ghz: float | None = typer.Option(None, help="Highest UE clock (default: the device's)."),
    memory_gb: float | None = typer.Option(None, help="UE memory for the model (default: the device's)."),
    fixed_ratio: float = typer.Option(0.5, help="Ratio of the fixed-ratio baseline."),
    bound_form: str = typer.Option("rate-distortion", help="Bound baseline: rate-distortion or magnitude-gaussian."),
    sweep: bool = typer.Option(False, help="Sweep --latency-grid-ms × --energy-grid-mj (needs --out)."),
    latency_grid_ms: str = typer.Option(LATENCY_GRID_MS, help="Latency budgets of --sweep (ms)."),
    energy_grid_mj: str = typer.Option(ENERGY_GRID_MJ, help="Energy budgets of --sweep (mJ)."),
    out: Path | None = typer.Option(None, help="Output directory (design.json; sweep tables and plots)."),
    measure: bool = typer.Option(True, help="Build the chosen pruned split model and measure its perplexity."),
    corpus: str | None = typer.Option(None, help="Text for --measure (default: the table's corpus, else default)."),
    eval_tokens: int = typer.Option(2048, help="Held-out tokens scored by --measure (s.e. shrinks as 1/sqrt)."),
    context: int | None = typer.Option(None, help="Evaluation window of --measure (default: the table's, or 256)."),
    progress: bool = typer.Option(True, help="Progress bars while a table is measured."),
) -> None:
    """Jointly choose split, pruning ratio, transmit power and CPU clock under latency and energy budgets."""
    from edgesplit.cost import get_device, get_edge, get_link
    from edgesplit.profile.grid import parse_float_grid
    from edgesplit.pruning import co_opt_run as run
    from edgesplit.pruning.co_opt import CoOptProblem
    from edgesplit.pruning.curves import BoundObjective, QualityCurves

    if sweep and out is None:
        fail("--sweep writes tables and plots: give --out")
    if out is not None:
        require_writable_dir(out)
    positive = ("positive values", lambda v: v > 0)
    try:
        minimums = (("--latency-ms", latency_ms, 0), ("--energy-mj", energy_mj, 0), ("--tokens", tokens, 0),
                    ("--eval-tokens", eval_tokens, 1), ("--context", 2 if context is None else context, 1))
        for name, value, least in minimums:
            if not value > least:
                raise ValueError(f"{name} must be > {least}, got {value:g}")
        presets = {"device": get_device(device), "edge": get_edge(edge), "link": get_link(link)}
        choices, penalty = run.parse_bits(bits)
        grids = (parse_float_grid(latency_grid_ms, "--latency-grid-ms", positive[1], positive[0]),
                 parse_float_grid(energy_grid_mj, "--energy-grid-mj", positive[1], positive[0]))
        profile = run.load_profile(model)
        options = {"p_max_w": p_max_w, "f_max_hz": None if f_max_ghz is None else f_max_ghz * 1e9,
                   "device_memory_bytes": None if memory_gb is None else memory_gb * 1e9}
        problem = CoOptProblem.from_presets(
            profile, latency_budget_s=latency_ms / 1e3, energy_budget_j=energy_mj / 1e3, snr_db=snr_db,
            tokens=tokens, method=method, side=side, bits_choices=choices, bits_penalty=penalty,
            min_device_layers=min_device_layers, rho_step=rho_step, sparse_kernel=sparse_kernel, **presets,
            **{name: value for name, value in options.items() if value is not None})
        bound = BoundObjective.from_profile(profile, side, form=bound_form)
        frame, source, table_path = run.resolve_table(table, model, method, side, profile.num_layers, progress)
        text = run.text_plan(table_path, corpus, eval_tokens, context) if measure else None
        objective = QualityCurves.fit(frame, profile.num_layers, source=source).objective(method, side)
    except ValueError as err:
        fail(str(err))
    if sweep:
        run.run_budget_sweep(problem, objective, bound, latency_grid_s=[v / 1e3 for v in grids[0]],
                             energy_grid_j=[v / 1e3 for v in grids[1]], out=out, fixed_ratio=fixed_ratio,
                             echo=typer.echo)
        return
    try:
        code = run.run_single(problem, objective, bound, model=model, text=text, out=out, source=source,
                              fixed_ratio=fixed_ratio, echo=typer.echo)
    except ValueError as err:
        fail(str(err))
    if code:
        raise typer.Exit(code=code)
