"""AWS's external key store proxy API (XKS) on the real gateway scripts/client-tests.sh
started (real TLS, SoftHSM2 token; `xks.uri_path_prefix = /example/xks`), as AWS KMS calls
it: JSON bodies with the specification's fields, signed by botocore's own Signature Version
4 signer with the service `kms-xks-proxy` and an identity's access key. The external keys
are HSM-resident AES-256 keys of the gateway."""

import base64
import datetime
import hashlib
import json
import uuid

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests

from helpers import audit_records, unique

PREFIX = "/example/xks"
SERVICE = "kms-xks-proxy"


def metadata(operation="Encrypt"):
    return {"awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice", "kmsKeyArn":
            "arn:aws:kms:us-east-2:123456789012:key/12345678-abcd-abcd-abcd-123456789012",
            "kmsOperation": operation, "kmsRequestId": str(uuid.uuid4()), "kmsViaService": "ebs"}


class Proxy:
    def __init__(self, gateway, key, service=SERVICE, secret=None):
        self.gateway, self.key, self.service, self.secret = gateway, key, service, secret

    def request(self, path, body, method="POST", when=None):
        url = f"{self.gateway.base_url}{PREFIX}/kms/xks/v1{path}"
        raw = json.dumps(body).encode() if body is not None else b""
        request = botocore.awsrequest.AWSRequest(method=method, url=url, data=raw,
                                                 headers={"Content-Type": "application/json"})
        credentials = botocore.credentials.Credentials(self.key["accessKeyId"],
                                                       self.secret or self.key["secretAccessKey"])
        signer = botocore.auth.SigV4Auth(credentials, self.service, "us-east-2")
        if when is not None:
            original = botocore.auth.get_current_datetime
            botocore.auth.get_current_datetime = lambda *a, **k: when
        try:
            signer.add_auth(request)
        finally:
            if when is not None:
                botocore.auth.get_current_datetime = original
        resp = requests.request(method, url, data=raw, headers=dict(request.headers.items()),
                                verify=self.gateway.ca_file, timeout=60)
        return resp.status_code, resp.json()

    def ok(self, path, body):
        status, reply = self.request(path, body)
        assert status == 200, (path, status, reply)
        return reply


@pytest.fixture(scope="module")
def xks_setup(gateway):
    project = gateway.ok("POST", "/projects", {"name": unique("xks")})["project"]["id"]
    identity = gateway.ok("POST", "/identities", {"name": unique("aws-kms-xks"), "projectId": project,
                                                  "permissions": ["encrypt", "decrypt", "read"]})["identity"]["id"]
    access = gateway.ok("POST", f"/identities/{identity}/access-keys")["accessKey"]
    return project, identity, access


@pytest.fixture(scope="module")
def proxy(gateway, xks_setup):
    return Proxy(gateway, xks_setup[2])


def hsm_key(gateway, project):
    return gateway.ok("POST", "/kms/keys", {"projectId": project, "name": unique("external"),
                                            "protection": "hsm"})["key"]["id"]


@pytest.fixture(scope="module")
def external_key(gateway, xks_setup):
    return hsm_key(gateway, xks_setup[0])


def b64(data):
    return base64.b64encode(data).decode()


def test_health(proxy):
    reply = proxy.ok("/health", {"requestMetadata": {"kmsRequestId": str(uuid.uuid4()), "kmsOperation": "CreateCustomKeyStore"}})
    assert reply["xksProxyVendor"] == "KMS Gateway" and reply["xksProxyModel"].startswith("kms-gateway")
    assert reply["xksProxyFleetSize"] == 1 and isinstance(reply["xksProxyFipsCompliant"], bool)
    assert reply["ekmVendor"].startswith("SoftHSM"), reply  # the token's manufacturer id
    [hsm] = reply["ekmFleetDetails"]
    assert hsm["healthStatus"] == "ACTIVE" and hsm["model"] and hsm["id"]
    # Health checks need no requestMetadata (the specification exempts them).
    assert proxy.ok("/health", {})["xksProxyFleetSize"] == 1


