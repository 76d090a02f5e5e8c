"""``create_app``: the console's FastAPI application, one per process.

Layers, outermost first: metrics (every request timed and counted, refusals included), the
per-client rate limit (before any route or body), FastAPI's body size limit
(``[console] max_upload_mb``: 413 before the body is read when its length says so), then the
routes: the REST API under ``/api`` (OpenAPI 3 at ``/api/openapi.json``; interactive docs at
``/api/docs`` only with ``[console] api_docs``), ``/metrics``, and the console's pages at
``/`` (``appliance.web.console``). An ``ApplianceError`` anywhere becomes the HTTP answer of
its code (``http_errors``). The stores open here, once; ``app.state.services`` holds them and
the application's lifespan closes them.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from appliance import __version__
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.packs.defaults import check_configured
from appliance.security.roles import Permission, require
from appliance.web import api_accounts, api_admin, api_capture, api_events, api_people, api_subject, console
from appliance.web import api_access
from appliance.web.auth import authenticated
from appliance.web.http_errors import appliance_error_handler
from appliance.web.limits import ClientRateLimit, RateLimiter
from appliance.web.metrics import LOOPBACK, ApiMetrics, MetricsMiddleware
from appliance.web.services import Services
from appliance.web.uploads import BYTES_PER_MB

OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"


def create_app(config: Config, data_root: Path, services: Services | None = None) -> FastAPI:
    """The application over the stores in ``data_root`` (opened now, closed at shutdown);
    ``services`` lets a caller that already holds them open (tests, a second app) pass them."""
    check_configured(config.site.use, config.models.embedder, config.models.search_path, "console")
    services = services or Services(config, Path(data_root))
    console_config = config.console

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(title="Face appliance", version=__version__, openapi_url=OPENAPI_URL,
                  docs_url=DOCS_URL if console_config.api_docs else None, redoc_url=None, lifespan=lifespan,
                  max_body_size=int(console_config.max_upload_mb * BYTES_PER_MB))
    app.state.services = services
    app.state.limiter = RateLimiter(console_config.requests_per_s, console_config.request_burst)
    app.state.metrics = ApiMetrics(services)
    app.add_exception_handler(ApplianceError, appliance_error_handler)
    for router in (api_people.router, api_events.router, api_admin.router, api_accounts.router, api_capture.router):
        app.include_router(router)
    app.include_router(api_subject.router)  # a person's access request (GET /api/people/{id}/export)
    app.include_router(api_access.router)  # access groups, doors, schedules (docs/access.md)
    app.add_api_route("/metrics", _metrics_endpoint(console_config.metrics_loopback), methods=["GET"],
                      response_class=Response, include_in_schema=True, tags=["monitoring"],
                      summary="Prometheus metrics (loopback, or a token with events:read)")
    app.include_router(console.router)
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(ClientRateLimit, limiter=app.state.limiter)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def _metrics_endpoint(loopback_open: bool):
    def metrics(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if not (loopback_open and client in LOOPBACK and "authorization" not in request.headers):
            principal = authenticated(request)
            require(principal, Permission.READ_EVENTS)
        return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics


__all__ = ["create_app"]
