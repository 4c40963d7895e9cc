"""The KMIP server (issue 17) driven by the unmodified PyKMIP client (PyPI `pykmip`: its
`ProxyKmipClient`, and for what that has no method for, the `KMIPProxy` under it with
PyKMIP's own request payloads) over mutual TLS against the real gateway
scripts/client-tests.sh started (SoftHSM2 token), at KMIP 1.2, 1.4 and 2.0.

Client certificates: CN=kmip-a (project A, every permission and `export`), CN=kmip-b
(project B, no `export`), CN=kmip-unknown (no identity) of the client CA the gateway
trusts, and kmip-untrusted (CN=kmip-a too) of another CA. Key material, ciphertexts and
signatures are checked independently with `cryptography` from what Get returns.

What PyKMIP 0.11.0 itself cannot do, and so is not asked of it here:
- Authenticated Encryption Additional Data and Tag (Encrypt, Decrypt) are encoded and
  decoded only from KMIP 1.4 on (the fields are new in 1.4): AES-GCM with AAD and the tag
  field is tested at 1.4 and 2.0; at 1.2, GCM through ProxyKmipClient (no AAD, the tag
  after the ciphertext); AES-CBC at every version.
- Attribute values it cannot decode (Link, Digital Signature Algorithm, Revocation Reason,
  Usage Limits, Cryptographic Domain Parameters raise NotImplementedError; at 2.0 also
  Always Sensitive, Extractable, Never Extractable, Original Creation Date, Key Value
  Present, ...): Get Attributes names the attributes it reads, never "all".
- Get has no Key Format Type argument in ProxyKmipClient: the server's default formats are
  what is tested (Raw for symmetric keys, X.509 for public keys, PKCS#8 or PKCS#1 for
  private keys: the formats PyKMIP's objects accept).
- Add Attribute has no method or payload in PyKMIP.
Everything else of the flow PyKMIP encodes at 2.0 as at 1.x (2.0's Attributes structures
in Create, Create Key Pair, Register, Locate, Get Attributes and Get Attribute List).
"""

import os
import ssl
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from kmip.core import attributes as kattributes
from kmip.core import enums
from kmip.core import exceptions as core_errors
from kmip.core.attributes import CryptographicParameters
from kmip.core.messages import messages, payloads
from kmip.core.messages.contents import Operation, ProtocolVersion, UniqueBatchItemID
from kmip.pie import objects as pobjects
from kmip.pie.client import ProxyKmipClient
from kmip.pie.exceptions import KmipOperationFailure

from helpers import PROJECT_PERMISSIONS, audit_records, unique

# PyKMIP opens its sockets with ssl.PROTOCOL_TLS (or the protocol named), which Python 3.11
# marks deprecated at every connection.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS:DeprecationWarning")

Alg = enums.CryptographicAlgorithm
# The versions the flow runs at, with their protocol version numbers.
VERSIONS = {enums.KMIPVersion.KMIP_1_2: (1, 2), enums.KMIPVersion.KMIP_1_4: (1, 4), enums.KMIPVersion.KMIP_2_0: (2, 0)}
# Seconds PyKMIP waits for an answer (its default, 30, is short for RSA-4096 in a debug build).
ANSWER_TIMEOUT = 300

RSA_PKCS1_SHA256 = {"cryptographic_algorithm": Alg.RSA, "padding_method": enums.PaddingMethod.PKCS1v15,
                    "hashing_algorithm": enums.HashingAlgorithm.SHA_256}
ECDSA_SHA256 = {"digital_signature_algorithm": enums.DigitalSignatureAlgorithm.ECDSA_WITH_SHA256}
CBC_PKCS5 = {"cryptographic_algorithm": Alg.AES, "block_cipher_mode": enums.BlockCipherMode.CBC,
             "padding_method": enums.PaddingMethod.PKCS5}


@pytest.fixture(scope="module")
def kmip_identities(gateway):
    """`{cn: {"project", "identity"}}`: kmip-a and kmip-b, each in a project of its own,
    mapped from their certificates' subjects."""
    made = {}
    for cn, permissions in (("kmip-a", PROJECT_PERMISSIONS + ["export"]), ("kmip-b", PROJECT_PERMISSIONS)):
        project = gateway.ok("POST", "/projects", {"name": unique(cn)})["project"]["id"]
        reply = gateway.ok("POST", "/identities", {"name": unique(cn), "projectId": project,
                                                   "permissions": permissions, "tlsSubject": f"CN={cn}"})
        assert reply["identity"]["tlsSubject"] == f"CN={cn}", reply
        made[cn] = {"project": project, "identity": reply["identity"]["id"]}
    return made


