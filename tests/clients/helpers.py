"""Helpers of the client tests that are not fixtures."""

import base64
import json
import os
import subprocess
import uuid

from infisical_sdk import InfisicalSDKClient

# The universal-auth identity's token lifetimes (seconds); the login must report them.
ACCESS_TOKEN_TTL = 600
ACCESS_TOKEN_MAX_TTL = 3600
PROJECT_PERMISSIONS = ["keys:manage", "encrypt", "decrypt", "sign", "verify", "read"]


def unique(prefix):
    """A key or project name no other test uses (lower case, digits, hyphens)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_universal_auth_identity(gateway, project, name):
    reply = gateway.ok("POST", "/identities", {
        "name": name,
        "projectId": project,
        "permissions": PROJECT_PERMISSIONS,
        "authMethod": "universal-auth",
        "accessTokenTTL": ACCESS_TOKEN_TTL,
        "accessTokenMaxTTL": ACCESS_TOKEN_MAX_TTL,
    })
    assert isinstance(reply.get("clientId"), str) and reply["clientId"], reply
    assert isinstance(reply.get("clientSecret"), str) and reply["clientSecret"], reply
    assert "token" not in reply, "a universal-auth identity gets no bearer token"
    return reply


def new_sdk(gateway):
    assert os.environ.get("REQUESTS_CA_BUNDLE") == gateway.ca_file, \
        "REQUESTS_CA_BUNDLE must name the dev CA: the SDK verifies TLS with requests' defaults"
    return InfisicalSDKClient(host=gateway.base_url, cache_ttl=None)


def sdk_call(sdk, method, path, body=None):
    """A route the SDK has no method for, sent through the SDK's own transport (its
    session, headers, bearer token and error handling): what its users do."""
    send = {"POST": sdk.api.post, "PATCH": sdk.api.patch, "DELETE": sdk.api.delete}.get(method)
    if send is None:
        return sdk.api.get(path=path, model=dict).data
    return send(path=path, model=dict, json=body).data


def b64(data):
    return base64.b64encode(data).decode()


def openssl_verifies(tmp_path, public_key_b64, algorithm, data, signature_b64):
    """True if the `openssl` command line verifies the signature over `data` with the
    key's public key (base64 DER SubjectPublicKeyInfo), for an API signing algorithm;
    PSS with the salt as long as the digest."""
    der = tmp_path / "pub.der"
    der.write_bytes(base64.b64decode(public_key_b64))
    pem = tmp_path / "pub.pem"
    subprocess.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", str(der), "-out", str(pem)],
                   check=True, capture_output=True)
    (tmp_path / "data.bin").write_bytes(data)
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(signature_b64))
    args = ["openssl", "dgst", "-sha" + algorithm[-3:], "-verify", str(pem), "-signature", str(tmp_path / "sig.bin")]
    if algorithm.startswith("RSASSA_PSS"):
        args += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    out = subprocess.run(args + [str(tmp_path / "data.bin")], capture_output=True, text=True)
    return out.returncode == 0 and "Verified OK" in out.stdout


def request_json(prepared):
    """The JSON body of a request the SDK sent (None without a body)."""
    if prepared.body is None:
        return None
    raw = prepared.body if isinstance(prepared.body, (bytes, bytearray)) else prepared.body.encode()
    return json.loads(raw)


def audit_records(gateway):
    """Every committed audit record, read page by page as the bootstrap administrator."""
    records, after = [], 0
    while True:
        page = gateway.ok("GET", f"/audit?after={after}&limit=1000")
        records += page["records"]
        # A short page is the end (each read is itself recorded, so the log keeps growing).
        if len(page["records"]) < 1000 or page.get("nextAfter") in (None, after):
            return records
        after = page["nextAfter"]
