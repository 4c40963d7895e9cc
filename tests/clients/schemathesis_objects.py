"""Makes the objects schemathesis.toml points generated requests at, as the bootstrap
administrator, and prints them as `export KMSGW_ST_…=…` lines for scripts/client-tests.sh:
a project, an AES key, an AES key for DELETE and cancel-deletion, an ECC signing key,
and a throw-away token identity for revoke and rotate-token."""

import os
import pathlib
import shlex
import sys
import uuid

import requests


def main():
    api = os.environ["KMSGW_CLIENT_BASE_URL"].rstrip("/") + "/api/v1"
    session = requests.Session()
    session.verify = os.environ["KMSGW_CLIENT_CA_FILE"]
    token = pathlib.Path(os.environ["KMSGW_CLIENT_BOOTSTRAP_TOKEN_FILE"]).read_text().strip()
    session.headers["Authorization"] = f"Bearer {token}"

    def post(path, body):
        resp = session.post(api + path, json=body, timeout=120)
        if resp.status_code != 200:
            sys.exit(f"POST {path}: {resp.status_code} {resp.text}")
        return resp.json()

    tag = uuid.uuid4().hex[:8]
    project = post("/projects", {"name": f"schemathesis-{tag}"})["project"]["id"]

    def key(name, **extra):
        return post("/kms/keys", {"projectId": project, "name": f"{name}-{tag}", **extra})["key"]

    aes = key("st-aes")
    deleted = key("st-deleted")
    signing = key("st-signing", keyUsage="sign-verify", encryptionAlgorithm="ECC_NIST_P256")
    identity = post("/identities", {"name": f"st-identity-{tag}", "projectId": project, "permissions": ["read"]})
    values = {
        "KMSGW_ST_PROJECT_ID": project,
        "KMSGW_ST_AES_KEY_ID": aes["id"],
        "KMSGW_ST_DELETED_KEY_ID": deleted["id"],
        "KMSGW_ST_SIGNING_KEY_ID": signing["id"],
        "KMSGW_ST_SIGNING_KEY_NAME": signing["name"],
        "KMSGW_ST_IDENTITY_ID": identity["identity"]["id"],
    }
    for name, value in values.items():
        print(f"export {name}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
