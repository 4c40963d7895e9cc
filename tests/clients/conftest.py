"""Fixtures of the client tests: the real gateway that scripts/client-tests.sh started
(over real TLS, verified with its dev CA), a project and a universal-auth identity made
as the bootstrap administrator with plain HTTP, and Infisical's own Python SDK logged in
as that identity.

The script passes the gateway as:
  KMSGW_CLIENT_BASE_URL         https://127.0.0.1:PORT
  KMSGW_CLIENT_CA_FILE          the dev CA (REQUESTS_CA_BUNDLE is set to it too: that is
                                how the SDK, which has no CA parameter, is pointed at it)
  KMSGW_CLIENT_BOOTSTRAP_TOKEN_FILE  the bootstrap administrator's token
  KMSGW_CLIENT_KMIP_HOST, KMSGW_CLIENT_KMIP_PORT  the KMIP port (mutual TLS)
  KMSGW_CLIENT_KMIP_CERTS       the directory of the KMIP client certificates, NAME.pem and
                                NAME.key (kmip-a, kmip-b, kmip-unknown, kmip-untrusted)
"""

import os
import pathlib

import pytest
import requests

from helpers import make_universal_auth_identity, new_sdk, sdk_call, unique


def _setting(name):
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the client tests with scripts/client-tests.sh", returncode=2)
    return value


class Gateway:
    """The gateway under test, and plain-HTTP calls to it as the bootstrap administrator
    (for what Infisical's SDK has no method for)."""

    def __init__(self, base_url, ca_file, bootstrap_token):
        self.base_url = base_url.rstrip("/")
        self.api = self.base_url + "/api/v1"
        self.ca_file = ca_file
        self.bootstrap_token = bootstrap_token
        self.admin = requests.Session()
        self.admin.verify = ca_file
        self.admin.headers["Authorization"] = f"Bearer {bootstrap_token}"

    def call(self, method, path, body=None, token=None, **kwargs):
        """`(status, JSON body or text)` of `method /api/v1{path}`: as the bootstrap
        administrator, or with another bearer `token` ('' for no Authorization header)."""
        if token is None:
            session = self.admin
        else:
            session = requests.Session()
            if token:
                session.headers["Authorization"] = f"Bearer {token}"
        resp = session.request(method, self.api + path, json=body, verify=self.ca_file, timeout=120, **kwargs)
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def ok(self, method, path, body=None, token=None):
        status, reply = self.call(method, path, body, token)
        assert status == 200, f"{method} {path}: {status} {reply}"
        return reply


@pytest.fixture(scope="session")
def gateway():
    token_file = pathlib.Path(_setting("KMSGW_CLIENT_BOOTSTRAP_TOKEN_FILE"))
    return Gateway(_setting("KMSGW_CLIENT_BASE_URL"), _setting("KMSGW_CLIENT_CA_FILE"),
                   token_file.read_text().strip())


class KmipPort:
    """The gateway's KMIP port, and the client certificates scripts/client-tests.sh made
    for it: CN=kmip-a, CN=kmip-b and CN=kmip-unknown of the client CA the gateway trusts,
    and kmip-untrusted (also CN=kmip-a) of another CA."""

    def __init__(self, host, port, certs, ca_file):
        self.host = host
        self.port = int(port)
        self.certs = pathlib.Path(certs)
        self.ca_file = ca_file

    def cert(self, name):
        """`(certificate file, key file)` of a client certificate."""
        pem, key = self.certs / f"{name}.pem", self.certs / f"{name}.key"
        assert pem.is_file() and key.is_file(), f"no client certificate {name} in {self.certs}"
        return str(pem), str(key)


@pytest.fixture(scope="session")
def kmip_port(gateway):
    return KmipPort(_setting("KMSGW_CLIENT_KMIP_HOST"), _setting("KMSGW_CLIENT_KMIP_PORT"),
                    _setting("KMSGW_CLIENT_KMIP_CERTS"), gateway.ca_file)


@pytest.fixture(scope="session")
def project(gateway):
    reply = gateway.ok("POST", "/projects", {"name": unique("sdk-tests")})
    return reply["project"]["id"]


@pytest.fixture(scope="session")
def ua_identity(gateway, project):
    """`{identity, clientId, clientSecret}` of a universal-auth identity of `project`."""
    return make_universal_auth_identity(gateway, project, unique("sdk-client"))


@pytest.fixture(scope="session")
def sdk_login(gateway, ua_identity):
    """`(client, login reply)`: Infisical's SDK logged in by universal auth."""
    client = new_sdk(gateway)
    login = client.auth.universal_auth.login(client_id=ua_identity["clientId"],
                                             client_secret=ua_identity["clientSecret"])
    return client, login


@pytest.fixture(scope="session")
def sdk(sdk_login):
    return sdk_login[0]


@pytest.fixture
def sent(sdk):
    """The requests the SDK sends during one test, as `requests.PreparedRequest`s."""
    seen = []

    def record(response, *args, **kwargs):
        seen.append(response.request)

    sdk.api.session.hooks["response"].append(record)
    yield seen
    sdk.api.session.hooks["response"].remove(record)


@pytest.fixture(scope="session")
def rsa_key(sdk, project):
    reply = sdk_call(sdk, "POST", "/api/v1/kms/keys", {
        "projectId": project, "name": unique("rsa"), "keyUsage": "sign-verify", "encryptionAlgorithm": "RSA_4096"})
    return reply["key"]


@pytest.fixture(scope="session")
def ecc_key(sdk, project):
    reply = sdk_call(sdk, "POST", "/api/v1/kms/keys", {
        "projectId": project, "name": unique("ecc"), "keyUsage": "sign-verify", "encryptionAlgorithm": "ECC_NIST_P256"})
    return reply["key"]


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item (`item.rep_call`), so that a fixture
    can tell after the test whether it failed (the console tests save a screenshot)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
