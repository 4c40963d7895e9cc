"""The Vault Transit-compatible API driven by the unmodified `hvac` client (PyPI), against
the real gateway scripts/client-tests.sh started (real TLS, SoftHSM2 token), as the
identities of two projects. Signatures are checked by the `openssl` command line from
the public key the key's read answer shows."""

import base64
import hashlib

import hvac
import hvac.exceptions as vault_errors
import pytest
import requests

from helpers import PROJECT_PERMISSIONS, audit_records, b64, openssl_verifies, unique


def token_identity(gateway, project, name):
    reply = gateway.ok("POST", "/identities", {"name": name, "projectId": project, "permissions": PROJECT_PERMISSIONS})
    return reply["token"]


@pytest.fixture(scope="module")
def vault_project(gateway):
    return gateway.ok("POST", "/projects", {"name": unique("vault")})["project"]["id"]


@pytest.fixture(scope="module")
def vault_token(gateway, vault_project):
    return token_identity(gateway, vault_project, unique("vault-client"))


@pytest.fixture(scope="module")
def vault(gateway, vault_token):
    return hvac.Client(url=gateway.base_url, token=vault_token, verify=gateway.ca_file)


@pytest.fixture(scope="module")
def transit(vault):
    return vault.secrets.transit


def new_key(transit, key_type=None, **options):
    name = unique("k")
    if key_type in ("aes128-gcm96", "hmac"):
        # Types hvac's create_key does not list yet: sent through hvac's own adapter.
        transit._adapter.post(f"/v1/transit/keys/{name}", json={"type": key_type, **options})
    else:
        transit.create_key(name, key_type=key_type, **options)
    return name


def der_b64_of(pem):
    return "".join(line for line in pem.splitlines() if "-----" not in line)


def test_health_token_lookup_and_renewal(gateway, vault, vault_token):
    health = vault.sys.read_health_status(method="GET")
    assert health["initialized"] is True and health["sealed"] is False
    assert vault.is_authenticated()
    me = vault.auth.token.lookup_self()["data"]
    assert me["renewable"] is False and me["ttl"] == 0 and "encrypt" in me["policies"]
    renewed = vault.auth.token.renew_self()["auth"]
    assert renewed["renewable"] is False
    assert renewed["client_token"] == vault_token, "clients replace their token with this one"


def test_encrypt_decrypt_with_the_vault_prefix(transit):
    name = new_key(transit)
    out = transit.encrypt_data(name, plaintext=b64(b"the seal key"))["data"]
    assert out["ciphertext"].startswith("vault:v1:") and out["key_version"] == 1
    back = transit.decrypt_data(name, ciphertext=out["ciphertext"])["data"]["plaintext"]
    assert base64.b64decode(back) == b"the seal key"
    # aes128-gcm96 too.
    small = new_key(transit, "aes128-gcm96")
    ct = transit.encrypt_data(small, plaintext=b64(b"x"))["data"]["ciphertext"]
    assert base64.b64decode(transit.decrypt_data(small, ciphertext=ct)["data"]["plaintext"]) == b"x"


def test_tampered_ciphertext_is_an_invalid_request_and_unknown_keys_invalid_paths(transit):
    name = new_key(transit)
    ct = transit.encrypt_data(name, plaintext=b64(b"secret"))["data"]["ciphertext"]
    raw = bytearray(base64.b64decode(ct.split(":")[2]))
    raw[-1] ^= 1
    tampered = "vault:v1:" + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext=tampered)
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext="not-a-vault-value")
    with pytest.raises(vault_errors.InvalidRequest, match="another key version"):
        transit.decrypt_data(name, ciphertext=ct.replace("vault:v1:", "vault:v2:"))
    # A ciphertext of another key of the project is refused by that key.
    other = new_key(transit)
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(other, ciphertext=ct)
    with pytest.raises(vault_errors.InvalidPath):
        transit.decrypt_data(unique("absent"), ciphertext=ct)
    with pytest.raises(vault_errors.InvalidPath):
        transit.read_key(unique("absent"))


def test_read_key_shows_vaults_fields(transit):
    name = new_key(transit)
    key = transit.read_key(name)["data"]
    assert key["name"] == name and key["type"] == "aes256-gcm96"
    assert key["latest_version"] == 1 and key["min_decryption_version"] == 1
    assert key["min_encryption_version"] == 0 and key["deletion_allowed"] is False
    assert key["exportable"] is False and key["derived"] is False
    assert key["supports_encryption"] and key["supports_decryption"] and not key["supports_signing"]
    assert list(key["keys"]) == ["1"] and isinstance(key["keys"]["1"], int)
    # A second create of the same name answers the key with Vault's warning.
    again = transit.create_key(name)
    assert again["data"]["name"] == name and "already existed" in again["warnings"][0]


