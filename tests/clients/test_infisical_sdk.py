"""Infisical's official Python SDK (`infisicalsdk`) against the gateway, exactly as its
users drive Infisical: universal-auth login, then its KMS methods. Routes the SDK has no
method for (sign, verify, public key, token renew) go through the SDK's own transport
(`client.api`), or plain HTTP where it would not be logged in.

What the SDK sends and reads (infisicalsdk 1.0.18) is pinned here so that a change of
the server that breaks it fails a test: the key object's fields it requires, the login
reply's fields, `{}` as the body of DELETE, `message` of errors.
"""

import base64
import dataclasses
import datetime
import hashlib
from http import HTTPStatus
import json
import os
import pathlib
import uuid

import pytest
import requests
from infisical_sdk.api_types import KmsKey, KmsKeysOrderBy, OrderDirection, SymmetricEncryption
from infisical_sdk.infisical_requests import APIError

from helpers import (ACCESS_TOKEN_MAX_TTL, ACCESS_TOKEN_TTL, b64, make_universal_auth_identity, new_sdk,
                     openssl_verifies, request_json, sdk_call, unique)

OPENAPI = pathlib.Path(__file__).resolve().parents[2] / "src/api/native/openapi.json"
# The key object's fields the SDK requires (a missing one is a TypeError in the SDK).
SDK_KEY_FIELDS = {"id", "description", "isDisabled", "orgId", "name", "createdAt", "updatedAt", "projectId",
                  "version", "encryptionAlgorithm"}


def raw_key(gateway, key_id):
    """The key object as the server sends it (all fields, not only the SDK's)."""
    return gateway.ok("GET", f"/kms/keys/{key_id}")["key"]


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_problem(exc, status, code):
    """The SDK's exception carries the server's problem+json, and shows its `message`."""
    assert isinstance(exc, APIError)
    body = exc.response
    assert exc.status_code == status, body
    assert body["code"] == code, body
    assert body["statusCode"] == status and body["status"] == status, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["message"] == body["detail"], body
    assert body["reqId"] == body["requestId"] and body["reqId"], body
    assert body["error"] == HTTPStatus(status).phrase, body
    # What an SDK user sees: the server's human message, then the status.
    assert str(exc) == f"{body['message']} (Status: {status})"


def test_the_pinned_sdk_reads_these_key_fields():
    assert {f.name for f in dataclasses.fields(KmsKey)} == SDK_KEY_FIELDS


# --- universal auth -------------------------------------------------------------------

def test_universal_auth_login_returns_infisicals_token_reply(sdk_login):
    client, login = sdk_login
    assert login.tokenType == "Bearer"
    assert isinstance(login.accessToken, str) and len(login.accessToken) >= 32
    assert login.expiresIn == ACCESS_TOKEN_TTL
    assert login.accessTokenMaxTTL == ACCESS_TOKEN_MAX_TTL
    # The SDK keeps the access token and sends it from then on.
    assert client.get_token() == login.accessToken
    assert client.api.session.headers["Authorization"] == f"Bearer {login.accessToken}"


def test_sdk_requests_carry_the_login_token(sdk, sdk_login, project, sent):
    sdk.kms.list_keys(project_id=project)
    assert len(sent) == 1
    req = sent[0]
    assert req.method == "GET"
    assert req.headers["Authorization"] == f"Bearer {sdk_login[1].accessToken}"
    assert req.headers["Accept"] == "application/json"
    assert req.url.startswith(sdk.host + "/api/v1/kms/keys?")


def test_wrong_client_secret_is_401_and_the_sdk_shows_the_message(gateway, ua_identity):
    client = new_sdk(gateway)
    with pytest.raises(APIError) as caught:
        client.auth.universal_auth.login(client_id=ua_identity["clientId"], client_secret="wrong-" + uuid.uuid4().hex)
    assert_problem(caught.value, 401, "invalid_credentials")
    assert caught.value.response["error"] == "Unauthorized"
    assert client.get_token() is None, "a failed login sets no token"


