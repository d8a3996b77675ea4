"""``edgesplit client "prompt" --edge http://127.0.0.1:8000``: one split generation against a running edge.

Prints the generated text, then (on stderr) the split the controller chose with its reason and the per-token
timings. ``--split K`` skips the controller; ``--snr-db`` is what the UE reports (and, with ``--simulate``, the
channel its activations go through).
"""

from __future__ import annotations

import statistics

import typer

from edgesplit.clierrors import fail


def client_command(
    prompt: str = typer.Argument(..., help="Text to continue."),
    edge: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the edge (edgesplit serve)."),
    model: str = typer.Option("smollm2-135m", help="The model the edge serves (the UE runs its head)."),
    split: int = typer.Option(None, "--split", "-k", help="Fixed split; default: ask the controller."),
    max_new_tokens: int = typer.Option(32, min=1, max=4096),
    temperature: float = typer.Option(0.0, min=0.0, max=10.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, min=0.0, max=1.0),
    seed: int = typer.Option(0, min=0),
    snr_db: float = typer.Option(20.0, help="SNR the UE reports to the controller."),
    device: str = typer.Option(None, help="Device preset reported to the controller."),
    simulate: bool = typer.Option(False, help="Impair the activations with an AWGN channel at --snr-db."),
    timings: bool = typer.Option(True, help="Print per-token timings on stderr."),
    max_retries: int = typer.Option(5, min=0, max=100, help="Retries of a call answered 429/503 or unreachable."),
) -> None:
    """Generate through a running edge deployment, printing the text, the split and per-token timings."""
    from edgesplit.cli import load
    from edgesplit.client import EdgeCallError, SplitClient
    from edgesplit.scenario import ChannelSetting

    if not 0.0 < top_p <= 1.0:
        fail(f"--top-p must be in (0, 1], got {top_p}")
    loaded = load(model)
    if split is not None and not 0 <= split <= loaded.num_layers:
        fail(f"--split must be in 0..{loaded.num_layers} for {model}, got {split}")
    channel = ChannelSetting(kind="awgn", snr_db=snr_db) if simulate else None
    ids = loaded.tokenizer(prompt).input_ids
    try:
        with SplitClient(loaded, edge, channel=channel, seed=seed, max_retries=max_retries,
                         max_backoff_s=2.0) as client:
            client.ue_state.update({"snr_db_history": [snr_db], **({"device": device} if device else {})})
            result = client.generate(ids, max_new_tokens, k=split, temperature=temperature, top_p=top_p, seed=seed,
                                     stop_ids=(loaded.tokenizer.eos_token_id,))
    except EdgeCallError as err:
        fail(f"edge {edge} answered {err.status or '-'} {err.code}: {err.message}")
    except ValueError as err:
        fail(str(err))
    typer.echo(loaded.tokenizer.decode(result.tokens, skip_special_tokens=True))
    why = f" ({result.decision['policy']} {result.decision['policy_version']}: {result.decision['reason']})" \
        if result.decision else " (fixed)"
    typer.echo(f"[k={result.k}{why}; {len(result.tokens)} tokens, {result.resumes} resumes, {result.retries} "
               f"retries]", err=True)
    if timings and result.events:
        for e in result.events:
            typer.echo(f"  token {e.index:4d} id {e.token:6d}  head {1e3 * e.head_s:7.2f} ms  edge round trip "
                       f"{1e3 * e.round_trip_s:7.2f} ms  {e.frame_bytes} B", err=True)
        rtts = [e.round_trip_s for e in result.events[1:]] or [result.events[0].round_trip_s]
        typer.echo(f"  median decode round trip {1e3 * statistics.median(rtts):.2f} ms", err=True)