def test_rotate_then_rewrap_and_old_ciphertexts_still_decrypt(transit):
    name = new_key(transit)
    v1 = transit.encrypt_data(name, plaintext=b64(b"old"))["data"]["ciphertext"]
    transit.rotate_key(name)
    assert transit.read_key(name)["data"]["latest_version"] == 2
    assert list(transit.read_key(name)["data"]["keys"]) == ["1", "2"]
    assert base64.b64decode(transit.decrypt_data(name, ciphertext=v1)["data"]["plaintext"]) == b"old"
    v2 = transit.rewrap_data(name, ciphertext=v1)["data"]
    assert v2["ciphertext"].startswith("vault:v2:") and v2["key_version"] == 2
    new = transit.encrypt_data(name, plaintext=b64(b"new"))["data"]["ciphertext"]
    assert new.startswith("vault:v2:")
    # Old versions can be retired; the rewrapped ciphertext stays readable.
    transit.update_key_configuration(name, min_decryption_version=2)
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext=v1)
    assert base64.b64decode(transit.decrypt_data(name, ciphertext=v2["ciphertext"])["data"]["plaintext"]) == b"old"
    with pytest.raises(vault_errors.InvalidRequest, match="not supported"):
        transit.trim_key(name, min_version=2)


def test_batch_results_are_in_order_and_a_bad_item_fails_alone(gateway, transit, vault_token):
    name = new_key(transit)
    items = [
        {"plaintext": b64(b"one"), "reference": "a"},
        {"plaintext": "%%% not base64", "reference": "b"},
        {"plaintext": b64(b"three"), "reference": "c"},
    ]
    with pytest.raises(vault_errors.InvalidRequest) as failed:
        transit.encrypt_data(name, batch_input=items)
    results = failed.value.json["data"]["batch_results"]
    assert [r["reference"] for r in results] == ["a", "b", "c"]
    assert results[0]["ciphertext"].startswith("vault:v1:") and "error" not in results[0]
    assert "base64" in results[1]["error"] and "ciphertext" not in results[1]
    assert results[2]["ciphertext"].startswith("vault:v1:")
    # With partial_failure_response_code, a partial failure is answered with that code.
    reply = requests.post(
        f"{gateway.base_url}/v1/transit/encrypt/{name}",
        json={"batch_input": items, "partial_failure_response_code": 200},
        headers={"X-Vault-Token": vault_token}, verify=gateway.ca_file, timeout=60)
    assert reply.status_code == 200 and len(reply.json()["data"]["batch_results"]) == 3
    # Decrypting in a batch gives the plaintexts back in order.
    good = [{"ciphertext": results[0]["ciphertext"]}, {"ciphertext": results[2]["ciphertext"]}]
    out = transit.decrypt_data(name, batch_input=good)["data"]["batch_results"]
    assert [base64.b64decode(r["plaintext"]) for r in out] == [b"one", b"three"]


def test_derived_keys_need_their_context(transit):
    name = new_key(transit, derived=True)
    assert transit.read_key(name)["data"]["derived"] is True
    with pytest.raises(vault_errors.InvalidRequest, match="context"):
        transit.encrypt_data(name, plaintext=b64(b"x"))
    ct = transit.encrypt_data(name, plaintext=b64(b"tenant data"), context=b64(b"tenant-1"))["data"]["ciphertext"]
    back = transit.decrypt_data(name, ciphertext=ct, context=b64(b"tenant-1"))["data"]["plaintext"]
    assert base64.b64decode(back) == b"tenant data"
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext=ct, context=b64(b"tenant-2"))
    # associated_data binds the same way on any key.
    plain = new_key(transit)
    ct = transit.encrypt_data(plain, plaintext=b64(b"x"), associated_data=b64(b"row 7"))["data"]["ciphertext"]
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(plain, ciphertext=ct)
    assert transit.decrypt_data(plain, ciphertext=ct, associated_data=b64(b"row 7"))["data"]["plaintext"] == b64(b"x")