@pytest.fixture(scope="module")
def pykmip_config(tmp_path_factory):
    """An empty PyKMIP configuration file, so that no ~/.pykmip/pykmip.conf or
    /etc/pykmip/pykmip.conf of the machine adds settings (a username, say)."""
    path = tmp_path_factory.mktemp("pykmip") / "pykmip.conf"
    path.write_text("")
    return str(path)


def new_client(kmip_port, config, name, version=enums.KMIPVersion.KMIP_1_4, ssl_version=None, open=True):
    """A ProxyKmipClient with the client certificate `name` (None: no certificate)."""
    cert, key = kmip_port.cert(name) if name else (None, None)
    client = ProxyKmipClient(hostname=kmip_port.host, port=kmip_port.port, cert=cert, key=key,
                             ca=kmip_port.ca_file, ssl_version=ssl_version, config_file=config, kmip_version=version)
    # ProxyKmipClient passes no timeout to its KMIPProxy; the proxy reads this when it opens.
    client.proxy.timeout = ANSWER_TIMEOUT
    if open:
        client.open()
    return client


@pytest.fixture
def connect(kmip_port, kmip_identities, pykmip_config):
    """`connect(certificate name or None, version=1.4, ssl_version=None, open=True)`: a
    ProxyKmipClient, closed after the test (the identities exist before it connects)."""
    made = []

    def connect(name, version=enums.KMIPVersion.KMIP_1_4, ssl_version=None, open=True):
        client = new_client(kmip_port, pykmip_config, name, version, ssl_version, open=False)
        made.append(client)
        if open:
            client.open()
        return client

    yield connect
    for client in made:
        client.close()


def version_id(version):
    return f"kmip{version.value}"


@pytest.fixture(scope="module", params=list(VERSIONS), ids=version_id)
def version(request):
    return request.param


@pytest.fixture
def client_a(connect, version):
    return connect("kmip-a", version)


@pytest.fixture
def client_b(connect, version):
    return connect("kmip-b", version)


@pytest.fixture(scope="module")
def rsa_pair(kmip_port, kmip_identities, pykmip_config):
    """`(public uid, private uid)` of the module's one RSA-4096 key pair (slow to make),
    made at KMIP 1.4; the tests use it at every version."""
    with new_client(kmip_port, pykmip_config, "kmip-a", open=False) as client:
        public, private = client.create_key_pair(
            Alg.RSA, 4096, private_name=unique("kmip-rsa"), public_name=unique("kmip-rsa-pub"),
            private_usage_mask=[enums.CryptographicUsageMask.SIGN],
            public_usage_mask=[enums.CryptographicUsageMask.VERIFY])
        # Both objects start Pre-Active; each is activated, as KMIP clients do.
        client.activate(private)
        client.activate(public)
    return public, private


def attribute_values(attributes):
    """`{attribute name: [values]}` of a Get Attributes answer, as plain Python values."""
    values = {}
    for attribute in attributes:
        value = attribute.attribute_value
        plain = value.name_value.value if isinstance(value, kattributes.Name) else value.value
        values.setdefault(attribute.attribute_name.value, []).append(plain)
    return values


def attributes_of(client, uid, *names):
    returned_uid, attributes = client.get_attributes(uid, list(names))
    assert returned_uid == uid
    return attribute_values(attributes)


def name_attribute(client, name):
    return client.attribute_factory.create_attribute(enums.AttributeType.NAME, name)


def new_active_aes(client, length=256):
    uid = client.create(Alg.AES, length, name=unique("kmip-aes"))
    client.activate(uid)
    return uid


def send(client, operation, payload):
    """One request payload through PyKMIP's own KMIPProxy (for what ProxyKmipClient does
    not expose); a failure raises kmip.core.exceptions.OperationFailure."""
    return client.proxy.send_request_payload(operation, payload)


def gcm_parameters(random_iv=None):
    return CryptographicParameters(cryptographic_algorithm=Alg.AES, block_cipher_mode=enums.BlockCipherMode.GCM,
                                   tag_length=16, random_iv=random_iv)


def assert_failure(excinfo, *reasons):
    failure = excinfo.value
    assert failure.status == enums.ResultStatus.OPERATION_FAILED, failure
    if reasons:
        assert failure.reason in reasons, failure


# --- Discover Versions, Query, batches, unsupported operations ---------------------------

