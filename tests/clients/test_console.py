"""The web console (/ui/) in headless Chromium, driven by selenium, on the shared gateway
over real TLS, through Infisical's KMS guides step by step: sign in, create a project,
Add Key, Encrypt data and Decrypt data with and without the Base64 switches, Sign data and
Verify with an RSA-4096 and an ECC P-256 key (checked again with the `openssl` command
line against the public key PEM the console shows), the encryption strategy switched to
HSM and back in the Server Admin Console, an identity created and revoked, the audit
chain verified; and the console's security headers, and a key description holding
`<script>` shown as text.

TLS: Chromium is not told to ignore certificate errors. The test fetches the gateway's
certificate over a TLS connection verified with the dev CA (so it is the CA's), computes
the base64 SHA-256 of its SubjectPublicKeyInfo with the `openssl` command line, and passes
only that hash in `--ignore-certificate-errors-spki-list`: Chromium accepts that one key
and nothing else (a different certificate fails). The alternative, an NSS database in a
temporary HOME made with certutil, needs one more Debian package for the same result.

The steps are tests run in order on one browser; a failed step saves a screenshot (and the
page's HTML) in KMSGW_CONSOLE_ARTIFACTS (default: a pytest temporary directory) and names
it. With KMSGW_CONSOLE_SCREENSHOTS=DIR set, each page is also saved as DIR/NN-name.png
(the pictures of docs/console/ come from such a run).
"""

import base64
import hashlib
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.parse

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from helpers import b64, unique

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
WAIT = 60  # seconds; RSA-4096 key generation on a busy 2-core machine takes a few