def test_data_keys_plaintext_and_wrapped(transit):
    name = new_key(transit)
    out = transit.generate_data_key(name, key_type="plaintext")["data"]
    key = base64.b64decode(out["plaintext"])
    assert len(key) == 32 and out["ciphertext"].startswith("vault:v1:")
    assert base64.b64decode(transit.decrypt_data(name, ciphertext=out["ciphertext"])["data"]["plaintext"]) == key
    wrapped = transit.generate_data_key(name, key_type="wrapped", bits=512)["data"]
    assert "plaintext" not in wrapped
    assert len(base64.b64decode(transit.decrypt_data(name, ciphertext=wrapped["ciphertext"])["data"]["plaintext"])) == 64
    # hvac checks bits itself; through its adapter the gateway's refusal shows.
    with pytest.raises(vault_errors.InvalidRequest):
        transit._adapter.post(f"/v1/transit/datakey/plaintext/{name}", json={"bits": 100})


def test_list_keys_with_the_list_method(gateway, transit, vault_token):
    names = {new_key(transit), new_key(transit)}
    listed = transit.list_keys()["data"]["keys"]
    assert names <= set(listed)
    raw = requests.request("LIST", f"{gateway.base_url}/v1/transit/keys",
                           headers={"X-Vault-Token": vault_token}, verify=gateway.ca_file, timeout=60)
    assert raw.status_code == 200 and set(raw.json()["data"]["keys"]) == set(listed)
    query = requests.get(f"{gateway.base_url}/v1/transit/keys?list=true",
                         headers={"X-Vault-Token": vault_token}, verify=gateway.ca_file, timeout=60)
    assert query.status_code == 200 and set(query.json()["data"]["keys"]) == set(listed)


@pytest.mark.parametrize("key_type,signature_algorithm,api_name", [
    ("ecdsa-p256", None, "ECDSA_SHA_256"),
    ("rsa-4096", "pss", "RSASSA_PSS_SHA_256"),
    ("rsa-4096", "pkcs1v15", "RSASSA_PKCS1_V1_5_SHA_256"),
    ("ecdsa-p384", None, "ECDSA_SHA_256"),
    ("rsa-2048", "pss", "RSASSA_PSS_SHA_256"),
    ("rsa-3072", "pkcs1v15", "RSASSA_PKCS1_V1_5_SHA_256"),
    ("ecdsa-p521", None, "ECDSA_SHA_256"),
])
def test_sign_and_verify_checked_by_openssl(tmp_path, transit, key_type, signature_algorithm, api_name):
    name = new_key(transit, key_type)
    key = transit.read_key(name)["data"]
    assert key["type"] == key_type and key["supports_signing"]
    public = key["keys"]["1"]["public_key"]
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    message = b"firmware image 1.2.3"
    signed = transit.sign_data(name, hash_input=b64(message), signature_algorithm=signature_algorithm)["data"]
    assert signed["signature"].startswith("vault:v1:") and signed["key_version"] == 1
    assert openssl_verifies(tmp_path, der_b64_of(public), api_name, message, signed["signature"].split(":")[2])
    ok = transit.verify_signed_data(name, hash_input=b64(message), signature=signed["signature"],
                                    signature_algorithm=signature_algorithm)["data"]["valid"]
    assert ok is True
    bad = transit.verify_signed_data(name, hash_input=b64(message + b"!"), signature=signed["signature"],
                                     signature_algorithm=signature_algorithm)["data"]["valid"]
    assert bad is False


def test_ecdsa_prehashed_sha384_and_jws_signatures(tmp_path, transit):
    name = new_key(transit, "ecdsa-p256")
    public = transit.read_key(name)["data"]["keys"]["1"]["public_key"]
    message = b"prehashed"
    digest = hashlib.sha384(message).digest()
    signed = transit.sign_data(name, hash_input=b64(digest), hash_algorithm="sha2-384", prehashed=True)["data"]
    assert openssl_verifies(tmp_path, der_b64_of(public), "ECDSA_SHA_384", message, signed["signature"].split(":")[2])
    jws = transit.sign_data(name, hash_input=b64(message), marshaling_algorithm="jws")["data"]["signature"]
    raw = base64.urlsafe_b64decode(jws.split(":")[2] + "==")
    assert len(raw) == 64, "JWS ES256: r and s of 32 bytes each"
    assert transit.verify_signed_data(name, hash_input=b64(message), signature=jws,
                                      marshaling_algorithm="jws")["data"]["valid"] is True
    # Signing keys are not rotated (the core's rule: a signature names no version on the
    # other APIs); the refusal says what to do.
    with pytest.raises(vault_errors.InvalidRequest, match="create a new key"):
        transit.rotate_key(name)


