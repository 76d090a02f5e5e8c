"""The OpenAPI 3 document lists every API route with typed requests and answers, and every
reference in it resolves; the interactive docs are off unless configured."""
from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from apikit import api_config, running
from appliance.web import api_accounts, api_admin, api_events, api_people, api_subject
from appliance.security.keys import ensure_keys
from appliance.stores.protected import key_provider

API_ROUTERS = (api_people.router, api_subject.router, api_events.router, api_admin.router, api_accounts.router)
METHODS = {"get", "post", "put", "delete", "patch"}


def _refs(node, found: list[str]) -> list[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.append(value)
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


@pytest.fixture
def client(tmp_path):
    ensure_keys(key_provider(api_config().security, tmp_path))
    with running(tmp_path, api_config()) as client:
        yield client


def test_the_document_is_openapi_3_and_lists_every_route(client):
    answer = client.get("/api/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.") and document["info"]["title"] and document["info"]["version"]
    listed = {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}
    routes = {(route.path, method.lower()) for router in API_ROUTERS for route in router.routes
              if isinstance(route, APIRoute) for method in route.methods}
    assert routes and routes <= listed, routes - listed
    for path in ("/api/people", "/api/people/{subject_id}", "/api/people/{subject_id}/groups",
                 "/api/people/{subject_id}/export", "/api/identify",
                 "/api/verify", "/api/devices", "/api/devices/{name}/revoke", "/api/events", "/api/events.csv",
                 "/api/events/stream", "/api/audit", "/api/audit/verify", "/api/accounts", "/api/tokens",
                 "/api/tokens/{token_id}", "/api/session", "/metrics"):
        assert path in document["paths"], path
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert operation.get("responses"), (path, method)
                assert operation.get("summary"), (path, method)


def test_every_reference_resolves_and_answers_are_typed(client):
    document = client.get("/api/openapi.json").json()
    schemas = document["components"]["schemas"]
    for ref in _refs(document, []):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    enroll = document["paths"]["/api/people"]["post"]
    assert set(enroll["responses"]) >= {"201", "409", "422"}
    assert "multipart/form-data" in enroll["requestBody"]["content"]
    decision = schemas["Decision"]["properties"]
    assert set(decision) == {"decision", "subject_id", "name"}  # no score, ever


def test_interactive_docs_only_when_configured(tmp_path):
    ensure_keys(key_provider(api_config().security, tmp_path))
    with running(tmp_path, api_config()) as client:
        assert client.get("/api/docs").status_code == 404
    with running(tmp_path, api_config(api_docs=True)) as client:
        assert client.get("/api/docs").status_code == 200