def spki_sha256(gateway):
    """The base64 SHA-256 of the SubjectPublicKeyInfo of the certificate the gateway serves,
    fetched over a connection verified with the dev CA."""
    url = urllib.parse.urlsplit(gateway.base_url)
    context = ssl.create_default_context(cafile=gateway.ca_file)
    with socket.create_connection((url.hostname, url.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
            der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=pem, capture_output=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, capture_output=True,
                          check=True).stdout
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = os.environ.get("KMSGW_CONSOLE_ARTIFACTS")
    path = pathlib.Path(d) if d else tmp_path_factory.mktemp("console-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser(gateway):
    chromium = shutil.which("chromium")
    driver_bin = shutil.which("chromedriver")
    assert chromium and driver_bin, "chromium and chromedriver are required (Debian: chromium chromium-driver)"
    profile = tempfile.mkdtemp(prefix="kmsgw-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
                f"--ignore-certificate-errors-spki-list={spki_sha256(gateway)}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, artifacts):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "browser" in request.fixturenames:
        driver = request.getfixturevalue("browser")
        png = artifacts / f"{request.node.name}.png"
        driver.save_screenshot(str(png))
        (artifacts / f"{request.node.name}.html").write_text(driver.page_source)
        print(f"console test failed: screenshot {png}")


class Console:
    """The console in the browser, with the waits and lookups the steps share."""

    def __init__(self, driver, gateway):
        self.d = driver
        self.gw = gateway
        self.shots = os.environ.get("KMSGW_CONSOLE_SCREENSHOTS")
        self.state = {}

    def wait(self, condition, what):
        try:
            # A table re-rendered under a lookup makes its elements stale: look again.
            return WebDriverWait(self.d, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: condition())
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}") from None

    def by_id(self, element_id):
        return self.wait(lambda: self._visible(By.ID, element_id), f"#{element_id}")

    def _visible(self, by, what):
        found = self.d.find_elements(by, what)
        return found[0] if found and found[0].is_displayed() else None

    def title(self, text):
        self.wait(lambda: self._text_of("page-title") == text, f"the page titled {text!r}")

    def _text_of(self, element_id):
        found = self.d.find_elements(By.ID, element_id)
        return found[0].text if found else None

    def fill(self, element_id, text):
        e = self.by_id(element_id)
        # Select all and replace, as a person does (clear() sends no input event).
        e.send_keys(Keys.CONTROL, "a")
        e.send_keys(Keys.BACKSPACE)
        if text:
            e.send_keys(text)
        return e

    def click_css(self, css, what):
        """Clicks the first visible element matching `css` (looked up again if stale)."""
        def attempt():
            e = self._visible(By.CSS_SELECTOR, css)
            if e is None or not e.is_enabled():
                return None
            e.click()
            return True
        self.wait(attempt, what)

    def click(self, element_id):
        e = self.by_id(element_id)
        self.wait(e.is_enabled, f"#{element_id} enabled")
        e.click()

    def check(self, element_id, on):
        e = self.by_id(element_id)
        if e.is_selected() != on:
            e.click()
        assert e.is_selected() == on

    def choose(self, element_id, value):
        e = self.by_id(element_id)
        self.wait(lambda: any(o.get_attribute("value") == value for o in e.find_elements(By.TAG_NAME, "option")),
                  f"option {value} in #{element_id}")
        Select(e).select_by_value(value)

    def value(self, element_id, what):
        e = self.by_id(element_id)
        return self.wait(lambda: e.get_attribute("value") or None, what)

    def text(self, element_id, what):
        e = self.by_id(element_id)
        return self.wait(lambda: e.text or None, what)

    def no_error(self, element_id):
        errors = [e.text for e in self.d.find_elements(By.ID, element_id) if e.is_displayed()]
        assert not errors, errors

    def shot(self, name):
        if self.shots:
            pathlib.Path(self.shots).mkdir(parents=True, exist_ok=True)
            self.d.save_screenshot(str(pathlib.Path(self.shots) / f"{name}.png"))

    def go(self, fragment):
        self.d.get(f"{self.gw.base_url}/ui/{fragment}")

    def row(self, key_name):
        return self.wait(lambda: self._visible(By.CSS_SELECTOR, f'tr[data-key-name="{key_name}"]'), f"the row of {key_name}")

    def menu(self, key_name, item):
        row = self.row(key_name)
        row.find_element(By.CSS_SELECTOR, "button.options").click()
        entry = self.wait(lambda: next((b for b in row.find_elements(By.CSS_SELECTOR, ".menu button")
                                        if b.is_displayed() and b.text == item), None), f"menu item {item}")
        entry.click()

    def close_dialog(self):
        self.d.find_element(By.CSS_SELECTOR, "dialog[open] .dialog-close").click()
        self.wait(lambda: not self.d.find_elements(By.CSS_SELECTOR, "dialog[open]"), "the dialog to close")

    def add_key(self, name, usage, algorithm, description=""):
        self.click("add-key")
        self.by_id("add-key-dialog")
        self.fill("key-name", name)
        self.choose("key-usage", usage)
        self.choose("key-algorithm", algorithm)
        self.fill("key-description", description)
        self.click("add-key-submit")
        self.wait(lambda: not self.d.find_elements(By.ID, "add-key-dialog"), f"the key {name} to be created")
        return self.row(name)

    def key_id(self, name):
        project = self.state["project"]
        return self.gw.ok("GET", f"/kms/keys/key-name/{name}?projectId={project}")["key"]["id"]


@pytest.fixture(scope="module")
def ui(browser, gateway):
    return Console(browser, gateway)


def openssl_verify(tmp_path, pem, algorithm, message, signature_b64):
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "msg.bin").write_bytes(message)
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(signature_b64))
    args = ["openssl", "dgst", "-sha" + algorithm[-3:], "-verify", str(tmp_path / "pub.pem"),
            "-signature", str(tmp_path / "sig.bin")]
    if algorithm.startswith("RSASSA_PSS"):
        args += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
    out = subprocess.run(args + [str(tmp_path / "msg.bin")], capture_output=True, text=True)
    return out.returncode == 0 and "Verified OK" in out.stdout


# --- the steps, in order ------------------------------------------------------------------