def test_ecdsa_p384_prehashed_sha512_and_jws_signatures(tmp_path, transit):
    name = new_key(transit, "ecdsa-p384")
    public = transit.read_key(name)["data"]["keys"]["1"]["public_key"]
    message = b"prehashed on P-384"
    digest = hashlib.sha512(message).digest()
    signed = transit.sign_data(name, hash_input=b64(digest), hash_algorithm="sha2-512", prehashed=True)["data"]
    assert openssl_verifies(tmp_path, der_b64_of(public), "ECDSA_SHA_512", message, signed["signature"].split(":")[2])
    jws = transit.sign_data(name, hash_input=b64(message), hash_algorithm="sha2-384",
                            marshaling_algorithm="jws")["data"]["signature"]
    raw = base64.urlsafe_b64decode(jws.split(":")[2] + "==")
    assert len(raw) == 96, "JWS ES384: r and s of 48 bytes each"
    assert transit.verify_signed_data(name, hash_input=b64(message), signature=jws, hash_algorithm="sha2-384",
                                      marshaling_algorithm="jws")["data"]["valid"] is True
    assert transit.verify_signed_data(name, hash_input=b64(message + b"!"), signature=jws, hash_algorithm="sha2-384",
                                      marshaling_algorithm="jws")["data"]["valid"] is False


def test_rsa_2048_oaep_encrypt_decrypt_round_trip(tmp_path, transit):
    # The gateway's keys have one usage: an RSA key that encrypts is made so (key_usage).
    name = unique("rsa")
    transit._adapter.post(f"/v1/transit/keys/{name}", json={"type": "rsa-2048", "key_usage": "encrypt-decrypt"})
    key = transit.read_key(name)["data"]
    assert key["type"] == "rsa-2048" and key["supports_encryption"] and not key["supports_signing"]
    secret = b"the unseal key"
    out = transit.encrypt_data(name, plaintext=b64(secret))["data"]
    assert out["ciphertext"].startswith("vault:v1:") and out["key_version"] == 1
    back = transit.decrypt_data(name, ciphertext=out["ciphertext"])["data"]
    assert base64.b64decode(back["plaintext"]) == secret
    # Vault's padding_scheme (sent through hvac's adapter): oaep is the default and the
    # only one offered.
    back = transit._adapter.post(f"/v1/transit/decrypt/{name}",
                                 json={"ciphertext": out["ciphertext"], "padding_scheme": "oaep"})["data"]
    assert base64.b64decode(back["plaintext"]) == secret
    with pytest.raises(vault_errors.InvalidRequest):
        transit._adapter.post(f"/v1/transit/encrypt/{name}",
                              json={"plaintext": b64(secret), "padding_scheme": "pkcs1v15"})
    # The public key of the read answer encrypts with OAEP SHA-256 as Vault's does.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    public = serialization.load_pem_public_key(key["keys"]["1"]["public_key"].encode())
    local = public.encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    back = transit.decrypt_data(name, ciphertext="vault:v1:" + b64(local))["data"]
    assert base64.b64decode(back["plaintext"]) == secret
    # A changed ciphertext is an invalid request, saying nothing of why.
    tampered = bytes([local[0] ^ 1]) + local[1:]
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext="vault:v1:" + b64(tampered))


def test_ecdsa_p521_prehashed_sha512_and_jws_signatures(tmp_path, transit):
    name = new_key(transit, "ecdsa-p521")
    public = transit.read_key(name)["data"]["keys"]["1"]["public_key"]
    message = b"prehashed on P-521"
    digest = hashlib.sha512(message).digest()
    signed = transit.sign_data(name, hash_input=b64(digest), hash_algorithm="sha2-512", prehashed=True)["data"]
    assert openssl_verifies(tmp_path, der_b64_of(public), "ECDSA_SHA_512", message, signed["signature"].split(":")[2])
    jws = transit.sign_data(name, hash_input=b64(message), hash_algorithm="sha2-512",
                            marshaling_algorithm="jws")["data"]["signature"]
    raw = base64.urlsafe_b64decode(jws.split(":")[2] + "==")
    assert len(raw) == 132, "JWS ES512: r and s of 66 bytes each"
    assert transit.verify_signed_data(name, hash_input=b64(message), signature=jws, hash_algorithm="sha2-512",
                                      marshaling_algorithm="jws")["data"]["valid"] is True
    assert transit.verify_signed_data(name, hash_input=b64(message + b"!"), signature=jws, hash_algorithm="sha2-512",
                                      marshaling_algorithm="jws")["data"]["valid"] is False


