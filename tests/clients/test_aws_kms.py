"""The AWS KMS-compatible API driven by unmodified AWS clients from PyPI: boto3 (and its
botocore signer for the Signature Version 4 negative cases), the AWS CLI and the AWS
Encryption SDK for Python, against the real gateway scripts/client-tests.sh started (real
TLS, SoftHSM2 token). Credentials are access keys of identities made through the native
API. Signatures are checked by `cryptography` and by the `openssl` command line from the
public key GetPublicKey returns."""

import base64
import datetime
import hashlib
import json
import os
import subprocess
import sys

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.session
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from helpers import PROJECT_PERMISSIONS, audit_records, b64, openssl_verifies, unique

REGION = "us-east-1"
# The gateway's default ARN account (aws.account_id).
ACCOUNT = "000000000000"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def make_identity(gateway, project, permissions=PROJECT_PERMISSIONS):
    reply = gateway.ok("POST", "/identities", {"name": unique("aws"), "projectId": project,
                                               "permissions": permissions})
    identity = reply["identity"]["id"]
    key = gateway.ok("POST", f"/identities/{identity}/access-keys")["accessKey"]
    return identity, key


def client_for(gateway, access_key, secret=None, region=REGION):
    return boto3.client(
        "kms",
        endpoint_url=gateway.base_url,
        region_name=region,
        aws_access_key_id=access_key["accessKeyId"],
        aws_secret_access_key=secret or access_key["secretAccessKey"],
        verify=gateway.ca_file,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def aws_project(gateway):
    return gateway.ok("POST", "/projects", {"name": unique("aws")})["project"]["id"]


@pytest.fixture(scope="module")
def aws_identity(gateway, aws_project):
    return make_identity(gateway, aws_project)


@pytest.fixture(scope="module")
def kms(gateway, aws_identity):
    return client_for(gateway, aws_identity[1])


@pytest.fixture(scope="module")
def symmetric_key(kms):
    return kms.create_key(Description="the module's key")["KeyMetadata"]


def test_access_keys_are_shown_once_bounded_and_deletable(gateway, aws_project):
    identity, first = make_identity(gateway, aws_project)
    assert first["accessKeyId"].startswith("AKGW") and len(first["accessKeyId"]) == 20
    assert len(first["secretAccessKey"]) == 44
    second = gateway.ok("POST", f"/identities/{identity}/access-keys")["accessKey"]
    listed = gateway.ok("GET", f"/identities/{identity}/access-keys")["accessKeys"]
    assert [k["accessKeyId"] for k in listed] == [first["accessKeyId"], second["accessKeyId"]]
    assert all("secretAccessKey" not in k for k in listed), "a secret is shown only at creation"
    status, reply = gateway.call("POST", f"/identities/{identity}/access-keys")
    assert (status, reply["code"]) == (409, "access_key_limit"), reply

    # Both keys work at once (rotation); a deleted one is refused at once.
    old, new = client_for(gateway, first), client_for(gateway, second)
    old.list_keys()
    new.list_keys()
    gateway.ok("DELETE", f"/identities/{identity}/access-keys/{first['accessKeyId']}")
    with pytest.raises(ClientError) as e:
        old.list_keys()
    assert error_code(e) == "UnrecognizedClientException"
    new.list_keys()
    status, _ = gateway.call("DELETE", f"/identities/{identity}/access-keys/{first['accessKeyId']}")
    assert status == 404

    # A revoked identity's signatures are refused too.
    gateway.ok("DELETE", f"/identities/{identity}")
    with pytest.raises(ClientError) as e:
        new.list_keys()
    assert error_code(e) == "UnrecognizedClientException"


def test_create_alias_encrypt_decrypt_with_context(kms, symmetric_key):
    meta = symmetric_key
    key_id = meta["KeyId"]
    assert meta["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    assert (meta["KeySpec"], meta["KeyUsage"], meta["KeyState"], meta["Enabled"]) == \
        ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "Enabled", True)
    assert meta["Origin"] == "AWS_KMS" and meta["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    alias = "alias/" + unique("app")
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    context = {"purpose": "test", "tenant": "t-1"}
    out = kms.encrypt(KeyId=alias, Plaintext=b"attack at dawn", EncryptionContext=context)
    assert out["KeyId"] == meta["Arn"]
    blob = out["CiphertextBlob"]
    # Decrypt names no key: the blob does.
    back = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert back["Plaintext"] == b"attack at dawn" and back["KeyId"] == meta["Arn"]
    # By ARN, by id and by alias ARN the key is the same.
    for name in (meta["Arn"], key_id, f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}"):
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=name)["Plaintext"] == b"attack at dawn"

    for wrong in ({}, {"purpose": "test"}, {"purpose": "test", "tenant": "t-2"}):
        with pytest.raises(ClientError) as e:
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
        assert error_code(e) == "InvalidCiphertextException", wrong
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=context)
    assert error_code(e) == "InvalidCiphertextException"
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=b"not a ciphertext of this gateway at all")
    assert error_code(e) == "InvalidCiphertextException"
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=context, KeyId=other)
    assert error_code(e) == "IncorrectKeyException"

    # AWS's bounds: 1 to 4096 bytes of plaintext.
    kms.encrypt(KeyId=key_id, Plaintext=b"x" * 4096)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key_id, Plaintext=b"x" * 4097)
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId="alias/" + unique("none"), Plaintext=b"x")
    assert error_code(e) == "NotFoundException"