def test_token_renew_gives_a_token_the_sdk_can_use(gateway, ua_identity, project):
    client = new_sdk(gateway)
    login = client.auth.universal_auth.login(ua_identity["clientId"], ua_identity["clientSecret"])
    # The SDK has no renew method: plain HTTP, no bearer, as Infisical's API takes it.
    status, renewed = gateway.call("POST", "/auth/token/renew", {"accessToken": login.accessToken}, token="")
    assert status == 200, renewed
    assert renewed["tokenType"] == "Bearer"
    assert isinstance(renewed["accessToken"], str) and renewed["accessToken"]
    assert 0 < renewed["expiresIn"] <= ACCESS_TOKEN_TTL
    assert renewed["accessTokenMaxTTL"] == ACCESS_TOKEN_MAX_TTL
    client.auth.token_auth.login(renewed["accessToken"])
    listed = client.kms.list_keys(project_id=project)
    assert listed.totalCount == len(listed.keys)


def test_renewing_an_unknown_token_is_401(gateway):
    status, body = gateway.call("POST", "/auth/token/renew", {"accessToken": "not-a-token"}, token="")
    assert status == 401, body
    assert body["statusCode"] == 401 and body["message"]


# --- keys: create, get, list, update, disable, delete --------------------------------

def test_create_key_without_key_usage(sdk, gateway, project, sent):
    name = unique("orders")
    key = sdk.kms.create_key(name=name, project_id=project,
                             encryption_algorithm=SymmetricEncryption.AES_GCM_256, description="card data")
    body = request_json(sent[0])
    assert sent[0].method == "POST" and sent[0].url == sdk.host + "/api/v1/kms/keys"
    assert body == {"name": name, "projectId": project, "encryptionAlgorithm": "aes-256-gcm",
                    "description": "card data"}, "what the SDK sends: no keyUsage"
    assert isinstance(key, KmsKey)
    assert key.name == name and key.projectId == project and key.description == "card data"
    assert key.encryptionAlgorithm == "aes-256-gcm"
    assert key.isDisabled is False and key.version == 1
    assert uuid.UUID(key.id)
    assert key.orgId == gateway.ok("GET", "/status")["orgId"] and key.orgId
    assert parse_time(key.createdAt) <= parse_time(key.updatedAt)
    full = raw_key(gateway, key.id)
    assert SDK_KEY_FIELDS <= set(full)
    assert full["keyUsage"] == "encrypt-decrypt", "keyUsage defaults to encrypt-decrypt"
    assert full["keyState"] == "Enabled" and full["protection"] == "software"
    assert [v["version"] for v in full["versions"]] == [1]


def test_create_aes_128_key(sdk, project):
    key = sdk.kms.create_key(name=unique("aes128"), project_id=project,
                             encryption_algorithm=SymmetricEncryption.AES_GCM_128)
    assert key.encryptionAlgorithm == "aes-128-gcm"
    assert key.description == "", "no description: an empty one, as Infisical"


def test_get_key_by_id_and_by_name(sdk, project, sent):
    created = sdk.kms.create_key(name=unique("lookup"), project_id=project,
                                 encryption_algorithm=SymmetricEncryption.AES_GCM_256, description="find me")
    by_id = sdk.kms.get_key_by_id(created.id)
    by_name = sdk.kms.get_key_by_name(key_name=created.name, project_id=project)
    assert by_id == created
    assert by_name == created
    assert sent[2].url == f"{sdk.host}/api/v1/kms/keys/key-name/{created.name}?projectId={project}"