def test_discover_versions_and_query(client_a, version):
    found = client_a.proxy.discover_versions()
    assert found.result_status.value == enums.ResultStatus.SUCCESS
    offered = [(v.major, v.minor) for v in found.protocol_versions]
    assert set(VERSIONS.values()) <= set(offered), offered
    # Asked about some versions, the server names those of them it speaks.
    some = client_a.proxy.discover_versions(protocol_versions=[ProtocolVersion(1, 4), ProtocolVersion(9, 9)])
    assert [(v.major, v.minor) for v in some.protocol_versions] == [(1, 4)]

    query = client_a.proxy.query(query_functions=[enums.QueryFunction.QUERY_OPERATIONS,
                                                  enums.QueryFunction.QUERY_OBJECTS,
                                                  enums.QueryFunction.QUERY_SERVER_INFORMATION])
    assert query.result_status.value == enums.ResultStatus.SUCCESS, query.result_message
    Op = enums.Operation
    assert {Op.DISCOVER_VERSIONS, Op.QUERY, Op.CREATE, Op.CREATE_KEY_PAIR, Op.REGISTER, Op.LOCATE, Op.GET,
            Op.GET_ATTRIBUTES, Op.GET_ATTRIBUTE_LIST, Op.ACTIVATE, Op.REVOKE, Op.DESTROY, Op.ENCRYPT,
            Op.DECRYPT, Op.SIGN, Op.SIGNATURE_VERIFY} <= set(query.operations), query.operations
    assert {enums.ObjectType.SYMMETRIC_KEY, enums.ObjectType.PUBLIC_KEY,
            enums.ObjectType.PRIVATE_KEY} <= set(query.object_types), query.object_types
    assert isinstance(query.vendor_identification, str) and query.vendor_identification.strip()


def test_two_batch_items_in_one_message_are_answered_in_order(client_a, version):
    proxy = client_a.proxy
    # With more than one batch item, each carries a Unique Batch Item ID (KMIP requires it).
    items = [
        messages.RequestBatchItem(
            operation=Operation(enums.Operation.QUERY), unique_batch_item_id=UniqueBatchItemID(b"\x01"),
            request_payload=payloads.QueryRequestPayload([enums.QueryFunction.QUERY_OBJECTS])),
        messages.RequestBatchItem(
            operation=Operation(enums.Operation.DISCOVER_VERSIONS), unique_batch_item_id=UniqueBatchItemID(b"\x02"),
            request_payload=payloads.DiscoverVersionsRequestPayload()),
    ]
    response = proxy._send_and_receive_message(proxy._build_request_message(None, items))
    answered = [(item.operation.value, item.unique_batch_item_id.value, item.result_status.value)
                for item in response.batch_items]
    assert answered == [(enums.Operation.QUERY, b"\x01", enums.ResultStatus.SUCCESS),
                        (enums.Operation.DISCOVER_VERSIONS, b"\x02", enums.ResultStatus.SUCCESS)]
    assert response.response_header.batch_count.value == 2
    assert enums.ObjectType.SYMMETRIC_KEY in response.batch_items[0].response_payload.object_types
    # The response speaks the request's protocol version.
    header_version = response.response_header.protocol_version
    assert (header_version.major, header_version.minor) == VERSIONS[version]


def test_an_unsupported_operation_is_a_result_not_a_dropped_connection(client_a, version):
    # Check: one PyKMIP encodes and decodes (it has no response payload for Archive, say,
    # and cannot read even a refusal of it) and the gateway does not implement.
    with pytest.raises(core_errors.OperationFailure) as refused:
        send(client_a, enums.Operation.CHECK, payloads.CheckRequestPayload(
            unique_identifier=new_active_aes(client_a), usage_limits_count=1))
    assert_failure(refused, enums.ResultReason.OPERATION_NOT_SUPPORTED)
    assert enums.Operation.CHECK not in client_a.proxy.query(
        query_functions=[enums.QueryFunction.QUERY_OPERATIONS]).operations
    # The same connection goes on.
    assert client_a.proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS


# --- symmetric keys ------------------------------------------------------------------------