def test_console_answers_carry_the_security_headers(gateway):
    for path in ["/ui/", "/ui/app.js", "/ui/app.css", "/ui/missing"]:
        resp = requests.get(gateway.base_url + path, verify=gateway.ca_file, timeout=30)
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Referrer-Policy"] == "no-referrer", path
        assert resp.headers["X-Frame-Options"] == "DENY", path
        assert "Set-Cookie" not in resp.headers, path


def test_sign_in_with_the_bootstrap_token(ui, gateway):
    ui.go("")
    ui.title("Sign in")
    ui.shot("01-sign-in")
    # A wrong token: the API's message, next to the form.
    ui.fill("signin-token", "not-a-token")
    ui.click("signin-token-submit")
    assert ui.text("signin-token-error", "the sign-in error")
    ui.fill("signin-token", gateway.bootstrap_token)
    ui.click("signin-token-submit")
    ui.title("Projects")
    # The token lives in sessionStorage, and no cookie is set.
    assert ui.d.execute_script("return sessionStorage.getItem('kmsgw.token')") == gateway.bootstrap_token
    assert ui.d.execute_script("return document.cookie") == ""
    assert ui.d.get_cookies() == []


def test_create_a_project(ui):
    name = unique("console")
    ui.fill("project-name", name)
    ui.shot("02-projects")
    ui.click("project-create")
    ui.title("Key Management")
    ui.state["project"] = ui.text("project-id", "the project id")
    assert name in ui.d.find_element(By.CLASS_NAME, "crumbs").text
    # The Projects page lists it (GET /api/v1/projects).
    ui.go("#/projects")
    ui.click_css(f'#project-list a[href="#/projects/{ui.state["project"]}/keys"]', "the project in the list")
    ui.title("Key Management")


def test_add_key_aes_256_gcm(ui):
    ui.click("add-key")
    ui.by_id("add-key-dialog")
    labels = [e.text for e in ui.d.find_elements(By.CSS_SELECTOR, "#add-key-dialog label")]
    for want in ["Name", "Key Usage", "Algorithm", "Description", "Protection", "Customer fragment",
                 "Rotation period (days)"]:
        assert want in labels, labels
    # The name is checked as it is typed, against the API's rule.
    ui.fill("key-name", "Not A Slug")
    assert "lower-case" in ui.text("key-name-error", "the name's error")
    assert not ui.by_id("add-key-submit").is_enabled()
    ui.fill("key-name", "orders")
    assert not ui.d.find_element(By.ID, "key-name-error").is_displayed()
    usages = [o.text for o in Select(ui.by_id("key-usage")).options]
    assert usages == ["Encrypt/Decrypt", "Sign/Verify"]
    ui.choose("key-algorithm", "aes-256-gcm")
    ui.fill("key-description", "Orders of the shop")
    ui.shot("04-add-key")
    ui.click("add-key-submit")
    row = ui.row("orders")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1:6] == ["encrypt-decrypt", "aes-256-gcm", "1", "Enabled", "Software"], cells
    ui.state["aes"] = ui.key_id("orders")


