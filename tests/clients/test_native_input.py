"""The native API's input refusals that schemathesis' generated runs cannot reach on their
own: a body sent with another Content-Type than the document lists (415
unsupported_media_type) and a JSON body that is not an object (400 invalid_request), for
every operation of the served OpenAPI document that takes one. Each answer goes through
schemathesis' own checks against the document: its status code must be declared for the
operation, and its content type and problem+json body must be the documented ones."""

import json

import pytest
import requests
import schemathesis
import schemathesis.config
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpers import unique

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
WRITES = ("POST", "PUT", "PATCH")
# What a page of another site can send without a CORS preflight, and others that are not JSON.
NOT_JSON = ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x", "application/x-amz-json-1.1", None]


@pytest.fixture(scope="module")
def schema(gateway):
    # The default configuration: schemathesis.toml beside this file is the CLI run's, and
    # names variables only scripts/client-tests.sh sets for that run.
    return schemathesis.openapi.from_url(gateway.api + "/openapi.json", verify=gateway.ca_file,
                                         config=schemathesis.config.SchemathesisConfig())


@pytest.fixture(scope="module")
def ids(gateway):
    """Real objects for the path parameters, so that only the body decides the answer."""
    project = gateway.ok("POST", "/projects", {"name": unique("input")})["project"]["id"]
    key = gateway.ok("POST", "/kms/keys", {"projectId": project, "name": unique("k"),
                                          "keyUsage": "encrypt-decrypt",
                                          "encryptionAlgorithm": "aes-256-gcm"})["key"]["id"]
    identity = gateway.ok("POST", "/identities", {"name": unique("input"), "projectId": project,
                                                  "permissions": ["encrypt"]})["identity"]["id"]
    return {"keyId": key, "identityId": identity}


def write_operations(schema):
    ops = [r.ok() for r in schema.get_all_operations()]
    return [op for op in ops if op.method.upper() in WRITES]


def send(gateway, op, ids, body, content_type):
    path = op.path
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    headers = {"Authorization": f"Bearer {gateway.bootstrap_token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.request(op.method.upper(), gateway.base_url + path, data=body.encode(),
                            headers=headers, verify=gateway.ca_file, timeout=60)


def check(op, ids, response, body, media_type):
    params = {p.name: ids[p.name] for p in op.path_parameters}
    case = op.Case(path_parameters=params, body=body, media_type=media_type)
    case.validate_response(response, checks=CHECKS)


def test_every_write_operation_refuses_a_body_not_sent_as_json(gateway, schema, ids):
    ops = write_operations(schema)
    assert len(ops) >= 15, [op.label for op in ops]
    before = gateway.ok("GET", "/projects")["projects"]
    body = json.dumps({"name": "cross-site"})
    for op in ops:
        for content_type in NOT_JSON:
            r = send(gateway, op, ids, body, content_type)
            assert r.status_code == 415, f"{op.label} {content_type}: {r.status_code} {r.text}"
            assert r.json()["code"] == "unsupported_media_type", r.text
            check(op, ids, r, {"name": "cross-site"}, "application/json")
    assert gateway.ok("GET", "/projects")["projects"] == before


def test_every_json_body_must_be_an_object(gateway, schema, ids):
    ops = [op for op in write_operations(schema) if op.body]
    assert len(ops) >= 15, [op.label for op in ops]
    before = gateway.ok("GET", "/projects")["projects"]
    for op in ops:
        for body in ['["x"]', '"x"', "1", "null", "true"]:
            r = send(gateway, op, ids, body, "application/json")
            assert r.status_code == 400, f"{op.label} {body}: {r.status_code} {r.text}"
            assert r.json()["code"] == "invalid_request", f"{op.label} {body}: {r.text}"
            check(op, ids, r, json.loads(body), "application/json")
    assert gateway.ok("GET", "/projects")["projects"] == before