def test_create_activate_get_and_attributes(gateway, kmip_identities, client_a, version):
    name = unique("kmip-aes")
    uid = client_a.create(Alg.AES, 256, name=name)
    assert str(uuid.UUID(uid)) == uid, "a KMIP Unique Identifier is the gateway's key id"
    attrs = attributes_of(client_a, uid, "Cryptographic Algorithm", "Cryptographic Length", "State", "Name",
                          "Object Type")
    assert attrs["Cryptographic Algorithm"] == [Alg.AES] and attrs["Cryptographic Length"] == [256]
    assert attrs["State"] == [enums.State.PRE_ACTIVE] and attrs["Name"] == [name]
    assert attrs["Object Type"] == [enums.ObjectType.SYMMETRIC_KEY]
    # A Pre-Active key protects nothing.
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.encrypt(b"too early", uid=uid, cryptographic_parameters=dict(CBC_PKCS5, random_iv=True))
    assert_failure(refused)

    client_a.activate(uid)
    assert attributes_of(client_a, uid, "State")["State"] == [enums.State.ACTIVE]
    listed = client_a.get_attribute_list(uid)
    assert {"Cryptographic Algorithm", "Cryptographic Length", "State", "Name", "Object Type",
            "Unique Identifier"} <= set(listed), listed

    key = client_a.get(uid)
    assert isinstance(key, pobjects.SymmetricKey)
    assert (key.cryptographic_algorithm, key.cryptographic_length, len(key.value)) == (Alg.AES, 256, 32)
    assert key.value != bytes(32)

    # The same key the other APIs see, in kmip-a's project.
    native = gateway.ok("GET", f"/kms/keys/{uid}")["key"]
    assert native["id"] == uid and native["projectId"] == kmip_identities["kmip-a"]["project"]
    assert native["encryptionAlgorithm"] == "aes-256-gcm"

    small = client_a.create(Alg.AES, 128)
    assert len(client_a.get(small).value) == 16
    assert attributes_of(client_a, small, "Cryptographic Length")["Cryptographic Length"] == [128]


def test_register_get_back_and_locate_by_name_within_the_project(client_a, client_b, version):
    secret = os.urandom(32)
    name = unique("kmip-registered")
    uid = client_a.register(pobjects.SymmetricKey(
        Alg.AES, 256, secret, masks=[enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT],
        name=name))
    uuid.UUID(uid)
    back = client_a.get(uid)
    assert isinstance(back, pobjects.SymmetricKey) and back.value == secret
    assert attributes_of(client_a, uid, "Name")["Name"] == [name]

    assert client_a.locate(attributes=[name_attribute(client_a, name)]) == [uid]
    assert client_a.locate(attributes=[name_attribute(client_a, unique("absent"))]) == []
    # Another project's client finds nothing by that name, and cannot reach the key by its id.
    assert client_b.locate(attributes=[name_attribute(client_b, name)]) == []
    with pytest.raises(KmipOperationFailure) as hidden:
        client_b.get(uid)
    assert_failure(hidden)
    with pytest.raises(KmipOperationFailure):
        client_b.get_attributes(uid, ["State"])
    with pytest.raises(KmipOperationFailure):
        client_b.destroy(uid)
    assert client_a.get(uid).value == secret, "kmip-b's Destroy must not have reached it"


def test_locate_by_type_algorithm_length_and_state_with_maximum_items(client_a, client_b, version):
    keys = [client_a.create(Alg.AES, 128, name=unique("kmip-located")) for _ in range(3)]
    client_a.activate(keys[0])
    attribute = client_a.attribute_factory.create_attribute
    aes_128 = [attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.SYMMETRIC_KEY),
               attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, Alg.AES),
               attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 128)]
    found = client_a.locate(attributes=aes_128)
    assert set(keys) <= set(found) and len(found) == len(set(found))
    active = client_a.locate(attributes=aes_128 + [attribute(enums.AttributeType.STATE, enums.State.ACTIVE)])
    pre_active = client_a.locate(attributes=aes_128 + [attribute(enums.AttributeType.STATE, enums.State.PRE_ACTIVE)])
    assert keys[0] in active and keys[0] not in pre_active
    assert set(keys[1:]) <= set(pre_active) and not set(keys[1:]) & set(active)
    assert client_a.locate(attributes=aes_128 + [attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 256)]) == []
    one = client_a.locate(maximum_items=1, attributes=aes_128)
    assert len(one) == 1 and one[0] in found
    if version >= enums.KMIPVersion.KMIP_1_4:  # Offset Items is new in KMIP 1.3
        rest = client_a.locate(offset_items=len(found) - 1, attributes=aes_128)
        assert len(rest) == 1 and rest[0] in found
    # Another project's client sees none of them.
    assert not set(keys) & set(client_b.locate(attributes=aes_128))


# PyKMIP encodes the Authenticated Encryption fields from KMIP 1.4 on (they are new in 1.4).
@pytest.mark.parametrize("version", [enums.KMIPVersion.KMIP_1_4, enums.KMIPVersion.KMIP_2_0], indirect=True,
                         ids=version_id)