def test_metadata(proxy, external_key):
    reply = proxy.ok(f"/keys/{external_key}/metadata", {"requestMetadata": metadata("CreateKey")})
    assert reply == {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"}


def test_encrypt_decrypt_with_aad_and_integrity_value(proxy, external_key):
    aad = b"aws kms' own AAD for this request"
    plaintext = b"\x01" * 32 + b"kms-key-material-ciphertext"
    reply = proxy.ok(f"/keys/{external_key}/encrypt", {
        "requestMetadata": metadata(), "additionalAuthenticatedData": b64(aad), "plaintext": b64(plaintext),
        "encryptionAlgorithm": "AES_GCM", "ciphertextDataIntegrityValueAlgorithm": "SHA_256"})
    iv, ct, tag = (base64.b64decode(reply[k]) for k in ("initializationVector", "ciphertext", "authenticationTag"))
    assert len(iv) == 12 and len(tag) == 16 and len(ct) == len(plaintext) and ct != plaintext
    assert base64.b64decode(reply["ciphertextDataIntegrityValue"]) == hashlib.sha256(aad + iv + ct + tag).digest()
    again = proxy.ok(f"/keys/{external_key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(plaintext),
                                                       "additionalAuthenticatedData": b64(aad), "encryptionAlgorithm": "AES_GCM"})
    assert again["initializationVector"] != reply["initializationVector"], "a fresh IV every time"
    assert "ciphertextDataIntegrityValue" not in again

    decrypt = {"requestMetadata": metadata("Decrypt"), "additionalAuthenticatedData": b64(aad),
               "encryptionAlgorithm": "AES_GCM", "ciphertext": reply["ciphertext"],
               "initializationVector": reply["initializationVector"], "authenticationTag": reply["authenticationTag"]}
    assert base64.b64decode(proxy.ok(f"/keys/{external_key}/decrypt", decrypt)["plaintext"]) == plaintext

    # Without AAD too.
    bare = proxy.ok(f"/keys/{external_key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"x"),
                                                      "encryptionAlgorithm": "AES_GCM"})
    assert base64.b64decode(proxy.ok(f"/keys/{external_key}/decrypt", {
        "requestMetadata": metadata("Decrypt"), "encryptionAlgorithm": "AES_GCM", "ciphertext": bare["ciphertext"],
        "initializationVector": bare["initializationVector"], "authenticationTag": bare["authenticationTag"]})["plaintext"]) == b"x"

    # Another AAD, tag, IV or ciphertext: InvalidCiphertextException.
    flipped = lambda s: b64(bytes([base64.b64decode(s)[0] ^ 1]) + base64.b64decode(s)[1:])
    for change in ({"additionalAuthenticatedData": b64(b"other")}, {"authenticationTag": flipped(reply["authenticationTag"])},
                   {"initializationVector": flipped(reply["initializationVector"])}, {"ciphertext": flipped(reply["ciphertext"])},
                   {"initializationVector": b64(b"\x00" * 16)}, {"ciphertextMetadata": b64(b"meta")}):
        status, err = proxy.request(f"/keys/{external_key}/decrypt", {**decrypt, **change})
        assert (status, err["errorName"]) == (400, "InvalidCiphertextException"), (change, err)


def test_plaintext_bounds(proxy, external_key):
    # The specification: a proxy takes at least 4300 bytes.
    big = proxy.ok(f"/keys/{external_key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"p" * 4300),
                                                     "encryptionAlgorithm": "AES_GCM"})
    assert len(base64.b64decode(big["ciphertext"])) == 4300


def test_validation_errors(proxy, external_key):
    good = {"requestMetadata": metadata(), "plaintext": b64(b"p"), "encryptionAlgorithm": "AES_GCM"}
    for bad in ({k: v for k, v in good.items() if k != "requestMetadata"}, {**good, "encryptionAlgorithm": "AES_CBC"},
                {**good, "plaintext": "***"}, {k: v for k, v in good.items() if k != "plaintext"},
                {**good, "ciphertextDataIntegrityValueAlgorithm": "MD5"},
                {**good, "additionalAuthenticatedData": b64(b"a" * 8193)}):
        status, err = proxy.request(f"/keys/{external_key}/encrypt", bad)
        assert (status, err["errorName"]) == (400, "ValidationException"), (bad, err)
    status, err = proxy.request(f"/keys/{external_key}/encrypt", None)
    assert (status, err["errorName"]) == (400, "ValidationException")


def test_unknown_keys_paths_and_key_kinds(gateway, proxy, xks_setup):
    status, err = proxy.request(f"/keys/{uuid.uuid4()}/metadata", {"requestMetadata": metadata("DescribeKey")})
    assert (status, err["errorName"]) == (404, "KeyNotFoundException"), err
    status, err = proxy.request("/keys/not-a-gateway-key/encrypt", {"requestMetadata": metadata()})
    assert (status, err["errorName"]) == (404, "KeyNotFoundException"), err
    status, err = proxy.request("/keys/x/sign", {"requestMetadata": metadata()})
    assert (status, err["errorName"]) == (404, "InvalidUriPathException"), err
    status, err = proxy.request("/nothing-here", {"requestMetadata": metadata()})
    assert (status, err["errorName"]) == (404, "InvalidUriPathException"), err
    # A software key is no external key.
    software = gateway.ok("POST", "/kms/keys", {"projectId": xks_setup[0], "name": unique("soft")})["key"]["id"]
    status, err = proxy.request(f"/keys/{software}/metadata", {"requestMetadata": metadata("CreateKey")})
    assert (status, err["errorName"]) == (400, "InvalidKeyUsageException"), err
    status, err = proxy.request(f"/keys/{software}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"p"),
                                                             "encryptionAlgorithm": "AES_GCM"})
    assert (status, err["errorName"]) == (400, "InvalidKeyUsageException"), err
    # Another project's key is not found.
    other = gateway.ok("POST", "/projects", {"name": unique("xks-other")})["project"]["id"]
    theirs = hsm_key(gateway, other)
    status, err = proxy.request(f"/keys/{theirs}/metadata", {"requestMetadata": metadata("DescribeKey")})
    assert (status, err["errorName"]) == (404, "KeyNotFoundException"), err