def test_list_keys_with_search_order_and_paging(sdk, project, sent):
    prefix = unique("list")
    names = [f"{prefix}-b", f"{prefix}-a", f"{prefix}-c"]
    for n in names:
        sdk.kms.create_key(name=n, project_id=project, encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    sdk.kms.create_key(name=unique("other"), project_id=project, encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    sent.clear()
    found = sdk.kms.list_keys(project_id=project, search=prefix)
    query = sent[0].url.split("?", 1)[1].split("&")
    assert sorted(query) == sorted([f"projectId={project}", f"search={prefix}", "offset=0", "limit=100",
                                    "orderBy=name", "orderDirection=asc"]), "what the SDK sends"
    assert found.totalCount == 3
    assert [k.name for k in found.keys] == sorted(names)
    assert all(isinstance(k, KmsKey) and k.projectId == project for k in found.keys)
    down = sdk.kms.list_keys(project_id=project, search=prefix, order_by=KmsKeysOrderBy.NAME,
                             order_direction=OrderDirection.DESC)
    assert [k.name for k in down.keys] == sorted(names, reverse=True)
    page = sdk.kms.list_keys(project_id=project, search=prefix, offset=1, limit=1)
    assert page.totalCount == 3 and [k.name for k in page.keys] == [sorted(names)[1]]


def test_update_key_renames_and_describes(sdk, project, sent):
    key = sdk.kms.create_key(name=unique("before"), project_id=project,
                             encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    new_name = unique("after")
    sent.clear()
    updated = sdk.kms.update_key(key_id=key.id, name=new_name, description="renamed")
    assert sent[0].method == "PATCH" and request_json(sent[0]) == {"name": new_name, "description": "renamed"}
    assert updated.id == key.id and updated.name == new_name and updated.description == "renamed"
    assert updated.isDisabled is False
    assert parse_time(updated.updatedAt) >= parse_time(key.updatedAt)
    assert sdk.kms.get_key_by_name(key_name=new_name, project_id=project).id == key.id
    with pytest.raises(APIError) as caught:
        sdk.kms.get_key_by_name(key_name=key.name, project_id=project)
    assert_problem(caught.value, 404, "key_not_found")


def test_disable_then_enable_a_key(sdk, gateway, project):
    key = sdk.kms.create_key(name=unique("toggle"), project_id=project,
                             encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    disabled = sdk.kms.update_key(key_id=key.id, is_disabled=True)
    assert disabled.isDisabled is True
    assert raw_key(gateway, key.id)["keyState"] == "Disabled"
    with pytest.raises(APIError) as caught:
        sdk.kms.encrypt_data(key_id=key.id, base64EncodedPlaintext=b64(b"x"))
    assert_problem(caught.value, 409, "key_disabled")
    enabled = sdk.kms.update_key(key_id=key.id, is_disabled=False)
    assert enabled.isDisabled is False
    assert sdk.kms.encrypt_data(key_id=key.id, base64EncodedPlaintext=b64(b"x"))


def test_delete_key_schedules_its_deletion(sdk, gateway, project, sent):
    key = sdk.kms.create_key(name=unique("doomed"), project_id=project,
                             encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    sent.clear()
    deleted = sdk.kms.delete_key(key_id=key.id)
    req = sent[0]
    assert req.method == "DELETE" and req.url == f"{sdk.host}/api/v1/kms/keys/{key.id}"
    assert req.body == b"{}" and req.headers["Content-Type"] == "application/json", \
        "the SDK sends a JSON body {} on DELETE"
    assert isinstance(deleted, KmsKey) and deleted.id == key.id
    full = raw_key(gateway, key.id)
    assert full["keyState"] == "PendingDeletion"
    days = (parse_time(full["deletionDate"]) - datetime.datetime.now(datetime.timezone.utc)).days
    assert 29 <= days <= 30, full["deletionDate"]
    with pytest.raises(APIError) as caught:
        sdk.kms.encrypt_data(key_id=key.id, base64EncodedPlaintext=b64(b"x"))
    assert_problem(caught.value, 409, "key_pending_deletion")
    with pytest.raises(APIError) as caught:
        sdk.kms.delete_key(key_id=key.id)
    assert_problem(caught.value, 409, "key_pending_deletion")
    restored = sdk_call(sdk, "POST", f"/api/v1/kms/keys/{key.id}/cancel-deletion")["key"]
    assert restored["keyState"] != "PendingDeletion" and restored["deletionDate"] is None


# --- encrypt / decrypt ----------------------------------------------------------------

@pytest.fixture(scope="module")
def aes_key(sdk, project):
    return sdk.kms.create_key(name=unique("data"), project_id=project,
                              encryption_algorithm=SymmetricEncryption.AES_GCM_256)


def test_encrypt_decrypt_round_trip(sdk, aes_key, sent):
    plaintext = bytes(range(256)) + "carte 4111 € ✓".encode()
    first = sdk.kms.encrypt_data(key_id=aes_key.id, base64EncodedPlaintext=b64(plaintext))
    second = sdk.kms.encrypt_data(key_id=aes_key.id, base64EncodedPlaintext=b64(plaintext))
    assert request_json(sent[0]) == {"plaintext": b64(plaintext)}, "what the SDK sends"
    assert first != second, "a fresh nonce per encryption"
    assert plaintext not in base64.b64decode(first)
    assert base64.b64decode(sdk.kms.decrypt_data(key_id=aes_key.id, ciphertext=first)) == plaintext
    assert base64.b64decode(sdk.kms.decrypt_data(key_id=aes_key.id, ciphertext=second)) == plaintext
    assert request_json(sent[2]) == {"ciphertext": first}


def test_altered_ciphertext_is_refused_with_a_message(sdk, aes_key):
    ct = bytearray(base64.b64decode(sdk.kms.encrypt_data(key_id=aes_key.id, base64EncodedPlaintext=b64(b"secret"))))
    ct[-1] ^= 1
    with pytest.raises(APIError) as caught:
        sdk.kms.decrypt_data(key_id=aes_key.id, ciphertext=b64(bytes(ct)))
    assert_problem(caught.value, 400, "decryption_failed")


def test_ciphertext_of_another_key_is_refused(sdk, project, aes_key):
    other = sdk.kms.create_key(name=unique("other"), project_id=project,
                               encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    ct = sdk.kms.encrypt_data(key_id=other.id, base64EncodedPlaintext=b64(b"secret"))
    with pytest.raises(APIError) as caught:
        sdk.kms.decrypt_data(key_id=aes_key.id, ciphertext=ct)
    assert_problem(caught.value, 400, "ciphertext_key_mismatch")


def test_body_key_id_must_match_the_path(sdk, aes_key):
    path = f"/api/v1/kms/keys/{aes_key.id}/encrypt"
    same = sdk_call(sdk, "POST", path, {"plaintext": b64(b"hi"), "keyId": aes_key.id})
    assert base64.b64decode(sdk.kms.decrypt_data(key_id=aes_key.id, ciphertext=same["ciphertext"])) == b"hi"
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", path, {"plaintext": b64(b"hi"), "keyId": str(uuid.uuid4())})
    assert_problem(caught.value, 400, "key_id_mismatch")


def test_unknown_fields_are_ignored_wrong_types_and_bad_json_refused(sdk, aes_key):
    path = f"/api/v1/kms/keys/{aes_key.id}/encrypt"
    reply = sdk_call(sdk, "POST", path, {"plaintext": b64(b"hi"), "someFutureField": {"x": 1}})
    assert reply["ciphertext"]
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", path, {"plaintext": 12345})
    assert_problem(caught.value, 400, "invalid_request")
    # Malformed JSON, through the SDK's session (its headers and token).
    resp = sdk.api.session.post(sdk.host + path, data=b'{"plaintext": ')
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.json()["code"] == "malformed_json" and resp.json()["message"]


def test_unknown_key_is_404_and_the_sdk_shows_the_message(sdk):
    with pytest.raises(APIError) as caught:
        sdk.kms.get_key_by_id(str(uuid.uuid4()))
    assert_problem(caught.value, 404, "key_not_found")
    assert caught.value.response["error"] == "Not Found"
    assert caught.value.response["title"] == "Not Found"


def test_invalid_key_name_is_refused_with_a_message(sdk, project):
    with pytest.raises(APIError) as caught:
        sdk.kms.create_key(name="Not A Valid Name!", project_id=project,
                           encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    assert_problem(caught.value, 400, "invalid_name")
    with pytest.raises(APIError) as caught:
        sdk.kms.create_key(name="x" * 33, project_id=project, encryption_algorithm=SymmetricEncryption.AES_GCM_256)
    assert_problem(caught.value, 400, "invalid_name")


def test_another_projects_key_is_not_found(sdk, gateway):
    elsewhere = gateway.ok("POST", "/projects", {"name": unique("elsewhere")})["project"]["id"]
    key = gateway.ok("POST", "/kms/keys", {"projectId": elsewhere, "name": unique("theirs")})["key"]
    with pytest.raises(APIError) as caught:
        sdk.kms.get_key_by_id(key["id"])
    assert_problem(caught.value, 404, "key_not_found")


# --- sign / verify --------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PSS_SHA_512"])
def test_rsa_sign_verify_checked_by_openssl(sdk, rsa_key, algorithm, tmp_path):
    assert rsa_key["keyUsage"] == "sign-verify" and rsa_key["encryptionAlgorithm"] == "RSA_4096"
    base = f"/api/v1/kms/keys/{rsa_key['id']}"
    data = f"release 1.0 {algorithm}".encode()
    signed = sdk_call(sdk, "POST", base + "/sign", {"data": b64(data), "signingAlgorithm": algorithm})
    assert signed["keyId"] == rsa_key["id"] and signed["signingAlgorithm"] == algorithm
    assert len(base64.b64decode(signed["signature"])) == 512, "RSA-4096: a 512-byte signature"
    public = sdk_call(sdk, "GET", base + "/public-key")["publicKey"]
    assert openssl_verifies(tmp_path, public, algorithm, data, signed["signature"])
    assert not openssl_verifies(tmp_path, public, algorithm, data + b"!", signed["signature"])
    ok = sdk_call(sdk, "POST", base + "/verify",
                  {"data": b64(data), "signature": signed["signature"], "signingAlgorithm": algorithm})
    assert ok == {"signatureValid": True, "keyId": rsa_key["id"], "signingAlgorithm": algorithm}
    bad = sdk_call(sdk, "POST", base + "/verify",
                   {"data": b64(data + b"!"), "signature": signed["signature"], "signingAlgorithm": algorithm})
    assert bad["signatureValid"] is False


def test_ecc_sign_verify_checked_by_openssl(sdk, ecc_key, tmp_path):
    assert ecc_key["encryptionAlgorithm"] == "ECC_NIST_P256"
    base = f"/api/v1/kms/keys/{ecc_key['id']}"
    algs = sdk_call(sdk, "GET", base + "/signing-algorithms")["signingAlgorithms"]
    assert "ECDSA_SHA_256" in algs and not any(a.startswith("RSASSA") for a in algs)
    data = b"ecc message"
    public = sdk_call(sdk, "GET", base + "/public-key")["publicKey"]
    signed = sdk_call(sdk, "POST", base + "/sign", {"data": b64(data), "signingAlgorithm": "ECDSA_SHA_256"})
    assert openssl_verifies(tmp_path, public, "ECDSA_SHA_256", data, signed["signature"])
    # Over a digest the caller made: the same signature check over the message.
    digest = hashlib.sha256(data).digest()
    over_digest = sdk_call(sdk, "POST", base + "/sign",
                           {"data": b64(digest), "signingAlgorithm": "ECDSA_SHA_256", "isDigest": True})
    assert openssl_verifies(tmp_path, public, "ECDSA_SHA_256", data, over_digest["signature"])
    ok = sdk_call(sdk, "POST", base + "/verify", {"data": b64(digest), "signature": over_digest["signature"],
                                                  "signingAlgorithm": "ECDSA_SHA_256", "isDigest": True})
    assert ok["signatureValid"] is True


def test_signing_errors_show_the_servers_message(sdk, rsa_key, ecc_key, aes_key):
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", f"/api/v1/kms/keys/{rsa_key['id']}/sign",
                 {"data": b64(hashlib.sha256(b"m").digest()), "signingAlgorithm": "RSASSA_PSS_SHA_256", "isDigest": True})
    assert_problem(caught.value, 400, "pss_digest_not_supported")
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", f"/api/v1/kms/keys/{ecc_key['id']}/sign",
                 {"data": b64(b"m"), "signingAlgorithm": "RSASSA_PSS_SHA_256"})
    assert_problem(caught.value, 400, "invalid_signing_algorithm")
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", f"/api/v1/kms/keys/{aes_key.id}/sign",
                 {"data": b64(b"m"), "signingAlgorithm": "ECDSA_SHA_256"})
    assert_problem(caught.value, 400, "wrong_key_usage")
    with pytest.raises(APIError) as caught:
        sdk.kms.encrypt_data(key_id=rsa_key["id"], base64EncodedPlaintext=b64(b"m"))
    assert_problem(caught.value, 400, "wrong_key_usage")


@pytest.mark.parametrize("algorithm,key_class,signature_len", [
    ("ML_DSA_44", "MLDSA44PublicKey", 2420),
    ("ML_DSA_65", "MLDSA65PublicKey", 3309),
    ("ML_DSA_87", "MLDSA87PublicKey", 4627),
])
def test_ml_dsa_sign_verify_checked_by_cryptography(sdk, project, algorithm, key_class, signature_len):
    """ML-DSA keys through the native API, as Infisical names them (the signing algorithm is
    the key type; AWS's ML_DSA_SHAKE_256 is accepted too), verified by a second
    implementation: PyPI `cryptography` (its wheel's OpenSSL has ML-DSA; Debian 12's has not)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import mldsa
    key = sdk_call(sdk, "POST", "/api/v1/kms/keys", {
        "projectId": project, "name": unique("mldsa"), "keyUsage": "sign-verify",
        "encryptionAlgorithm": algorithm})["key"]
    assert key["encryptionAlgorithm"] == algorithm
    base = f"/api/v1/kms/keys/{key['id']}"
    algs = sdk_call(sdk, "GET", base + "/signing-algorithms")["signingAlgorithms"]
    assert algs == [algorithm, "ML_DSA_SHAKE_256"]
    public = serialization.load_der_public_key(
        base64.b64decode(sdk_call(sdk, "GET", base + "/public-key")["publicKey"]))
    assert isinstance(public, getattr(mldsa, key_class)), type(public)
    data = f"release 2.0 signed with {algorithm}".encode()
    for name in (algorithm, "ML_DSA_SHAKE_256"):
        signed = sdk_call(sdk, "POST", base + "/sign", {"data": b64(data), "signingAlgorithm": name})
        assert signed["signingAlgorithm"] == name
        signature = base64.b64decode(signed["signature"])
        assert len(signature) == signature_len
        public.verify(signature, data)
        with pytest.raises(InvalidSignature):
            public.verify(signature, data + b"!")
        ok = sdk_call(sdk, "POST", base + "/verify",
                      {"data": b64(data), "signature": signed["signature"], "signingAlgorithm": name})
        assert ok == {"signatureValid": True, "keyId": key["id"], "signingAlgorithm": name}
        bad = sdk_call(sdk, "POST", base + "/verify",
                       {"data": b64(data + b"!"), "signature": signed["signature"], "signingAlgorithm": name})
        assert bad["signatureValid"] is False
    # A signature `cryptography` made with a key of its own does not verify as this key's.
    own = getattr(mldsa, key_class.replace("Public", "Private")).generate()
    theirs = sdk_call(sdk, "POST", base + "/verify",
                      {"data": b64(data), "signature": b64(own.sign(data)), "signingAlgorithm": algorithm})
    assert theirs["signatureValid"] is False
    # isDigest is refused, as Infisical does ("ML-DSA does not support digested input").
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", base + "/sign",
                 {"data": b64(hashlib.sha256(data).digest()), "signingAlgorithm": algorithm, "isDigest": True})
    assert_problem(caught.value, 400, "digest_not_supported")
    other = {"ML_DSA_44": "ML_DSA_65", "ML_DSA_65": "ML_DSA_87", "ML_DSA_87": "ML_DSA_44"}[algorithm]
    with pytest.raises(APIError) as caught:
        sdk_call(sdk, "POST", base + "/sign", {"data": b64(data), "signingAlgorithm": other})
    assert_problem(caught.value, 400, "invalid_signing_algorithm")


def test_ed25519_and_p521_sign_verify_checked_by_cryptography(sdk, project):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    data = b"signed through the native API"
    for algorithm, signing in (("ED25519", "ED25519_SHA_512"), ("ECC_NIST_P521", "ECDSA_SHA_512")):
        key = sdk_call(sdk, "POST", "/api/v1/kms/keys", {
            "projectId": project, "name": unique(algorithm.lower().replace("_", "-")),
            "keyUsage": "sign-verify", "encryptionAlgorithm": algorithm})["key"]
        base = f"/api/v1/kms/keys/{key['id']}"
        public = serialization.load_der_public_key(
            base64.b64decode(sdk_call(sdk, "GET", base + "/public-key")["publicKey"]))
        signature = base64.b64decode(
            sdk_call(sdk, "POST", base + "/sign", {"data": b64(data), "signingAlgorithm": signing})["signature"])
        if algorithm == "ED25519":
            assert isinstance(public, Ed25519PublicKey) and len(signature) == 64
            public.verify(signature, data)
            with pytest.raises(APIError) as caught:
                sdk_call(sdk, "POST", base + "/sign",
                         {"data": b64(hashlib.sha512(data).digest()), "signingAlgorithm": signing, "isDigest": True})
            assert_problem(caught.value, 400, "digest_not_supported")
        else:
            assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp521r1"
            public.verify(signature, data, ec.ECDSA(hashes.SHA512()))


# --- transport and document -----------------------------------------------------------

def test_tls_is_verified_against_the_dev_ca(gateway):
    # Without the dev CA the gateway's certificate is not trusted: the TLS is real.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(gateway.base_url + "/healthz", verify=requests.certs.where(), timeout=30)
    assert requests.get(gateway.base_url + "/healthz", verify=gateway.ca_file, timeout=30).status_code == 200
    assert os.environ["REQUESTS_CA_BUNDLE"] == gateway.ca_file


def test_openapi_document_is_served_without_a_token(gateway):
    status, served = gateway.call("GET", "/openapi.json", token="")
    assert status == 200, served
    same = served == json.loads(OPENAPI.read_text())
    assert same, "the served document is not src/api/native/openapi.json (a gateway built before it changed?)"
    assert served["openapi"].startswith("3.1")


def test_no_token_is_401_with_infisicals_error_members(gateway, project):
    status, body = gateway.call("GET", f"/kms/keys?projectId={project}", token="")
    assert status == 401
    assert body["statusCode"] == 401 and body["error"] == "Unauthorized" and body["message"]
    assert body["reqId"] == body["requestId"]


# Last: it makes failed logins pile up, which the gateway then throttles.
def test_repeated_failed_logins_are_throttled(gateway, project):
    victim = make_universal_auth_identity(gateway, project, unique("throttled"))
    statuses = []
    for _ in range(30):
        resp = requests.post(gateway.api + "/auth/universal-auth/login",
                             json={"clientId": victim["clientId"], "clientSecret": "wrong"},
                             verify=gateway.ca_file, timeout=30)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.json()["statusCode"] == 429 and resp.json()["message"]
            break
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