def test_aes_gcm_with_a_server_made_iv_tag_and_aad(client_a, version):
    uid = new_active_aes(client_a)
    key = client_a.get(uid).value
    plaintext, aad = b"the disk's data key " * 5, b"volume 7"

    out = send(client_a, enums.Operation.ENCRYPT, payloads.EncryptRequestPayload(
        unique_identifier=uid, cryptographic_parameters=gcm_parameters(random_iv=True), data=plaintext,
        auth_additional_data=aad))
    assert out.unique_identifier == uid
    iv, tag, ciphertext = out.iv_counter_nonce, out.auth_tag, out.data
    assert iv and len(iv) == 12, "the server makes the IV and returns it"
    assert tag and len(tag) == 16 and len(ciphertext) == len(plaintext)
    # Independently: AES-GCM with the key Get returned.
    assert AESGCM(key).decrypt(iv, ciphertext + tag, aad) == plaintext

    def decrypt(data=ciphertext, auth_tag=tag, additional=aad):
        return send(client_a, enums.Operation.DECRYPT, payloads.DecryptRequestPayload(
            unique_identifier=uid, cryptographic_parameters=gcm_parameters(), data=data, iv_counter_nonce=iv,
            auth_additional_data=additional, auth_tag=auth_tag))

    assert decrypt().data == plaintext
    # A ciphertext made here decrypts there too.
    mine_iv = os.urandom(12)
    mine = AESGCM(key).encrypt(mine_iv, b"made by the client", b"")
    back = send(client_a, enums.Operation.DECRYPT, payloads.DecryptRequestPayload(
        unique_identifier=uid, cryptographic_parameters=gcm_parameters(), data=mine[:-16],
        iv_counter_nonce=mine_iv, auth_tag=mine[-16:]))
    assert back.data == b"made by the client"

    bad_tag = bytes([tag[0] ^ 1]) + tag[1:]
    for tampered in ({"auth_tag": bad_tag}, {"additional": b"volume 8"},
                     {"data": bytes([ciphertext[0] ^ 1]) + ciphertext[1:]}):
        with pytest.raises(core_errors.OperationFailure) as refused:
            decrypt(**tampered)
        assert_failure(refused)
    # The IV is the server's to make.
    with pytest.raises(core_errors.OperationFailure) as refused:
        send(client_a, enums.Operation.ENCRYPT, payloads.EncryptRequestPayload(
            unique_identifier=uid, cryptographic_parameters=gcm_parameters(), data=plaintext,
            iv_counter_nonce=os.urandom(12)))
    assert_failure(refused)


@pytest.mark.parametrize("version", [enums.KMIPVersion.KMIP_1_2], indirect=True, ids=version_id)
def test_aes_gcm_at_kmip_1_2_is_answered_in_1_2s_encoding(client_a, version):
    """KMIP 1.2 has no Authenticated Encryption Tag field, and PyKMIP at 1.2 refuses a
    response that carries one: the server must refuse GCM there, or put the tag where a
    1.2 client finds it (after the ciphertext)."""
    uid = new_active_aes(client_a)
    parameters = {"cryptographic_algorithm": Alg.AES, "block_cipher_mode": enums.BlockCipherMode.GCM}
    plaintext = b"a 1.2 client's data"
    try:
        ciphertext, iv = client_a.encrypt(plaintext, uid=uid, cryptographic_parameters=dict(parameters, random_iv=True))
    except KmipOperationFailure as refused:
        assert refused.status == enums.ResultStatus.OPERATION_FAILED
    else:
        assert len(ciphertext) == len(plaintext) + 16
        assert AESGCM(client_a.get(uid).value).decrypt(iv, ciphertext, b"") == plaintext
        # And back through the server, the tag again after the ciphertext.
        assert client_a.decrypt(ciphertext, uid=uid, cryptographic_parameters=parameters, iv_counter_nonce=iv) == \
            plaintext
        with pytest.raises(KmipOperationFailure):
            client_a.decrypt(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), uid=uid,
                             cryptographic_parameters=parameters, iv_counter_nonce=iv)
    assert client_a.proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS


def test_aes_cbc_with_pkcs5_padding(client_a, version):
    uid = new_active_aes(client_a)
    key = client_a.get(uid).value
    plaintext = b"sixteen byte blk" + b"and a tail"
    ciphertext, iv = client_a.encrypt(plaintext, uid=uid, cryptographic_parameters=dict(CBC_PKCS5, random_iv=True))
    assert iv and len(iv) == 16, "the server makes the IV and returns it"
    assert len(ciphertext) == 32
    # Independently, with the key Get returned.
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    assert unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize() == plaintext
    assert client_a.decrypt(ciphertext, uid=uid, cryptographic_parameters=CBC_PKCS5, iv_counter_nonce=iv) == plaintext