def test_encrypt_data_then_decrypt_data(ui, gateway):
    text = "card 4111 1111 1111 1111 — ünïcode ✓"
    # Opened with the keyboard: Options, then the arrow keys and Enter.
    row = ui.row("orders")
    options = row.find_element(By.CSS_SELECTOR, "button.options")
    options.send_keys(Keys.ENTER)
    focused = ui.wait(lambda: ui.d.switch_to.active_element.text == "Encrypt data" or None, "the menu's first item")
    assert focused
    ui.d.switch_to.active_element.send_keys(Keys.ENTER)
    ui.by_id("encrypt-dialog")
    ui.fill("encrypt-data", text)
    ui.check("encrypt-is-base64", False)
    ui.click("encrypt-submit")
    ciphertext = ui.value("encrypt-output", "the ciphertext")
    ui.no_error("encrypt-error")
    assert ui.by_id("encrypt-copy").text == "Copy"
    ui.shot("05-encrypt-data")
    ui.close_dialog()
    # The API agrees: the ciphertext decrypts to the text's bytes.
    reply = gateway.ok("POST", f"/kms/keys/{ui.state['aes']}/decrypt", {"ciphertext": ciphertext})
    assert base64.b64decode(reply["plaintext"]) == text.encode()

    # Decrypt data with Decode Base64: the text itself.
    ui.menu("orders", "Decrypt data")
    ui.fill("decrypt-data", ciphertext)
    ui.check("decrypt-decode", True)
    ui.click("decrypt-submit")
    assert ui.value("decrypt-output", "the plaintext") == text
    ui.shot("06-decrypt-data")
    # Without it: the Base64 the API returns.
    ui.check("decrypt-decode", False)
    ui.click("decrypt-submit")
    ui.wait(lambda: ui.by_id("decrypt-output").get_attribute("value") == b64(text.encode()), "the Base64 plaintext")
    ui.close_dialog()

    # Base64 input with the switch on: bytes that are not text.
    data = bytes(range(256))
    ui.menu("orders", "Encrypt data")
    ui.fill("encrypt-data", b64(data))
    ui.check("encrypt-is-base64", True)
    ui.click("encrypt-submit")
    ciphertext = ui.value("encrypt-output", "the ciphertext")
    ui.close_dialog()
    reply = gateway.ok("POST", f"/kms/keys/{ui.state['aes']}/decrypt", {"ciphertext": ciphertext})
    assert base64.b64decode(reply["plaintext"]) == data
    ui.menu("orders", "Decrypt data")
    ui.fill("decrypt-data", ciphertext)
    ui.check("decrypt-decode", False)
    ui.click("decrypt-submit")
    ui.wait(lambda: ui.by_id("decrypt-output").get_attribute("value") == b64(data), "the Base64 plaintext")
    ui.close_dialog()

    # A broken ciphertext: the API's message next to the action.
    ui.menu("orders", "Decrypt data")
    ui.fill("decrypt-data", "AAAA")
    ui.click("decrypt-submit")
    assert ui.text("decrypt-error", "the decrypt error")
    ui.close_dialog()


def sign_and_verify(ui, tmp_path, key_name, algorithm):
    message = f"release {key_name} 1.0".encode()
    ui.menu(key_name, "Sign data")
    ui.fill("sign-data", message.decode())
    ui.check("sign-is-base64", False)
    ui.choose("sign-algorithm", algorithm)
    ui.click("sign-submit")
    signature = ui.value("sign-output", "the signature")
    if key_name == "release-rsa":
        ui.shot("07-sign-data")
    ui.close_dialog()

    ui.menu(key_name, "Verify")
    ui.fill("verify-data", message.decode())
    ui.choose("verify-algorithm", algorithm)
    ui.fill("verify-signature", signature)
    ui.click("verify-submit")
    ui.wait(lambda: ui.by_id("verify-status").text == "Signature Status: Valid", "Signature Status: Valid")
    if key_name == "release-rsa":
        ui.shot("08-verify")
    ui.fill("verify-data", message.decode() + "!")
    ui.click("verify-submit")
    ui.wait(lambda: ui.by_id("verify-status").text == "Signature Status: Invalid", "Signature Status: Invalid")
    ui.close_dialog()

    # The public key as the console shows it; openssl verifies the console's signature.
    ui.menu(key_name, "Public key")
    pem = ui.value("public-key-pem", "the PEM")
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    download = ui.by_id("public-key-download")
    assert download.get_attribute("download") == f"{key_name}.pem"
    assert download.get_attribute("href").startswith("blob:")
    ui.close_dialog()
    assert openssl_verify(tmp_path, pem, algorithm, message, signature)
    assert not openssl_verify(tmp_path, pem, algorithm, message + b"!", signature)
    return pem


def test_rsa_4096_sign_data_and_verify(ui, tmp_path):
    ui.add_key("release-rsa", "sign-verify", "RSA_4096", "Release signing")
    sign_and_verify(ui, tmp_path, "release-rsa", "RSASSA_PSS_SHA_256")