def test_data_keys_and_re_encrypt(kms, symmetric_key):
    key = symmetric_key["KeyId"]
    context = {"file": "a.txt"}
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
    assert len(dk["Plaintext"]) == 32 and dk["KeyId"] == symmetric_key["Arn"]
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=context)["Plaintext"] == dk["Plaintext"]
    assert len(kms.generate_data_key(KeyId=key, KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=key, NumberOfBytes=1024)["Plaintext"]) == 1024
    bare = kms.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=64)
    assert "Plaintext" not in bare
    assert len(kms.decrypt(CiphertextBlob=bare["CiphertextBlob"])["Plaintext"]) == 64
    for bad in ({}, {"KeySpec": "AES_256", "NumberOfBytes": 32}):
        with pytest.raises(ClientError) as e:
            kms.generate_data_key(KeyId=key, **bad)
        assert error_code(e) == "ValidationException", bad

    destination = kms.create_key()["KeyMetadata"]
    moved = kms.re_encrypt(CiphertextBlob=dk["CiphertextBlob"], SourceEncryptionContext=context,
                           DestinationKeyId=destination["KeyId"], DestinationEncryptionContext={"moved": "yes"})
    assert moved["SourceKeyId"] == symmetric_key["Arn"] and moved["KeyId"] == destination["Arn"]
    back = kms.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"moved": "yes"})
    assert back["Plaintext"] == dk["Plaintext"] and back["KeyId"] == destination["Arn"]
    with pytest.raises(ClientError) as e:
        kms.re_encrypt(CiphertextBlob=dk["CiphertextBlob"], SourceEncryptionContext={"file": "b.txt"},
                       DestinationKeyId=destination["KeyId"])
    assert error_code(e) == "InvalidCiphertextException"


def test_describe_by_alias_list_with_paging_and_aliases(kms):
    made = [kms.create_key(Description=f"paged {i}")["KeyMetadata"]["KeyId"] for i in range(3)]
    alias = "alias/" + unique("described")
    kms.create_alias(AliasName=alias, TargetKeyId=made[0])
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == made[0]
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["Description"] == "paged 0"

    seen, marker, pages = [], None, 0
    while True:
        page = kms.list_keys(Limit=2, **({"Marker": marker} if marker else {}))
        assert len(page["Keys"]) <= 2
        seen += [k["KeyId"] for k in page["Keys"]]
        assert all(k["KeyArn"].endswith("key/" + k["KeyId"]) for k in page["Keys"])
        pages += 1
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert pages >= 2 and set(made) <= set(seen) and len(seen) == len(set(seen))
    # The paginator boto3 users call walks the same pages.
    walked = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})
              for k in p["Keys"]]
    assert walked == seen
    with pytest.raises(ClientError) as e:
        kms.list_keys(Marker="garbage")
    assert error_code(e) == "InvalidMarkerException"

    # Aliases: listed, re-pointed, refused when taken or reserved, deleted.
    kms.update_alias(AliasName=alias, TargetKeyId=made[1])
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == made[1]
    listed = kms.list_aliases(KeyId=made[1])["Aliases"]
    assert [a["AliasName"] for a in listed] == [alias]
    assert listed[0]["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}"
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName=alias, TargetKeyId=made[2])
    assert error_code(e) == "AlreadyExistsException"
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName="alias/aws/reserved", TargetKeyId=made[2])
    assert error_code(e) == "InvalidAliasNameException"
    kms.delete_alias(AliasName=alias)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=alias)
    assert error_code(e) == "NotFoundException"


