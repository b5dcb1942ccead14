"""The same app on Ray Serve: ``xdr serve INDEX --engine ray --replicas N``.

Each replica builds the FastAPI app of :mod:`xdr.serve.app` in its own process (``serve.ingress`` with
``__serve_build_asgi_app__``), so it loads the model, index and texts once and micro-batches its own
requests; Ray Serve's proxy spreads requests over the replicas. Ray does the deployment; this module
only names it and passes the settings.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from xdr.serve.service import ServeSettings


class _Replica:
    """One replica: the settings travel as JSON; the app (and the model) is built inside the replica."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ServeSettings.model_validate(settings)

    def __serve_build_asgi_app__(self) -> Any:
        from xdr.serve.app import create_app

        return create_app(self.settings)


def run_ray(
    settings: ServeSettings, replicas: int = 2, host: str = "127.0.0.1", port: int = 8000,
    cpus_per_replica: float = 1.0,
) -> None:
    """Deploy ``replicas`` replicas behind Ray Serve's HTTP proxy on ``host:port`` and serve until SIGTERM
    or Ctrl-C, then shut the deployment down. Joins the cluster at ``$RAY_ADDRESS`` when set, else starts
    a local one."""
    import ray
    from ray import serve

    ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        deployment = serve.deployment(
            name="xdr", num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica},
        )(serve.ingress()(_Replica))
        serve.run(deployment.bind(settings.model_dump(mode="json")), name="xdr", route_prefix="/")
        print(f"xdr serve: {replicas} Ray Serve replicas on http://{host}:{port}/", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