def test_ecc_p256_sign_data_and_verify(ui, tmp_path):
    ui.add_key("release-ecc", "sign-verify", "ECC_NIST_P256")
    pem = sign_and_verify(ui, tmp_path, "release-ecc", "ECDSA_SHA_256")
    # The switch for data that is already a digest: sign SHA-256(message), which openssl
    # verifies over the message itself.
    message = b"a digest, signed"
    ui.menu("release-ecc", "Sign data")
    ui.fill("sign-data", b64(hashlib.sha256(message).digest()))
    ui.check("sign-is-digest", True)
    ui.choose("sign-algorithm", "ECDSA_SHA_256")
    ui.click("sign-submit")
    signature = ui.value("sign-output", "the signature")
    ui.close_dialog()
    assert openssl_verify(tmp_path, pem, "ECDSA_SHA_256", message, signature)


def test_key_table_search_sort_and_key_options(ui):
    ui.fill("key-search", "release")
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#key-rows tr[data-key-name]")) == 2, "two keys found")
    names = [r.get_attribute("data-key-name") for r in ui.d.find_elements(By.CSS_SELECTOR, "#key-rows tr[data-key-name]")]
    assert names == ["release-ecc", "release-rsa"]
    ui.click("key-sort")
    ui.wait(lambda: [r.get_attribute("data-key-name") for r in ui.d.find_elements(By.CSS_SELECTOR, "#key-rows tr[data-key-name]")]
            == ["release-rsa", "release-ecc"], "the keys sorted Z to A")
    ui.fill("key-search", "")
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#key-rows tr[data-key-name]")) == 3, "all three keys")
    ui.click("key-sort")
    ui.shot("03-key-management")
    # A narrow window: the page does not scroll sideways (the table scrolls in its frame).
    ui.d.set_window_size(420, 800)
    try:
        ui.wait(lambda: ui.d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"), "no sideways scrolling")
        assert ui.by_id("add-key").is_displayed()
        ui.shot("12-narrow-window")
    finally:
        ui.d.set_window_size(1280, 800)
    # Rotate, then the versions; disable and enable; schedule deletion and cancel it.
    ui.menu("orders", "Rotate")
    ui.click("rotate-dialog-submit")
    ui.wait(lambda: ui.row("orders").find_elements(By.TAG_NAME, "td")[3].text == "2", "version 2")
    ui.menu("orders", "Versions")
    assert "current" in ui.by_id("versions-dialog").text
    ui.close_dialog()
    ui.menu("orders", "Disable")
    ui.click("toggle-dialog-submit")
    ui.wait(lambda: ui.row("orders").find_elements(By.TAG_NAME, "td")[4].text == "Disabled", "Disabled")
    ui.menu("orders", "Enable")
    ui.click("toggle-dialog-submit")
    ui.wait(lambda: ui.row("orders").find_elements(By.TAG_NAME, "td")[4].text == "Enabled", "Enabled")
    ui.menu("release-ecc", "Schedule deletion")
    ui.fill("deletion-days", "7")
    ui.click("deletion-dialog-submit")
    ui.wait(lambda: ui.row("release-ecc").find_elements(By.TAG_NAME, "td")[4].text.startswith("PendingDeletion"),
            "PendingDeletion")
    ui.menu("release-ecc", "Cancel deletion")
    ui.click("cancel-deletion-dialog-submit")
    ui.wait(lambda: "PendingDeletion" not in ui.row("release-ecc").find_elements(By.TAG_NAME, "td")[4].text,
            "the deletion cancelled")
    # Edit: a name against the rule is refused with the API's message.
    ui.menu("orders", "Edit name and description")
    ui.fill("edit-name", "Bad Name")
    ui.click("edit-dialog-submit")
    assert "slug" in ui.text("edit-dialog-error", "the API's message")
    ui.close_dialog()


def test_rsa_oaep_key_encrypts_and_decrypts_with_either_hash(ui, gateway, tmp_path):
    ui.add_key("unseal-oaep", "encrypt-decrypt", "RSA_2048", "Unseal keys")
    cells = [c.text for c in ui.row("unseal-oaep").find_elements(By.TAG_NAME, "td")]
    assert cells[1:3] == ["encrypt-decrypt", "RSA_2048"], cells
    key = ui.key_id("unseal-oaep")
    text = "unseal share 3"
    for algorithm in ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]:
        ui.menu("unseal-oaep", "Encrypt data")
        ui.fill("encrypt-data", text)
        ui.check("encrypt-is-base64", False)
        ui.choose("encrypt-algorithm", algorithm)
        ui.click("encrypt-submit")
        ciphertext = ui.value("encrypt-output", "the ciphertext")
        ui.close_dialog()
        assert len(base64.b64decode(ciphertext)) == 256
        reply = gateway.ok("POST", f"/kms/keys/{key}/decrypt", {"ciphertext": ciphertext, "encryptionAlgorithm": algorithm})
        assert base64.b64decode(reply["plaintext"]) == text.encode()
        ui.menu("unseal-oaep", "Decrypt data")
        ui.fill("decrypt-data", ciphertext)
        ui.check("decrypt-decode", True)
        ui.choose("decrypt-algorithm", algorithm)
        ui.click("decrypt-submit")
        assert ui.value("decrypt-output", "the plaintext") == text
        ui.close_dialog()
    # The public key the console shows encrypts with openssl; the console decrypts it.
    ui.menu("unseal-oaep", "Public key")
    pem = ui.value("public-key-pem", "the PEM")
    ui.close_dialog()
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "msg.bin").write_text(text)
    subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
                    "-in", str(tmp_path / "msg.bin"), "-out", str(tmp_path / "ct.bin"),
                    "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                    "-pkeyopt", "rsa_mgf1_md:sha256"], check=True)
    ui.menu("unseal-oaep", "Decrypt data")
    ui.fill("decrypt-data", b64((tmp_path / "ct.bin").read_bytes()))
    ui.check("decrypt-decode", True)
    ui.click("decrypt-submit")
    assert ui.value("decrypt-output", "the plaintext") == text
    ui.close_dialog()


