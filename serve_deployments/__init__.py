"""Ray Serve app of edgesplit: HTTP ingress → edge layer stack (sessions, cross-session batching) + split controller.

``serve run serve_deployments/config.yaml`` or ``edgesplit serve``. Modules: ``app`` (builder, deployment
options), ``ingress`` (FastAPI routes, auth), ``edge_deployment`` / ``tail_engine`` / ``padded_batch`` /
``sampling`` / ``edge_errors`` (the edge tail), ``controller`` / ``split_policies`` / ``split_pricing`` /
``split_schema`` (the live split controller), ``handle_transport`` (the UE client over handles), ``command`` and
``demo`` (the CLI and the demo step). The Serve deployment classes are plain classes; ``serve.deployment`` is
applied in ``app``, so the same code is tested without Ray.
"""