def test_a_key_disabled_in_the_gateway_fails_aws_side_encrypt(gateway, proxy, xks_setup):
    key = hsm_key(gateway, xks_setup[0])
    sealed = proxy.ok(f"/keys/{key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"dek"),
                                               "encryptionAlgorithm": "AES_GCM"})
    gateway.ok("PATCH", f"/kms/keys/{key}", {"isDisabled": True})
    assert proxy.ok(f"/keys/{key}/metadata", {"requestMetadata": metadata("DescribeKey")})["keyStatus"] == "DISABLED"
    status, err = proxy.request(f"/keys/{key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"dek"),
                                                        "encryptionAlgorithm": "AES_GCM"})
    assert (status, err["errorName"]) == (400, "InvalidStateException"), err
    status, err = proxy.request(f"/keys/{key}/decrypt", {"requestMetadata": metadata("Decrypt"), "encryptionAlgorithm": "AES_GCM",
                                                        **{k: sealed[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}})
    assert (status, err["errorName"]) == (400, "InvalidStateException"), err
    gateway.ok("PATCH", f"/kms/keys/{key}", {"isDisabled": False})
    proxy.ok(f"/keys/{key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"dek"), "encryptionAlgorithm": "AES_GCM"})


def test_sigv4_for_the_xks_service(gateway, proxy, xks_setup, external_key):
    body = {"requestMetadata": metadata("DescribeKey")}
    path = f"/keys/{external_key}/metadata"
    status, err = Proxy(gateway, xks_setup[2], service="kms").request(path, body)
    assert (status, err["errorName"]) == (401, "AuthenticationFailedException"), err
    status, err = Proxy(gateway, xks_setup[2], secret="C" * 44).request(path, body)
    assert (status, err["errorName"]) == (401, "AuthenticationFailedException"), err
    status, err = Proxy(gateway, {"accessKeyId": "AKGWAAAAAAAAAAAAAAAA", "secretAccessKey": "D" * 44}).request(path, body)
    assert (status, err["errorName"]) == (401, "AuthenticationFailedException"), err
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    status, err = proxy.request(path, body, when=stale)
    assert (status, err["errorName"]) == (401, "AuthenticationFailedException"), err
    status, err = proxy.request(path, body, method="PUT")
    assert (status, err["errorName"]) == (501, "UnsupportedOperationException"), err
    # Permissions apply: an identity without decrypt cannot decrypt.
    narrow = gateway.ok("POST", "/identities", {"name": unique("xks-narrow"), "projectId": xks_setup[0],
                                                "permissions": ["encrypt"]})["identity"]["id"]
    narrow_key = gateway.ok("POST", f"/identities/{narrow}/access-keys")["accessKey"]
    limited = Proxy(gateway, narrow_key)
    sealed = limited.ok(f"/keys/{external_key}/encrypt", {"requestMetadata": metadata(), "plaintext": b64(b"p"),
                                                          "encryptionAlgorithm": "AES_GCM"})
    status, err = limited.request(f"/keys/{external_key}/decrypt", {
        "requestMetadata": metadata("Decrypt"), "encryptionAlgorithm": "AES_GCM",
        **{k: sealed[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}})
    assert (status, err["errorName"]) == (403, "AccessDeniedException"), err


def test_xks_calls_are_audited_with_the_kms_request_id(gateway, proxy, external_key):
    meta = metadata()
    proxy.ok(f"/keys/{external_key}/encrypt", {"requestMetadata": meta, "plaintext": b64(b"p"), "encryptionAlgorithm": "AES_GCM"})
    records = audit_records(gateway)
    mine = [r for r in records if r.get("frontend") == "xks" and meta["kmsRequestId"] in (r.get("target") or "")]
    assert [(r["operation"], r["outcome"], r["keyId"]) for r in mine] == [("key.encrypt", "ok", external_key)]
    assert "arn:aws:iam::123456789012:user/Alice" in mine[0]["target"]