def test_injected_script_in_a_description_shows_as_text(ui, gateway):
    evil = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
    gateway.ok("POST", "/kms/keys", {"projectId": ui.state["project"], "name": "injected", "description": evil})
    ui.d.refresh()
    row = ui.row("injected")
    assert row.find_element(By.CLASS_NAME, "key-description").text == evil
    assert not row.find_elements(By.TAG_NAME, "script") and not row.find_elements(By.TAG_NAME, "img")
    assert ui.d.execute_script("return window.__pwned === undefined")


def test_server_admin_console_switches_the_strategy_to_hsm_and_back(ui, gateway):
    try:
        ui.go("#/admin")
        ui.title("Server Admin Console")
        ui.wait(lambda: "Software-based Encryption" in ui.by_id("strategy-current").text, "the current strategy")
        ui.wait(lambda: "healthy" in ui.by_id("hsm-status").text, "the HSM's status")
        hsm = ui.by_id("hsm-status").text
        assert "Token label" in hsm and "kmsgw-clients" in hsm and "Serial" in hsm
        assert "sqlite" in ui.by_id("store-status").text
        fragments = ui.wait(lambda: ui._visible(By.ID, "fragment-table"), "the fragment table").text
        assert "hsm_wrapped" in fragments and "cf-" in fragments and "loaded" in fragments
        assert [o.text for o in Select(ui.by_id("strategy-select")).options] == ["Software-based Encryption", "HSM"]
        ui.choose("strategy-select", "hsm")
        ui.click("strategy-save")
        ui.wait(lambda: ui.by_id("strategy-result").text.startswith("Switched to HSM"), "Switched to HSM")
        assert gateway.ok("GET", "/admin/encryption-strategy")["strategy"] == "hsm"
        ui.shot("09-server-admin-console")
        ui.choose("strategy-select", "software")
        ui.click("strategy-save")
        ui.wait(lambda: ui.by_id("strategy-result").text.startswith("Switched to Software-based Encryption"),
                "Switched to Software-based Encryption")
        assert gateway.ok("GET", "/admin/encryption-strategy")["strategy"] == "software"
    finally:
        # Other client tests share this gateway.
        gateway.ok("PATCH", "/admin/encryption-strategy", {"strategy": "software"})