def test_disable_enable_and_scheduled_deletion(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    kms.disable_key(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    for call in (lambda: kms.encrypt(KeyId=key, Plaintext=b"x"), lambda: kms.decrypt(CiphertextBlob=blob)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "DisabledException"
    kms.enable_key(KeyId=key)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"

    with pytest.raises(ClientError) as e:
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=6)
    assert error_code(e) == "ValidationException"
    scheduled = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    in_days = (scheduled["DeletionDate"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    assert 6.9 < in_days <= 7.01, in_days
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and not meta["Enabled"] and "DeletionDate" in meta
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x")
    assert error_code(e) == "KMSInvalidStateException"
    with pytest.raises(ClientError) as e:
        kms.enable_key(KeyId=key)
    assert error_code(e) == "KMSInvalidStateException"
    # As in AWS: a cancelled deletion leaves the key disabled.
    kms.cancel_key_deletion(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    kms.enable_key(KeyId=key)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"


def test_rotation_keeps_old_ciphertexts(kms):
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    old = kms.encrypt(KeyId=key, Plaintext=b"before rotation")["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=key)
    new = kms.encrypt(KeyId=key, Plaintext=b"after rotation")["CiphertextBlob"]
    assert old[17:21] != new[17:21], "the new ciphertext names the new version"
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before rotation"
    assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"after rotation"
    assert len(kms.list_key_rotations(KeyId=key)["Rotations"]) == 1
    kms.disable_key_rotation(KeyId=key)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"] is False


def cryptography_verifies(public_der, algorithm, message, signature, digest=False):
    key = serialization.load_der_public_key(public_der)
    h = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[algorithm[-3:]]
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    chosen = Prehashed(h) if digest else h
    try:
        if algorithm.startswith("ECDSA"):
            key.verify(signature, message, ec.ECDSA(chosen))
        elif algorithm.startswith("RSASSA_PSS"):
            key.verify(signature, message, padding.PSS(padding.MGF1(h), h.digest_size), chosen)
        else:
            key.verify(signature, message, padding.PKCS1v15(), chosen)
        return True
    except InvalidSignature:
        return False


@pytest.mark.parametrize("spec,algorithm", [
    ("RSA_4096", "RSASSA_PSS_SHA_256"),
    ("RSA_4096", "RSASSA_PKCS1_V1_5_SHA_384"),
    ("ECC_NIST_P256", "ECDSA_SHA_256"),
    ("RSA_2048", "RSASSA_PSS_SHA_512"),
    ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256"),
    ("RSA_3072", "RSASSA_PSS_SHA_384"),
    ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_512"),
    ("ECC_NIST_P384", "ECDSA_SHA_384"),
    ("ECC_NIST_P384", "ECDSA_SHA_256"),
    ("ECC_NIST_P384", "ECDSA_SHA_512"),
    ("ECC_NIST_P521", "ECDSA_SHA_512"),
    ("ECC_NIST_P521", "ECDSA_SHA_256"),
])
def test_sign_verify_raw_and_digest_checked_independently(kms, tmp_path, spec, algorithm):
    meta = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    key = meta["KeyId"]
    assert algorithm in meta["SigningAlgorithms"] and meta["KeyUsage"] == "SIGN_VERIFY"
    public = kms.get_public_key(KeyId=key)
    assert public["KeySpec"] == spec and algorithm in public["SigningAlgorithms"]
    der = public["PublicKey"]
    message = b"the message to sign " + spec.encode()

    raw = kms.sign(KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm=algorithm)
    assert raw["KeyId"] == meta["Arn"] and raw["SigningAlgorithm"] == algorithm
    assert cryptography_verifies(der, algorithm, message, raw["Signature"])
    assert openssl_verifies(tmp_path, b64(der), algorithm, message, b64(raw["Signature"]))
    assert kms.verify(KeyId=key, Message=message, MessageType="RAW", Signature=raw["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    with pytest.raises(ClientError) as e:
        kms.verify(KeyId=key, Message=message + b"!", MessageType="RAW", Signature=raw["Signature"],
                   SigningAlgorithm=algorithm)
    assert error_code(e) == "KMSInvalidSignatureException"

    digest = hashlib.new("sha" + algorithm[-3:], message).digest()
    if algorithm.startswith("RSASSA_PSS"):
        # The gateway does not sign PSS over a digest (docs/AWS.md).
        with pytest.raises(ClientError) as e:
            kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)
        assert error_code(e) == "UnsupportedOperationException"
        return
    signed = kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm)
    # A signature over the digest is one over the message.
    assert cryptography_verifies(der, algorithm, digest, signed["Signature"], digest=True)
    assert openssl_verifies(tmp_path, b64(der), algorithm, message, b64(signed["Signature"]))
    assert kms.verify(KeyId=key, Message=message, MessageType="RAW", Signature=signed["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=digest[:-1], MessageType="DIGEST", SigningAlgorithm=algorithm)
    assert error_code(e) == "ValidationException"


@pytest.mark.parametrize("spec,key_class", [
    ("ML_DSA_44", "MLDSA44PublicKey"),
    ("ML_DSA_65", "MLDSA65PublicKey"),
    ("ML_DSA_87", "MLDSA87PublicKey"),
])
def test_ml_dsa_keys_sign_raw_messages_checked_by_cryptography(kms, spec, key_class):
    """FIPS 204 keys as AWS has them: KeySpec ML_DSA_*, the one signing algorithm
    ML_DSA_SHAKE_256, MessageType RAW; the public key (SubjectPublicKeyInfo) and the
    signature are checked by PyPI `cryptography`, whose wheel's OpenSSL has ML-DSA."""
    from cryptography.hazmat.primitives.asymmetric import mldsa
    meta = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    key = meta["KeyId"]
    assert meta["KeySpec"] == spec and meta["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    public = kms.get_public_key(KeyId=key)
    assert public["KeySpec"] == spec and public["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    verifier = serialization.load_der_public_key(public["PublicKey"])
    assert isinstance(verifier, getattr(mldsa, key_class)), type(verifier)
    message = b"firmware image signed with " + spec.encode()
    signed = kms.sign(KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm="ML_DSA_SHAKE_256")
    assert signed["SigningAlgorithm"] == "ML_DSA_SHAKE_256"
    verifier.verify(signed["Signature"], message)
    with pytest.raises(InvalidSignature):
        verifier.verify(signed["Signature"], message + b"!")
    # A signature made by `cryptography` with a key of its own is not one of this key's.
    own = getattr(mldsa, key_class.replace("Public", "Private")).generate()
    with pytest.raises(ClientError) as e:
        kms.verify(KeyId=key, Message=message, Signature=own.sign(message), SigningAlgorithm="ML_DSA_SHAKE_256")
    assert error_code(e) == "KMSInvalidSignatureException"
    assert kms.verify(KeyId=key, Message=message, MessageType="RAW", Signature=signed["Signature"],
                      SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"] is True
    with pytest.raises(ClientError) as e:
        kms.verify(KeyId=key, Message=message + b"!", Signature=signed["Signature"],
                   SigningAlgorithm="ML_DSA_SHAKE_256")
    assert error_code(e) == "KMSInvalidSignatureException"
    # Pure ML-DSA: no digest, no external mu; Infisical's name is not AWS's.
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=hashlib.sha512(message).digest(), MessageType="DIGEST",
                 SigningAlgorithm="ML_DSA_SHAKE_256")
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=b"\0" * 64, MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256")
    assert error_code(e) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=message, SigningAlgorithm="ECDSA_SHA_512")
    assert error_code(e) == "InvalidKeyUsageException"


def test_ed25519_keys_sign_raw_messages_checked_by_cryptography(kms):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    meta = kms.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    key = meta["KeyId"]
    assert meta["KeySpec"] == "ECC_NIST_EDWARDS25519" and meta["SigningAlgorithms"] == ["ED25519_SHA_512"]
    public = kms.get_public_key(KeyId=key)
    verifier = serialization.load_der_public_key(public["PublicKey"])
    assert isinstance(verifier, Ed25519PublicKey)
    message = b"signed by an AWS-style Ed25519 key"
    signed = kms.sign(KeyId=key, Message=message, MessageType="RAW", SigningAlgorithm="ED25519_SHA_512")
    assert len(signed["Signature"]) == 64
    verifier.verify(signed["Signature"], message)
    with pytest.raises(InvalidSignature):
        verifier.verify(signed["Signature"], message + b"!")
    assert kms.verify(KeyId=key, Message=message, Signature=signed["Signature"],
                      SigningAlgorithm="ED25519_SHA_512")["SignatureValid"] is True
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=hashlib.sha512(message).digest(), MessageType="DIGEST",
                 SigningAlgorithm="ED25519_SHA_512")
    assert error_code(e) == "ValidationException"
    # Prehashed Ed25519 (Ed25519ph) is not offered.
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=key, Message=hashlib.sha512(message).digest(), MessageType="DIGEST",
                 SigningAlgorithm="ED25519_PH_SHA_512")
    assert error_code(e) == "InvalidKeyUsageException"


def test_wrong_usage_and_unsupported(kms, symmetric_key):
    with pytest.raises(ClientError) as e:
        kms.sign(KeyId=symmetric_key["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    assert error_code(e) == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as e:
        kms.get_public_key(KeyId=symmetric_key["KeyId"])
    assert error_code(e) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as e:
        kms.get_key_policy(KeyId=symmetric_key["KeyId"], PolicyName="default")
    assert error_code(e) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as e:
        kms.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")
    assert error_code(e) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as e:
        kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="ENCRYPT_DECRYPT")
    assert error_code(e) == "ValidationException"


@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
def test_rsa_oaep_encrypt_decrypt_and_a_local_encryption_from_get_public_key(kms, spec):
    meta = kms.create_key(KeySpec=spec, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    key = meta["KeyId"]
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert sorted(meta["EncryptionAlgorithms"]) == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["EncryptionAlgorithms"] == meta["EncryptionAlgorithms"]
    public = kms.get_public_key(KeyId=key)
    assert public["KeySpec"] == spec and public["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert "RSAES_OAEP_SHA_256" in public["EncryptionAlgorithms"] and "SigningAlgorithms" not in public
    rsa_public = serialization.load_der_public_key(public["PublicKey"])
    assert rsa_public.key_size == int(spec[4:])

    secret = b"an unseal key share"
    out = kms.encrypt(KeyId=key, Plaintext=secret, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["EncryptionAlgorithm"] == "RSAES_OAEP_SHA_256" and out["KeyId"] == meta["Arn"]
    assert len(out["CiphertextBlob"]) == rsa_public.key_size // 8
    back = kms.decrypt(KeyId=key, CiphertextBlob=out["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert back["Plaintext"] == secret and back["EncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"

    # Encrypted here with `cryptography` from GetPublicKey, decrypted by the gateway.
    for name, hash_ in [("RSAES_OAEP_SHA_256", hashes.SHA256()), ("RSAES_OAEP_SHA_1", hashes.SHA1())]:
        local = rsa_public.encrypt(secret, padding.OAEP(mgf=padding.MGF1(algorithm=hash_), algorithm=hash_, label=None))
        back = kms.decrypt(KeyId=key, CiphertextBlob=local, EncryptionAlgorithm=name)
        assert back["Plaintext"] == secret, name

    # A changed byte, another length, the other hash: one and the same error.
    changed = bytes([out["CiphertextBlob"][0] ^ 1]) + out["CiphertextBlob"][1:]
    answers = set()
    for blob, algorithm in [(changed, "RSAES_OAEP_SHA_256"), (out["CiphertextBlob"][:-1], "RSAES_OAEP_SHA_256"),
                            (out["CiphertextBlob"], "RSAES_OAEP_SHA_1")]:
        with pytest.raises(ClientError) as e:
            kms.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionAlgorithm=algorithm)
        answers.add((error_code(e), e.value.response["Error"]["Message"]))
    assert len(answers) == 1 and next(iter(answers))[0] == "InvalidCiphertextException", answers

    # AWS's refusals: no EncryptionAlgorithm (SYMMETRIC_DEFAULT) on an RSA key, an
    # encryption context, a plaintext over the OAEP limit, a data key.
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=secret)
    assert error_code(e) == "InvalidKeyUsageException"
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=secret, EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                    EncryptionContext={"a": "b"})
    assert error_code(e) == "UnsupportedOperationException"
    limit = rsa_public.key_size // 8 - 2 * 32 - 2
    kms.encrypt(KeyId=key, Plaintext=b"x" * limit, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key, Plaintext=b"x" * (limit + 1), EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert error_code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert error_code(e) == "UnsupportedOperationException"


def test_rsa_oaep_names_on_the_wrong_keys(kms, symmetric_key):
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=symmetric_key["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert error_code(e) == "InvalidKeyUsageException"
    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=signing, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert error_code(e) == "InvalidKeyUsageException"


def test_generate_random(kms):
    a = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    b = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    assert len(a) == 32 and a != b
    assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024
    with pytest.raises(ClientError) as e:
        kms.generate_random(NumberOfBytes=1025)
    assert error_code(e) == "ValidationException"


def test_hmac_keys(kms):
    meta = kms.create_key(KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    assert meta["MacAlgorithms"] == ["HMAC_SHA_384"]
    key = meta["KeyId"]
    mac = kms.generate_mac(KeyId=key, Message=b"data", MacAlgorithm="HMAC_SHA_384")
    assert len(mac["Mac"]) == 48 and mac["MacAlgorithm"] == "HMAC_SHA_384"
    assert kms.generate_mac(KeyId=key, Message=b"data", MacAlgorithm="HMAC_SHA_384")["Mac"] == mac["Mac"]
    assert kms.verify_mac(KeyId=key, Message=b"data", MacAlgorithm="HMAC_SHA_384", Mac=mac["Mac"])["MacValid"] is True
    with pytest.raises(ClientError) as e:
        kms.verify_mac(KeyId=key, Message=b"datA", MacAlgorithm="HMAC_SHA_384", Mac=mac["Mac"])
    assert error_code(e) == "KMSInvalidMacException"
    with pytest.raises(ClientError) as e:
        kms.generate_mac(KeyId=key, Message=b"data", MacAlgorithm="HMAC_SHA_256")
    assert error_code(e) == "InvalidKeyUsageException"


def test_tags(kms):
    key = kms.create_key(Tags=[{"TagKey": "Team", "TagValue": "payments"}])["KeyMetadata"]["KeyId"]
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "Env", "TagValue": "prod"}, {"TagKey": "Team", "TagValue": "core"}])
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key)["Tags"]}
    assert tags == {"Env": "prod", "Team": "core"}
    kms.untag_resource(KeyId=key, TagKeys=["Team"])
    assert kms.list_resource_tags(KeyId=key)["Tags"] == [{"TagKey": "Env", "TagValue": "prod"}]
    with pytest.raises(ClientError) as e:
        kms.tag_resource(KeyId=key, Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])
    assert error_code(e) == "TagException"


def test_projects_are_apart(gateway, kms, symmetric_key):
    other_project = gateway.ok("POST", "/projects", {"name": unique("aws-other")})["project"]["id"]
    _, key = make_identity(gateway, other_project)
    outsider = client_for(gateway, key)
    for call in (lambda: outsider.describe_key(KeyId=symmetric_key["KeyId"]),
                 lambda: outsider.encrypt(KeyId=symmetric_key["Arn"], Plaintext=b"x")):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "NotFoundException"
    blob = kms.encrypt(KeyId=symmetric_key["KeyId"], Plaintext=b"mine")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        outsider.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "NotFoundException"
    assert symmetric_key["KeyId"] not in [k["KeyId"] for k in outsider.list_keys()["Keys"]]

    # Permissions apply as on the native API: an encrypt-only identity cannot decrypt.
    _, narrow = make_identity(gateway, gateway.ok("GET", f"/kms/keys/{symmetric_key['KeyId']}")["key"]["projectId"],
                              permissions=["encrypt"])
    encrypt_only = client_for(gateway, narrow)
    blob = encrypt_only.encrypt(KeyId=symmetric_key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as e:
        encrypt_only.decrypt(CiphertextBlob=blob)
    assert error_code(e) == "AccessDeniedException"


def test_keys_are_the_native_apis_keys(gateway, kms, symmetric_key):
    native = gateway.ok("GET", f"/kms/keys/{symmetric_key['KeyId']}")["key"]
    assert native["description"] == "the module's key"
    blob = kms.encrypt(KeyId=symmetric_key["KeyId"], Plaintext=b"shared")["CiphertextBlob"]
    reply = gateway.ok("POST", f"/kms/keys/{symmetric_key['KeyId']}/decrypt",
                       {"ciphertext": base64.b64encode(blob).decode()})
    assert base64.b64decode(reply["plaintext"]) == b"shared"


def test_wrong_secret_and_unknown_access_key(gateway, aws_identity):
    _, key = aws_identity
    with pytest.raises(ClientError) as e:
        client_for(gateway, key, secret="A" * 44).list_keys()
    assert error_code(e) == "InvalidSignatureException"
    with pytest.raises(ClientError) as e:
        client_for(gateway, {"accessKeyId": "AKGWAAAAAAAAAAAAAAAA", "secretAccessKey": "B" * 44}).list_keys()
    assert error_code(e) == "UnrecognizedClientException"
    # Any region may be signed for (the ARNs name the configured one).
    assert "Keys" in client_for(gateway, key, region="eu-central-1").list_keys()


def signed_request(gateway, key, target, body, when=None, service="kms", headers=None):
    """A request signed by botocore's own SigV4 signer (at `when`, default now); botocore
    signs every header the request has (`target` None: no X-Amz-Target)."""
    sent = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    if target:
        sent["X-Amz-Target"] = f"TrentService.{target}"
    request = botocore.awsrequest.AWSRequest(method="POST", url=gateway.base_url + "/", data=body, headers=sent)
    credentials = botocore.credentials.Credentials(key["accessKeyId"], key["secretAccessKey"])
    signer = botocore.auth.SigV4Auth(credentials, service, REGION)
    if when is None:
        signer.add_auth(request)
    else:
        original = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda *a, **k: when
        try:
            signer.add_auth(request)
        finally:
            botocore.auth.get_current_datetime = original
    return request


def send(gateway, request, body=None, headers=None):
    sent_headers = dict(request.headers.items())
    sent_headers.update(headers or {})
    resp = requests.post(request.url, data=request.body if body is None else body, headers=sent_headers,
                         verify=gateway.ca_file, timeout=60)
    return resp.status_code, resp.json()


def test_sigv4_negative_cases(gateway, aws_identity):
    _, key = aws_identity
    body = json.dumps({"Limit": 1}).encode()
    good = signed_request(gateway, key, "ListKeys", body)
    status, reply = send(gateway, good)
    assert status == 200 and "Keys" in reply, reply
    # The same signed request again, within the skew, is accepted (as AWS does).
    assert send(gateway, good)[0] == 200

    status, reply = send(gateway, good, body=json.dumps({"Limit": 2}).encode())
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), "altered body"
    status, reply = send(gateway, good, headers={"X-Amz-Target": "TrentService.ListAliases"})
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), "altered signed header"
    status, reply = send(gateway, good, headers={"Content-Type": "application/x-amz-json-1.0"})
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), "altered content type"

    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    stale = signed_request(gateway, key, "ListKeys", body, when=now - datetime.timedelta(minutes=6))
    status, reply = send(gateway, stale)
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), reply
    assert reply["message"].startswith("Signature expired"), reply
    ahead = signed_request(gateway, key, "ListKeys", body, when=now + datetime.timedelta(minutes=6))
    status, reply = send(gateway, ahead)
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), reply
    inside = signed_request(gateway, key, "ListKeys", body, when=now - datetime.timedelta(minutes=4))
    assert send(gateway, inside)[0] == 200

    other_service = signed_request(gateway, key, "ListKeys", body, service="s3")
    status, reply = send(gateway, other_service)
    assert (status, reply["__type"]) == (400, "IncompleteSignatureException"), reply
    status, reply = send(gateway, good, headers={"Authorization": ""})
    assert (status, reply["__type"]) == (400, "MissingAuthenticationTokenException"), reply
    # A signed payload hash that is not the body's.
    hashed = signed_request(gateway, key, "ListKeys", body, headers={"X-Amz-Content-Sha256": "0" * 64})
    status, reply = send(gateway, hashed)
    assert (status, reply["__type"]) == (400, "InvalidSignatureException"), reply
    # An operation header, or any x-amz-* header, that the signature does not cover: a
    # captured request must not be replayable as another operation.
    untargeted = signed_request(gateway, key, None, json.dumps({"KeyId": "alias/x"}).encode())
    status, reply = send(gateway, untargeted, headers={"X-Amz-Target": "TrentService.ScheduleKeyDeletion"})
    assert (status, reply["__type"]) == (400, "IncompleteSignatureException"), reply
    assert "x-amz-target" in reply["message"], reply
    status, reply = send(gateway, good, headers={"X-Amz-Content-Sha256": "0" * 64})
    assert (status, reply["__type"]) == (400, "IncompleteSignatureException"), reply

    status, reply = send(gateway, signed_request(gateway, key, "ListKeys", b"{not json"))
    assert (status, reply["__type"]) == (400, "SerializationException"), reply


def test_refusals_and_operations_are_audited_as_aws(gateway, kms, symmetric_key):
    ok = kms.encrypt(KeyId=symmetric_key["KeyId"], Plaintext=b"audited")["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="alias/" + unique("missing"))
    missing = e.value.response["ResponseMetadata"]["RequestId"]
    _, key = make_identity(gateway, gateway.ok("POST", "/projects", {"name": unique("aws-audit")})["project"]["id"])
    with pytest.raises(ClientError) as e:
        client_for(gateway, key, secret="E" * 44).list_keys()
    forged = e.value.response["ResponseMetadata"]["RequestId"]
    assert len({ok, missing, forged}) == 3 and all((ok, missing, forged))
    records = audit_records(gateway)
    by_request = {r.get("requestId"): r for r in records}
    for request_id, operation, outcome in ((ok, "key.encrypt", "ok"), (missing, "key.get", "alias_not_found"),
                                           (forged, "key.list", "signature_mismatch")):
        r = by_request.get(request_id)
        assert r, f"no audit record of {request_id}"
        assert (r["frontend"], r["operation"], r["outcome"]) == ("aws", operation, outcome), r
    assert by_request[ok]["keyId"] == symmetric_key["KeyId"]


def test_aws_cli(gateway, aws_project, tmp_path):
    _, key = make_identity(gateway, aws_project)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key["accessKeyId"], AWS_SECRET_ACCESS_KEY=key["secretAccessKey"],
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    aws = [os.path.join(os.path.dirname(sys.executable), "aws"), "kms", "--endpoint-url", gateway.base_url,
           "--ca-bundle", gateway.ca_file, "--output", "json"]

    def run(*args):
        out = subprocess.run(aws + list(args), env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    created = run("create-key", "--description", "from the AWS CLI")["KeyMetadata"]
    plaintext = tmp_path / "plain.bin"
    plaintext.write_bytes(b"\x00\x01 binary from a file \xff")
    enc = run("encrypt", "--key-id", created["Arn"], "--plaintext", f"fileb://{plaintext}",
              "--encryption-context", "app=cli")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = run("decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=cli")
    assert base64.b64decode(dec["Plaintext"]) == plaintext.read_bytes()
    assert dec["KeyId"] == created["Arn"]
    out = subprocess.run(aws + ["decrypt", "--ciphertext-blob", f"fileb://{blob}"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "InvalidCiphertextException" in out.stderr


def test_aws_encryption_sdk_envelope_round_trip(gateway, aws_identity, symmetric_key, monkeypatch):
    import aws_encryption_sdk
    from aws_encryption_sdk import CommitmentPolicy

    _, key = aws_identity
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", gateway.base_url)
    monkeypatch.setenv("AWS_CA_BUNDLE", gateway.ca_file)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["accessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["secretAccessKey"])
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(
        key_ids=[symmetric_key["Arn"]], botocore_session=botocore.session.Session())
    message = os.urandom(100_000)
    ciphertext, header = client.encrypt(source=message, key_provider=provider,
                                        encryption_context={"document": "report.pdf"})
    assert message not in ciphertext
    assert [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] == [symmetric_key["Arn"]]
    decrypted, dheader = client.decrypt(source=ciphertext, key_provider=provider)
    assert decrypted == message and dheader.encryption_context["document"] == "report.pdf"
