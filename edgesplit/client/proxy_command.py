"""``edgesplit ue-proxy --edge http://127.0.0.1:8000``: an OpenAI-compatible server on the UE, split with the edge.

Loads the model (the UE runs its head), then serves ``/v1/models``, ``/v1/completions`` and
``/v1/chat/completions`` on ``--host:--port`` (loopback by default) until Ctrl-C; point any OpenAI client at
``http://127.0.0.1:8080/v1``. ``--split K`` fixes the split; otherwise the edge's controller picks ``k`` per request
from the reported ``--snr-db``. Bad options exit 2 with a one-line message.
"""

from __future__ import annotations

import ipaddress

import typer

from edgesplit.clierrors import fail


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ue_proxy_command(
    edge: str = typer.Option("http://127.0.0.1:8000", help="Base URL of the edge (edgesplit serve)."),
    model: str = typer.Option("smollm2-135m", help="The model the edge serves (the UE runs its head)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8080, min=1, max=65535, help="Port to listen on."),
    split: int = typer.Option(None, "--split", "-k", help="Fixed split for every request; default: the controller."),
    snr_db: float = typer.Option(20.0, help="SNR the UE reports to the controller."),
    device: str = typer.Option(None, help="Device preset reported to the controller."),
    api_token: str = typer.Option(None, envvar="EDGESPLIT_API_TOKEN", show_default=False,
                                  help="Bearer token for the edge (or $EDGESPLIT_API_TOKEN)."),
    proxy_api_key: str = typer.Option(None, envvar="EDGESPLIT_PROXY_API_KEY", show_default=False,
                                      help="Key clients must send to this proxy (or $EDGESPLIT_PROXY_API_KEY)."),
    served_name: str = typer.Option(None, help="Model id clients name (default: --model)."),
    max_tokens_limit: int = typer.Option(2048, min=1, max=131_072, help="Most tokens one request may generate."),
    edge_retries: int = typer.Option(1, min=0, max=100, help="Retries of an edge call answered 429/503."),
) -> None:
    """Serve the OpenAI API on the UE; every request is a split generation with the edge."""
    from edgesplit.cli import load
    from edgesplit.client.openai_proxy import ProxyConfig, build_proxy_app
    from edgesplit.client.proxy_server import bind_socket, uvicorn_server

    try:
        config = ProxyConfig(edge_url=edge, model_id=served_name or model, split=split, snr_db=snr_db,
                             device=device, api_token=api_token, proxy_api_key=proxy_api_key,
                             edge_retries=edge_retries, max_tokens_limit=max_tokens_limit)
    except ValueError as err:
        fail(str(err))
    if device is not None:
        from edgesplit.cost.hardware import DEVICE_PRESETS

        if device not in DEVICE_PRESETS:
            fail(f"unknown --device {device!r}; valid names: {', '.join(sorted(DEVICE_PRESETS))}")
    if not _is_loopback(host) and not proxy_api_key:
        typer.secho(f"warning: listening on {host} without --proxy-api-key: anyone who reaches it uses the edge "
                    f"with this UE's token", fg=typer.colors.YELLOW, err=True)
    loaded = load(model)
    try:
        app = build_proxy_app(loaded, config)
        sock = bind_socket(host, port)
    except ValueError as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
    split_text = f"k={split}" if split is not None else f"controller-chosen k (reporting {snr_db} dB)"
    typer.echo(f"edgesplit UE proxy at http://{host}:{port}/v1 (model {config.model_id}, edge {edge}, "
               f"{split_text}); Ctrl-C stops it")
    try:
        uvicorn_server(app, log_level="info").run(sockets=[sock])
    finally:
        sock.close()