def test_create_an_identity_and_revoke_it(ui, gateway):
    name = unique("console-app")
    ui.go("#/identities")
    ui.title("Identities")
    ui.fill("identity-name", name)
    ui.choose("identity-project", ui.state["project"])
    ui.check("identity-role-encrypt", True)
    ui.check("identity-role-decrypt", True)
    ui.choose("identity-auth", "token")
    ui.click("identity-create")
    token = ui.value("identity-token", "the token, shown once")
    assert ui.by_id("identity-token-copy").text == "Copy"
    if ui.shots:
        # The picture for the docs shows the place of the token, not the token itself.
        ui.d.execute_script("arguments[0].value = 'kmsgw_… (shown once; masked in this picture)';"
                            "arguments[1].scrollIntoView()", ui.by_id("identity-token"), ui.by_id("identity-secret"))
        ui.shot("10-identities")
    assert gateway.call("GET", "/status", token=token)[0] == 200
    ui.click_css(f'tr[data-identity-name="{name}"] .identity-revoke', "the identity's Revoke button")
    ui.wait(lambda: ui.d.find_element(By.CSS_SELECTOR, f'tr[data-identity-name="{name}"] .identity-state').text == "Revoked",
            "Revoked")
    assert gateway.call("GET", "/status", token=token)[0] == 401


def test_audit_log_pages_and_verify_chain(ui):
    ui.go("#/audit")
    ui.title("Audit log")
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#audit-rows tr")) > 0, "audit records")
    ui.click("audit-verify")
    verdict = ui.text("audit-verdict", "the verdict")
    assert verdict.startswith("Chain intact: audit log intact:"), verdict
    ui.shot("11-audit-log")


def test_sign_out_forgets_the_token(ui):
    ui.go("#/projects")
    ui.title("Projects")
    ui.click("sign-out")
    ui.title("Sign in")
    assert ui.d.execute_script("return sessionStorage.getItem('kmsgw.token')") is None
    ui.go("#/admin")
    ui.title("Sign in")


def test_sign_in_with_universal_auth_as_a_project_identity(ui, gateway):
    """A project identity signs in with its client ID and secret, opens its project by ID,
    sees the keys, and is refused the Server Admin Console with the API's message."""
    reply = gateway.ok("POST", "/identities", {
        "name": unique("console-ua"), "projectId": ui.state["project"], "permissions": ["read", "encrypt", "decrypt"],
        "authMethod": "universal-auth"})
    ui.go("#/signin")
    ui.title("Sign in")
    ui.fill("signin-client-id", reply["clientId"])
    ui.fill("signin-client-secret", "wrong-" + reply["clientSecret"])
    ui.click("signin-ua-submit")
    assert ui.text("signin-ua-error", "the login error")
    ui.fill("signin-client-secret", reply["clientSecret"])
    ui.click("signin-ua-submit")
    ui.title("Projects")
    # Its own project, and only that one.
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#project-list a")) == 1, "one project listed")
    assert ui.state["project"] in ui.by_id("project-list").text
    ui.fill("project-open-id", ui.state["project"])
    ui.click("project-open")
    ui.title("Key Management")
    ui.row("orders")
    ui.go("#/admin")
    ui.title("Server Admin Console")
    status, body = gateway.call("GET", "/admin/encryption-strategy", token=ui.d.execute_script(
        "return sessionStorage.getItem('kmsgw.token')"))
    assert status == 403
    assert ui.text("strategy-error", "the API's message") == body["message"]
    ui.click("sign-out")
    ui.title("Sign in")