def test_rekey_makes_a_new_key_that_takes_the_name(client_a, version):
    name = unique("kmip-rekeyed")
    old = client_a.create(Alg.AES, 256, name=name)
    client_a.activate(old)
    old_key = client_a.get(old).value
    new = client_a.rekey(uid=old)
    assert new != old and str(uuid.UUID(new)) == new
    fresh = attributes_of(client_a, new, "Name", "State", "Cryptographic Algorithm", "Cryptographic Length")
    assert fresh == {"Name": [name], "State": [enums.State.ACTIVE], "Cryptographic Algorithm": [Alg.AES],
                     "Cryptographic Length": [256]}
    assert client_a.get(new).value not in (old_key, bytes(32)), "new material"
    # The name moved: Locate finds the new key; the old one keeps working until revoked.
    assert client_a.locate(attributes=[name_attribute(client_a, name)]) == [new]
    assert attributes_of(client_a, old, "Name")["Name"] != [name]
    assert attributes_of(client_a, old, "State")["State"] == [enums.State.ACTIVE]
    # Each links to the other (PyKMIP cannot decode a Link's value, only list it).
    assert "Link" in client_a.get_attribute_list(new) and "Link" in client_a.get_attribute_list(old)
    assert "Link" not in client_a.get_attribute_list(client_a.create(Alg.AES, 128))
    # Asymmetric keys are not re-keyed; a destroyed key neither.
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.rekey(uid=client_a.create_key_pair(Alg.ECDSA, 256)[1])
    assert_failure(refused)


def test_revoke_then_destroy_then_get_fails(client_a, version):
    uid = new_active_aes(client_a)
    # An Active key is not destroyed (KMIP: only Pre-Active or Deactivated objects are).
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.destroy(uid)
    assert_failure(refused)
    client_a.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid,
                    revocation_message="retired by the KMIP client tests")
    assert attributes_of(client_a, uid, "State")["State"] == [enums.State.DEACTIVATED]
    with pytest.raises(KmipOperationFailure):
        client_a.encrypt(b"after revocation", uid=uid, cryptographic_parameters=dict(CBC_PKCS5, random_iv=True))
    client_a.destroy(uid)
    with pytest.raises(KmipOperationFailure) as gone:
        client_a.get(uid)
    assert_failure(gone)


# --- key pairs -----------------------------------------------------------------------------

def test_rsa_4096_sign_and_signature_verify(gateway, client_a, rsa_pair, version):
    public_uid, private_uid = rsa_pair
    assert str(uuid.UUID(private_uid)) == private_uid, "the private key's uid is the gateway's key id"
    assert public_uid != private_uid
    assert gateway.ok("GET", f"/kms/keys/{private_uid}")["key"]["encryptionAlgorithm"] == "RSA_4096"

    public = client_a.get(public_uid)
    assert isinstance(public, pobjects.PublicKey) and public.key_format_type == enums.KeyFormatType.X_509
    spki = serialization.load_der_public_key(public.value)
    assert isinstance(spki, rsa.RSAPublicKey) and spki.key_size == 4096

    data = b"firmware image " + version.name.encode()
    signature = client_a.sign(data, uid=private_uid, cryptographic_parameters=RSA_PKCS1_SHA256)
    spki.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    # The same scheme named by its Digital Signature Algorithm (PKCS#1 v1.5 is deterministic).
    assert client_a.sign(data, uid=private_uid, cryptographic_parameters={
        "digital_signature_algorithm": enums.DigitalSignatureAlgorithm.SHA256_WITH_RSA_ENCRYPTION}) == signature

    verify = client_a.signature_verify
    assert verify(data, signature, uid=public_uid, cryptographic_parameters=RSA_PKCS1_SHA256) == \
        enums.ValidityIndicator.VALID
    wrong = bytes([signature[0] ^ 1]) + signature[1:]
    assert verify(data, wrong, uid=public_uid, cryptographic_parameters=RSA_PKCS1_SHA256) == \
        enums.ValidityIndicator.INVALID
    assert verify(data + b"!", signature, uid=public_uid, cryptographic_parameters=RSA_PKCS1_SHA256) == \
        enums.ValidityIndicator.INVALID