def test_ed25519_signatures_checked_by_cryptography(transit):
    """Vault's ed25519 type: the read answer shows the raw 32-byte public key in base64 (not
    PEM, as Vault does), hash_algorithm is ignored (PureEdDSA hashes inside), and the
    signature is the 64 bytes of RFC 8032, checked here by PyPI `cryptography`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    name = new_key(transit, "ed25519")
    key = transit.read_key(name)["data"]
    assert key["type"] == "ed25519" and key["supports_signing"]
    raw_public = base64.b64decode(key["keys"]["1"]["public_key"])
    assert len(raw_public) == 32
    public = Ed25519PublicKey.from_public_bytes(raw_public)
    message = b"signed by a Vault ed25519 key"
    signed = transit.sign_data(name, hash_input=b64(message))["data"]
    signature = base64.b64decode(signed["signature"].split(":")[2])
    assert len(signature) == 64
    public.verify(signature, message)
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b"!")
    # Any hash_algorithm gives the same (deterministic) signature.
    again = transit.sign_data(name, hash_input=b64(message), hash_algorithm="sha2-512")["data"]
    assert again["signature"] == signed["signature"]
    assert transit.verify_signed_data(name, hash_input=b64(message), signature=signed["signature"])["data"]["valid"] is True
    assert transit.verify_signed_data(name, hash_input=b64(message + b"!"),
                                      signature=signed["signature"])["data"]["valid"] is False
    with pytest.raises(vault_errors.InvalidRequest, match="jws is only for ECDSA"):
        transit.sign_data(name, hash_input=b64(message), marshaling_algorithm="jws")
    # Ed25519 signs the message itself: a prehashed input is refused.
    with pytest.raises(vault_errors.InvalidRequest, match="precomputed digest"):
        transit.sign_data(name, hash_input=b64(hashlib.sha512(message).digest()), prehashed=True)


def test_hmac_generate_and_verify(transit):
    name = new_key(transit, "hmac")
    assert transit.read_key(name)["data"]["type"] == "hmac"
    mac = transit.generate_hmac(name, hash_input=b64(b"payload"))["data"]["hmac"]
    assert mac.startswith("vault:v1:") and len(base64.b64decode(mac.split(":")[2])) == 32
    assert transit.verify_signed_data(name, hash_input=b64(b"payload"), hmac=mac)["data"]["valid"] is True
    assert transit.verify_signed_data(name, hash_input=b64(b"payloaD"), hmac=mac)["data"]["valid"] is False
    long = transit.generate_hmac(name, hash_input=b64(b"payload"), algorithm="sha2-512")["data"]["hmac"]
    assert len(base64.b64decode(long.split(":")[2])) == 64
    assert transit.verify_signed_data(name, hash_input=b64(b"payload"), hmac=long,
                                      hash_algorithm="sha2-512")["data"]["valid"] is True
    # An encryption key does not make HMACs here (Vault's keys each carry an HMAC key).
    with pytest.raises(vault_errors.InvalidRequest):
        transit.generate_hmac(new_key(transit), hash_input=b64(b"payload"))


def test_random_and_hash(transit):
    out = transit.generate_random_bytes(n_bytes=16)["data"]["random_bytes"]
    assert len(base64.b64decode(out)) == 16
    hexed = transit.generate_random_bytes(n_bytes=8, output_format="hex")["data"]["random_bytes"]
    assert len(bytes.fromhex(hexed)) == 8
    assert transit.hash_data(hash_input=b64(b"abc"))["data"]["sum"] == hashlib.sha256(b"abc").hexdigest()
    # hvac lists no SHA-3; Vault has it, and so does the gateway.
    sha3 = transit._adapter.post("/v1/transit/hash/sha3-512", json={"input": b64(b"abc")})
    assert sha3["data"]["sum"] == hashlib.sha3_512(b"abc").hexdigest()
    with pytest.raises(vault_errors.InvalidRequest):
        transit.generate_random_bytes(n_bytes=4096)


def test_bad_tokens_are_forbidden_and_projects_do_not_see_each_other(gateway, transit):
    name = new_key(transit)
    stranger = hvac.Client(url=gateway.base_url, token="kmsgw_not-a-token", verify=gateway.ca_file)
    with pytest.raises(vault_errors.Forbidden):
        stranger.secrets.transit.read_key(name)
    other_project = gateway.ok("POST", "/projects", {"name": unique("vault-other")})["project"]["id"]
    other = hvac.Client(url=gateway.base_url, token=token_identity(gateway, other_project, unique("other")),
                        verify=gateway.ca_file)
    with pytest.raises(vault_errors.InvalidPath):
        other.secrets.transit.read_key(name)
    with pytest.raises(vault_errors.InvalidPath):
        other.secrets.transit.encrypt_data(name, plaintext=b64(b"x"))
    with pytest.raises(vault_errors.InvalidPath):
        other.secrets.transit.list_keys()


def test_deletion_needs_deletion_allowed_and_unsupported_options_are_refused(gateway, transit):
    name = new_key(transit)
    with pytest.raises(vault_errors.InvalidRequest, match="deletion is not allowed"):
        transit.delete_key(name)
    transit.update_key_configuration(name, deletion_allowed=True)
    assert transit.read_key(name)["data"]["deletion_allowed"] is True
    transit.delete_key(name)
    assert transit.read_key(name)["data"]["deletion_date"], "scheduled for destruction"
    with pytest.raises(vault_errors.InvalidRequest):
        transit.encrypt_data(name, plaintext=b64(b"x"))
    with pytest.raises(vault_errors.InvalidRequest, match="exportable"):
        transit.create_key(unique("k"), exportable=True)
    with pytest.raises(vault_errors.InvalidRequest, match="not supported"):
        transit.create_key(unique("k"), key_type="chacha20-poly1305")


def test_vault_transit_seal_calls(gateway, vault_token, transit):
    """What a Vault or OpenBao server with `seal "transit"` sends (the transit wrapper of
    go-kms-wrapping): renew-self with its token (errors tolerated), a test encryption of
    "a" whose ciphertext must split on ':' into three parts (the middle one is the key id
    suffix, `v1`), then encrypt and decrypt of its root key, all with PUT as Vault's Go
    client sends writes."""
    name = new_key(transit)
    session = requests.Session()
    session.verify = gateway.ca_file
    session.headers["X-Vault-Token"] = vault_token
    renewed = session.put(f"{gateway.base_url}/v1/auth/token/renew-self", json={"increment": 0}, timeout=60)
    assert renewed.status_code == 200 and renewed.json()["auth"]["client_token"] == vault_token
    probe = session.put(f"{gateway.base_url}/v1/transit/encrypt/{name}", json={"plaintext": b64(b"a")}, timeout=60)
    assert probe.status_code == 200
    parts = probe.json()["data"]["ciphertext"].split(":")
    assert len(parts) == 3 and parts[0] == "vault" and parts[1] == "v1"
    root_key = bytes(range(32))
    sealed = session.put(f"{gateway.base_url}/v1/transit/encrypt/{name}", json={"plaintext": b64(root_key)}, timeout=60)
    ciphertext = sealed.json()["data"]["ciphertext"]
    opened = session.put(f"{gateway.base_url}/v1/transit/decrypt/{name}", json={"ciphertext": ciphertext}, timeout=60)
    assert opened.status_code == 200 and base64.b64decode(opened.json()["data"]["plaintext"]) == root_key


def test_every_call_is_audited_as_the_vault_front_end(gateway, transit):
    name = new_key(transit)
    key_id = transit.read_key(name)["data"]["id"]
    ct = transit.encrypt_data(name, plaintext=b64(b"audited"))["data"]["ciphertext"]
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext=ct, context=b64(b"x"), associated_data=b64(b"wrong"))
    with pytest.raises(vault_errors.InvalidRequest):
        transit.decrypt_data(name, ciphertext="vault:v1:%%%")
    mine = [r for r in audit_records(gateway) if r.get("keyId") == key_id or r.get("target") == name]
    seen = {(r["operation"], r["outcome"]) for r in mine if r.get("frontend") == "vault"}
    assert ("key.create", "ok") in seen and ("key.encrypt", "ok") in seen, seen
    assert ("key.decrypt", "decryption_failed") in seen, seen
    # A request refused before its operation ran (bad base64 in the prefix) is recorded too.
    refused = [r for r in audit_records(gateway)
               if r.get("frontend") == "vault" and r["operation"] == "key.decrypt" and r["outcome"] == "invalid_ciphertext"]
    assert refused, "the refused decrypt has its record"
