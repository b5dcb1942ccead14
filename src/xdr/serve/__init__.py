"""`xdr serve`: the search service (FastAPI on uvicorn, or Ray Serve replicas) and its web page.

:mod:`~xdr.serve.service` answers batches of questions without HTTP; :mod:`~xdr.serve.batcher` gathers
concurrent requests into those batches; :mod:`~xdr.serve.app` is the HTTP layer and
:mod:`~xdr.serve.ray_serve` deploys the same app as Ray Serve replicas. Names load on first use, so that
importing the package does not import FastAPI or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdr.lazy import lazy_exports

_EXPORTS = {
    "BatchSettings": "xdr.serve.batcher",
    "MicroBatcher": "xdr.serve.batcher",
    "Overloaded": "xdr.serve.batcher",
    "SearchRequest": "xdr.serve.service",
    "ServeSettings": "xdr.serve.service",
    "Service": "xdr.serve.service",
    "create_app": "xdr.serve.app",
    "run_uvicorn": "xdr.serve.app",
    "run_ray": "xdr.serve.ray_serve",
}
__all__ = [
    "BatchSettings", "MicroBatcher", "Overloaded", "SearchRequest", "ServeSettings", "Service", "create_app", "run_ray",
    "run_uvicorn",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from xdr.serve.app import create_app, run_uvicorn
    from xdr.serve.batcher import BatchSettings, MicroBatcher, Overloaded
    from xdr.serve.ray_serve import run_ray
    from xdr.serve.service import SearchRequest, ServeSettings, Service