def test_ec_p256_key_pair_sign_verify_and_export(gateway, kmip_identities, client_a, version):
    public_uid, private_uid = client_a.create_key_pair(
        Alg.ECDSA, 256, private_name=unique("kmip-ec"), public_name=unique("kmip-ec-pub"),
        private_usage_mask=[enums.CryptographicUsageMask.SIGN],
        public_usage_mask=[enums.CryptographicUsageMask.VERIFY])
    uuid.UUID(private_uid)
    assert public_uid != private_uid
    native = gateway.ok("GET", f"/kms/keys/{private_uid}")["key"]
    assert native["encryptionAlgorithm"] == "ECC_NIST_P256"
    assert native["projectId"] == kmip_identities["kmip-a"]["project"]
    client_a.activate(private_uid)
    client_a.activate(public_uid)

    spki = serialization.load_der_public_key(client_a.get(public_uid).value)
    assert isinstance(spki, ec.EllipticCurvePublicKey) and spki.curve.name == "secp256r1"
    data = b"boot record " + version.name.encode()
    signature = client_a.sign(data, uid=private_uid, cryptographic_parameters=ECDSA_SHA256)
    spki.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    # ECDSA named by algorithm and hash instead.
    other = client_a.sign(data, uid=private_uid, cryptographic_parameters={
        "cryptographic_algorithm": Alg.ECDSA, "hashing_algorithm": enums.HashingAlgorithm.SHA_256})
    spki.verify(other, data, ec.ECDSA(hashes.SHA256()))
    assert client_a.signature_verify(data, signature, uid=public_uid, cryptographic_parameters=ECDSA_SHA256) == \
        enums.ValidityIndicator.VALID
    mine = ec.generate_private_key(ec.SECP256R1()).sign(data, ec.ECDSA(hashes.SHA256()))
    assert client_a.signature_verify(data, mine, uid=public_uid, cryptographic_parameters=ECDSA_SHA256) == \
        enums.ValidityIndicator.INVALID

    # The private key leaves only as an export, and it is the pair's.
    private = client_a.get(private_uid)
    assert isinstance(private, pobjects.PrivateKey)
    assert private.key_format_type in (enums.KeyFormatType.PKCS_8, enums.KeyFormatType.PKCS_1)
    exported = serialization.load_der_private_key(private.value, password=None)
    assert exported.public_key().public_numbers() == spki.public_numbers()


NEW_PAIRS = {
    # (algorithm, length): the native key type, the signing parameters, and how
    # `cryptography` checks the signature.
    "rsa-2048-pkcs1-sha256": (Alg.RSA, 2048, "RSA_2048", RSA_PKCS1_SHA256,
                              lambda k, s, d: k.verify(s, d, padding.PKCS1v15(), hashes.SHA256())),
    "rsa-3072-pss-sha384": (Alg.RSA, 3072, "RSA_3072",
                            {"cryptographic_algorithm": Alg.RSA, "padding_method": enums.PaddingMethod.PSS,
                             "hashing_algorithm": enums.HashingAlgorithm.SHA_384},
                            lambda k, s, d: k.verify(s, d, padding.PSS(padding.MGF1(hashes.SHA384()), 48),
                                                     hashes.SHA384())),
    "ec-p384-ecdsa-sha384": (Alg.ECDSA, 384, "ECC_NIST_P384",
                             {"digital_signature_algorithm": enums.DigitalSignatureAlgorithm.ECDSA_WITH_SHA384},
                             lambda k, s, d: k.verify(s, d, ec.ECDSA(hashes.SHA384()))),
    "ec-p521-ecdsa-sha512": (Alg.ECDSA, 521, "ECC_NIST_P521",
                             {"digital_signature_algorithm": enums.DigitalSignatureAlgorithm.ECDSA_WITH_SHA512},
                             lambda k, s, d: k.verify(s, d, ec.ECDSA(hashes.SHA512()))),
}


@pytest.mark.parametrize("pair", list(NEW_PAIRS))
def test_rsa_2048_3072_p384_and_p521_pairs_sign_and_verify(gateway, client_a, version, pair):
    algorithm, length, native_type, params, check = NEW_PAIRS[pair]
    public_uid, private_uid = client_a.create_key_pair(
        algorithm, length, private_name=unique(f"kmip-{pair}"),
        private_usage_mask=[enums.CryptographicUsageMask.SIGN],
        public_usage_mask=[enums.CryptographicUsageMask.VERIFY])
    assert gateway.ok("GET", f"/kms/keys/{private_uid}")["key"]["encryptionAlgorithm"] == native_type
    client_a.activate(private_uid)
    client_a.activate(public_uid)
    spki = serialization.load_der_public_key(client_a.get(public_uid).value)
    assert spki.key_size == length
    if algorithm == Alg.ECDSA:
        assert spki.curve.name == {384: "secp384r1", 521: "secp521r1"}[length]

    data = b"disk label " + version.name.encode()
    signature = client_a.sign(data, uid=private_uid, cryptographic_parameters=params)
    check(spki, signature, data)  # raises InvalidSignature on a bad one
    verify = client_a.signature_verify
    assert verify(data, signature, uid=public_uid, cryptographic_parameters=params) == \
        enums.ValidityIndicator.VALID
    assert verify(data + b"!", signature, uid=public_uid, cryptographic_parameters=params) == \
        enums.ValidityIndicator.INVALID


