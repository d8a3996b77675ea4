"""Ray Serve app of edgesplit: HTTP ingress → edge layer stack (sessions, cross-session batching) + split controller.

``serve run serve_deployments/config.yaml`` or ``edgesplit serve``. Modules: ``app`` (builder, deployment
options), ``ingress`` (FastAPI routes, auth, mixed into the edge), ``edge_deployment`` / ``tail_engine`` /
``sampling`` / ``edge_errors`` (the edge tail; its cross-session batching is
:mod:`edgesplit.split.padded_batch`), ``controller`` / ``split_policies`` / ``split_pricing`` /
``split_schema`` / ``co_opt_policy`` (the live split controller), ``handle_transport`` (the UE client over
handles), ``command`` and ``demo`` (the CLI and the demo step). The Serve deployment classes are plain
classes; ``serve.deployment`` is applied in ``app``, so the same code is tested without Ray.
"""