@pytest.mark.parametrize("native_type", ["ED25519", "ML_DSA_65"])
def test_keys_of_types_kmip_has_no_name_for_are_refused_as_not_offered(gateway, kmip_identities, client_a,
                                                                       native_type):
    """Ed25519 and ML-DSA keys (made through the native API in the identity's project) are
    not offered over KMIP: Locate leaves them out, Get of the public object and Get
    Attributes of either answer Feature Not Supported (Get of the private one is the
    refusal of any key not made over KMIP: its material is not exportable), and the
    connection goes on."""
    key = gateway.ok("POST", "/kms/keys", {"projectId": kmip_identities["kmip-a"]["project"],
                                           "name": unique("not-kmip"), "keyUsage": "sign-verify",
                                           "encryptionAlgorithm": native_type})["key"]["id"]
    located = client_a.locate()
    assert key not in located and f"{key}_pub" not in located
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.get(f"{key}_pub")
    assert_failure(refused, enums.ResultReason.FEATURE_NOT_SUPPORTED)
    assert f"{native_type} keys are not offered over KMIP" in str(refused.value)
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.get(key)
    assert_failure(refused)
    for uid in (key, f"{key}_pub"):
        with pytest.raises(KmipOperationFailure) as refused:
            client_a.get_attributes(uid)
        assert_failure(refused, enums.ResultReason.FEATURE_NOT_SUPPORTED)
    assert client_a.proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS


def test_unsupported_key_pair_size_is_a_clean_failure(client_a, version):
    with pytest.raises(KmipOperationFailure) as refused:
        client_a.create_key_pair(Alg.RSA, 1024, private_name=unique("kmip-rsa1024"))
    assert_failure(refused)
    assert client_a.proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS


# --- permissions, export and the audit log ------------------------------------------------

def test_get_of_key_material_needs_the_export_permission(gateway, kmip_identities, connect):
    client_b = connect("kmip-b", enums.KMIPVersion.KMIP_1_4)
    uid = client_b.create(Alg.AES, 256, name=unique("kmip-b-aes"))
    client_b.activate(uid)
    # kmip-b may use its key...
    ciphertext, iv = client_b.encrypt(b"b's data", uid=uid, cryptographic_parameters=dict(CBC_PKCS5, random_iv=True))
    assert client_b.decrypt(ciphertext, uid=uid, cryptographic_parameters=CBC_PKCS5, iv_counter_nonce=iv) == \
        b"b's data"
    # ...but not take it.
    with pytest.raises(KmipOperationFailure) as refused:
        client_b.get(uid)
    assert_failure(refused, enums.ResultReason.PERMISSION_DENIED)

    client_a = connect("kmip-a", enums.KMIPVersion.KMIP_1_4)
    mine = new_active_aes(client_a)
    client_a.get(mine)

    records = audit_records(gateway)
    kmip = [r for r in records if r.get("frontend") == "kmip"]
    exports = [r for r in kmip if r["operation"] == "key.export" and r.get("keyId") == mine]
    assert exports, "the export of a key is audited with its key id"
    assert exports[-1]["outcome"] == "ok"
    assert exports[-1]["identityId"] == kmip_identities["kmip-a"]["identity"]
    assert exports[-1]["projectId"] == kmip_identities["kmip-a"]["project"]
    refused_exports = [r for r in kmip if r["operation"] == "key.export" and r.get("keyId") == uid]
    assert refused_exports and all(r["outcome"] != "ok" for r in refused_exports), refused_exports
    # Create and Activate are recorded too, as KMIP operations on the key.
    assert len([r for r in kmip if r.get("keyId") == mine]) >= 3


# --- TLS: who may speak KMIP ----------------------------------------------------------------

def test_a_certificate_of_another_ca_is_refused_in_the_handshake(connect):
    # TLS 1.2: the server verifies the client's certificate before its Finished message,
    # so the handshake itself fails.
    with pytest.raises(ssl.SSLError):
        connect("kmip-untrusted", ssl_version="PROTOCOL_TLSv1_2")
    # TLS 1.3: the client may finish first; the server's alert then ends the connection
    # before any KMIP answer.
    client = connect("kmip-untrusted", open=False)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        client.open()
        client.proxy.discover_versions()
    # So is a client with no certificate.
    with pytest.raises(ssl.SSLError):
        connect(None, ssl_version="PROTOCOL_TLSv1_2")
    # The port still serves the good.
    assert connect("kmip-a").proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS


def test_a_trusted_certificate_without_an_identity_gets_a_kmip_failure(connect):
    client = connect("kmip-unknown")
    with pytest.raises(KmipOperationFailure) as refused:
        client.create(Alg.AES, 256, name=unique("kmip-unknown"))
    assert_failure(refused, enums.ResultReason.AUTHENTICATION_NOT_SUCCESSFUL)
    # Discover Versions needs no identity.
    assert client.proxy.discover_versions().result_status.value == enums.ResultStatus.SUCCESS
