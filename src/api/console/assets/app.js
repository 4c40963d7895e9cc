// The KMS Gateway console: plain JavaScript, no dependencies. Every piece of data comes
// from the gateway's own API (/api/v1/...) with the signed-in bearer token, which lives in
// sessionStorage only. The DOM is built with createElement/textContent, never from HTML
// strings, so names and descriptions are always shown as text.
"use strict";

const TOKEN = "kmsgw.token";
const PROJECTS = "kmsgw.projects";
const KEY_NAME = /^[a-z0-9-]{1,32}$/;
const ALGORITHMS = {
  "encrypt-decrypt": [
    ["aes-256-gcm", "AES-256-GCM"], ["aes-128-gcm", "AES-128-GCM"],
    ["RSA_4096", "RSA 4096 (RSA-OAEP)"], ["RSA_3072", "RSA 3072 (RSA-OAEP)"], ["RSA_2048", "RSA 2048 (RSA-OAEP)"],
  ],
  "sign-verify": [
    ["RSA_4096", "RSA 4096"], ["RSA_3072", "RSA 3072"], ["RSA_2048", "RSA 2048"],
    ["ECC_NIST_P256", "ECC NIST P-256"], ["ECC_NIST_P384", "ECC NIST P-384"],
    ["ECC_NIST_P521", "ECC NIST P-521"], ["ED25519", "Ed25519"],
    ["ML_DSA_44", "ML-DSA-44"], ["ML_DSA_65", "ML-DSA-65"], ["ML_DSA_87", "ML-DSA-87"],
  ],
};
// The encryption algorithms of an RSA encrypt-decrypt key (the first is the default).
const OAEP = [["RSAES_OAEP_SHA_256", "RSA-OAEP SHA-256"], ["RSAES_OAEP_SHA_1", "RSA-OAEP SHA-1"]];
const isRsa = (k) => k.encryptionAlgorithm.startsWith("RSA_");
const PERMISSIONS = ["admin", "keys:manage", "encrypt", "decrypt", "sign", "verify", "read"];

// --- small helpers ---------------------------------------------------------------------

/** An element: `attrs` are attributes (`text` sets textContent), `children` nodes or strings. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

let ids = 0;
function uid(prefix) { ids += 1; return `${prefix}-${ids}`; }

/** A labelled control: `{wrap, input}`; the label names the control. */
function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const wrap = el("div", { class: "field" }, el("label", { for: control.id, text: label }), control);
  if (hint) wrap.append(el("p", { class: "hint", text: hint }));
  return { wrap, input: control };
}

function checkbox(label, id) {
  const input = el("input", { type: "checkbox", id: id || uid("c") });
  return { wrap: el("label", { class: "check", for: input.id }, input, label), input };
}

function select(options, id) {
  const s = el("select", { id: id || uid("s") });
  for (const [value, text] of options) s.append(el("option", { value, text }));
  return s;
}

/** A place for an action's error (the API's message), shown next to it. */
function errorBox(id) { return el("p", { class: "error", role: "alert", id: id || uid("err"), hidden: true }); }
function showError(box, e) { box.textContent = e && e.message ? e.message : String(e); box.hidden = false; }
function clearError(box) { box.textContent = ""; box.hidden = true; }

function copyButton(source, id) {
  return el("button", { type: "button", id, text: "Copy", on: { click: async (ev) => {
    try { await navigator.clipboard.writeText(source.value ?? source.textContent); ev.target.textContent = "Copied"; }
    catch (_) { source.select && source.select(); ev.target.textContent = "Select and copy (Ctrl+C)"; }
  } } });
}

function b64FromText(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
function textFromB64(b64) {
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
function checkB64(s) {
  const t = s.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) throw new Error("the data is not valid Base64 (standard alphabet, padded)");
  return t;
}
function pemOf(derB64) {
  const lines = derB64.match(/.{1,64}/g) || [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join("\n")}\n-----END PUBLIC KEY-----\n`;
}
function when(t) { return t ? String(t).replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : ""; }

// --- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body, token) {
  const headers = { Accept: "application/json" };
  const bearer = token === undefined ? sessionStorage.getItem(TOKEN) : token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  let resp;
  try { resp = await fetch(`/api/v1${path}`, init); }
  catch (e) { throw new ApiError(0, `the gateway did not answer (${e.message})`); }
  let data = null;
  try { data = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const message = (data && (data.message || data.detail)) || `${resp.status} ${resp.statusText}`;
    if (resp.status === 401 && token === undefined) {
      // The stored token no longer works (expired, revoked): sign in again.
      sessionStorage.removeItem(TOKEN);
      setTimeout(() => { location.hash = "#/signin"; }, 0);
    }
    throw new ApiError(resp.status, message, data && data.code);
  }
  return data;
}

/** Runs `fn`, showing its error in `box`; disables `button` meanwhile. */
async function action(box, button, fn) {
  clearError(box);
  if (button) button.disabled = true;
  try { return await fn(); }
  catch (e) { showError(box, e); return undefined; }
  finally { if (button) button.disabled = false; }
}

// --- projects the console knows of (this browser tab only) ------------------------------

function knownProjects() {
  try { return JSON.parse(sessionStorage.getItem(PROJECTS) || "[]"); } catch (_) { return []; }
}
function rememberProject(p) {
  const list = knownProjects().filter((q) => q.id !== p.id);
  list.unshift({ id: p.id, name: p.name });
  sessionStorage.setItem(PROJECTS, JSON.stringify(list.slice(0, 50)));
}

// --- layout and routing -----------------------------------------------------------------

const app = () => document.getElementById("app");

function page(title, ...children) {
  const main = app();
  main.replaceChildren(el("h1", { id: "page-title", text: title }), ...children);
  document.title = `${title} · KMS Gateway`;
  main.focus();
}

function markNav(name) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.id === `nav-${name}`) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

async function route() {
  const hash = location.hash || "#/projects";
  const signedIn = !!sessionStorage.getItem(TOKEN);
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn || hash === "#/signin") { markNav(""); return signInPage(); }
  const parts = hash.slice(2).split("/");
  if (parts[0] === "projects" && parts[1] && parts[2] === "keys") { markNav("projects"); return keysPage(decodeURIComponent(parts[1])); }
  if (parts[0] === "admin") { markNav("admin"); return adminPage(); }
  if (parts[0] === "identities") { markNav("identities"); return identitiesPage(); }
  if (parts[0] === "audit") { markNav("audit"); return auditPage(); }
  markNav("projects");
  return projectsPage();
}

// --- sign in ----------------------------------------------------------------------------

function signInPage() {
  const token = field("Token", el("input", { type: "password", id: "signin-token", autocomplete: "off" }));
  const tokenErr = errorBox("signin-token-error");
  const tokenBtn = el("button", { type: "submit", class: "primary", id: "signin-token-submit", text: "Sign in" });
  const tokenForm = el("form", { class: "card", id: "signin-token-form" }, el("h2", { text: "With a token" }),
    token.wrap, tokenErr, el("div", { class: "row" }, tokenBtn));
  tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(tokenErr, tokenBtn, async () => {
      const t = token.input.value.trim();
      if (!t) throw new Error("enter a token");
      await api("GET", "/status", undefined, t);
      signedIn(t);
    });
  });

  const clientId = field("Client ID", el("input", { type: "text", id: "signin-client-id", autocomplete: "off" }));
  const clientSecret = field("Client Secret", el("input", { type: "password", id: "signin-client-secret", autocomplete: "off" }));
  const uaErr = errorBox("signin-ua-error");
  const uaBtn = el("button", { type: "submit", class: "primary", id: "signin-ua-submit", text: "Sign in" });
  const uaForm = el("form", { class: "card", id: "signin-ua-form" }, el("h2", { text: "With universal auth" }),
    clientId.wrap, clientSecret.wrap, uaErr, el("div", { class: "row" }, uaBtn));
  uaForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(uaErr, uaBtn, async () => {
      const r = await api("POST", "/auth/universal-auth/login",
        { clientId: clientId.input.value.trim(), clientSecret: clientSecret.input.value }, "");
      signedIn(r.accessToken);
    });
  });
  page("Sign in", el("p", { class: "hint", text: "The token stays in this browser tab (sessionStorage) and is sent as a bearer header; Sign out forgets it." }),
    el("div", { class: "cards" }, tokenForm, uaForm));
}

function signedIn(token) {
  sessionStorage.setItem(TOKEN, token);
  location.hash = "#/projects";
  route();
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(PROJECTS);
  location.hash = "#/signin";
}

// --- projects ---------------------------------------------------------------------------

function projectsPage() {
  const list = el("ul", { id: "project-list" });
  const listErr = errorBox("project-list-error");
  const fill = (projects) => {
    list.replaceChildren();
    if (!projects.length) list.append(el("li", { class: "hint", text: "No project yet: create one." }));
    for (const p of projects) {
      rememberProject(p);
      list.append(el("li", {}, el("a", { href: `#/projects/${encodeURIComponent(p.id)}/keys`, text: p.name || p.id }),
        " ", el("span", { class: "mono", text: p.id })));
    }
  };
  action(listErr, null, async () => fill((await api("GET", "/projects")).projects));

  const name = field("Project name", el("input", { type: "text", id: "project-name", autocomplete: "off" }));
  const createErr = errorBox("project-create-error");
  const createBtn = el("button", { type: "submit", class: "primary", id: "project-create", text: "Create project" });
  const createForm = el("form", { class: "card" }, el("h2", { text: "Create a project" }), name.wrap, createErr, el("div", { class: "row" }, createBtn));
  createForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(createErr, createBtn, async () => {
      const r = await api("POST", "/projects", { name: name.input.value.trim() });
      rememberProject(r.project);
      location.hash = `#/projects/${encodeURIComponent(r.project.id)}/keys`;
    });
  });

  const pid = field("Project ID", el("input", { type: "text", id: "project-open-id", autocomplete: "off" }));
  const openErr = errorBox("project-open-error");
  const openBtn = el("button", { type: "submit", id: "project-open", text: "Open" });
  const openForm = el("form", { class: "card" }, el("h2", { text: "Open a project" }), pid.wrap, openErr, el("div", { class: "row" }, openBtn));
  openForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(openErr, openBtn, async () => {
      const id = pid.input.value.trim();
      await api("GET", `/kms/keys?projectId=${encodeURIComponent(id)}&limit=1`);
      rememberProject({ id, name: "" });
      location.hash = `#/projects/${encodeURIComponent(id)}/keys`;
    });
  });
  page("Projects", el("h2", { text: "Your projects" }), listErr, list, el("div", { class: "cards" }, createForm, openForm));
}

// --- Project › Key Management ------------------------------------------------------------

const keyView = { project: "", search: "", direction: "asc", offset: 0, limit: 20 };

async function keysPage(projectId) {
  if (keyView.project !== projectId) Object.assign(keyView, { project: projectId, search: "", offset: 0 });
  const known = knownProjects().find((p) => p.id === projectId);
  if (!known) rememberProject({ id: projectId, name: "" });
  const tableErr = errorBox("keys-error");
  const search = field("Search by name", el("input", { type: "search", id: "key-search", value: keyView.search, autocomplete: "off" }));
  const sortBtn = el("button", { type: "button", id: "key-sort", text: `Sort by name (${keyView.direction === "asc" ? "A→Z" : "Z→A"})` });
  const addBtn = el("button", { type: "button", class: "primary", id: "add-key", text: "Add Key" });
  const size = field("Per page", select([["10", "10"], ["20", "20"], ["50", "50"], ["100", "100"]], "key-page-size"));
  size.input.value = String(keyView.limit);
  const tbody = el("tbody", { id: "key-rows" });
  const table = el("div", { class: "table-wrap" }, el("table", { id: "key-table" },
    el("caption", { class: "hint", text: "Keys of this project" }),
    el("thead", {}, el("tr", {}, ...["Name", "Usage", "Algorithm", "Version", "State", "Protection", "Customer fragment", "Created", "Options"]
      .map((h) => el("th", { scope: "col", text: h })))), tbody));
  const info = el("span", { id: "key-paging", "aria-live": "polite" });
  const prev = el("button", { type: "button", id: "key-prev", text: "Previous" });
  const next = el("button", { type: "button", id: "key-next", text: "Next" });

  const load = async () => {
    clearError(tableErr);
    const q = new URLSearchParams({ projectId, offset: String(keyView.offset), limit: String(keyView.limit), orderBy: "name", orderDirection: keyView.direction });
    if (keyView.search) q.set("search", keyView.search);
    try {
      const r = await api("GET", `/kms/keys?${q}`);
      tbody.replaceChildren(...r.keys.map((k) => keyRow(k, load)));
      if (!r.keys.length) tbody.append(el("tr", {}, el("td", { colspan: "9", class: "hint", text: "No keys." })));
      const from = r.totalCount ? keyView.offset + 1 : 0;
      info.textContent = `${from}–${keyView.offset + r.keys.length} of ${r.totalCount}`;
      prev.disabled = keyView.offset === 0;
      next.disabled = keyView.offset + r.keys.length >= r.totalCount;
    } catch (e) { showError(tableErr, e); }
  };
  let timer = null;
  search.input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { keyView.search = search.input.value.trim(); keyView.offset = 0; load(); }, 250);
  });
  sortBtn.addEventListener("click", () => {
    keyView.direction = keyView.direction === "asc" ? "desc" : "asc";
    sortBtn.textContent = `Sort by name (${keyView.direction === "asc" ? "A→Z" : "Z→A"})`;
    load();
  });
  size.input.addEventListener("change", () => { keyView.limit = Number(size.input.value); keyView.offset = 0; load(); });
  prev.addEventListener("click", () => { keyView.offset = Math.max(0, keyView.offset - keyView.limit); load(); });
  next.addEventListener("click", () => { keyView.offset += keyView.limit; load(); });
  addBtn.addEventListener("click", () => addKeyDialog(projectId, load));

  page("Key Management",
    el("p", { class: "crumbs" }, el("a", { href: "#/projects", text: "Projects" }), " › ",
      el("span", { text: (known && known.name) || projectId }), " › Key Management"),
    el("p", { class: "hint" }, "Project ID ", el("span", { class: "mono", id: "project-id", text: projectId })),
    el("div", { class: "row" }, search.wrap, sortBtn, size.wrap, addBtn), tableErr, table,
    el("div", { class: "pager" }, prev, info, next));
  await load();
}

function keyRow(k, reload) {
  const stateClass = k.keyState === "Enabled" ? "pill good" : "pill bad";
  return el("tr", { "data-key-name": k.name },
    el("td", {}, el("strong", { class: "key-name", text: k.name }), k.description ? el("div", { class: "hint key-description", text: k.description }) : null),
    el("td", { text: k.keyUsage }),
    el("td", { text: k.encryptionAlgorithm }),
    el("td", { text: String(k.version) }),
    el("td", {}, el("span", { class: stateClass, text: k.keyState }), k.deletionDate ? el("div", { class: "hint", text: `deletion ${when(k.deletionDate)}` }) : null),
    el("td", { text: k.protection === "hsm" ? "HSM" : "Software" }),
    el("td", { class: "mono", text: k.customerFragmentId || "—" }),
    el("td", { text: when(k.createdAt) }),
    el("td", {}, optionsMenu(k, reload)));
}

function optionsMenu(k, reload) {
  const menuId = uid("menu");
  const button = el("button", { type: "button", class: "options", "aria-haspopup": "true", "aria-expanded": "false", "aria-controls": menuId, "aria-label": `Options of ${k.name}`, text: "Options ▾" });
  const menu = el("ul", { class: "menu", id: menuId, role: "menu", hidden: true });
  const close = () => { menu.hidden = true; button.setAttribute("aria-expanded", "false"); };
  const item = (label, fn) => el("li", { role: "none" }, el("button", { type: "button", role: "menuitem", text: label, on: { click: () => { close(); fn(); } } }));
  if (k.keyUsage === "encrypt-decrypt") {
    menu.append(item("Encrypt data", () => encryptDialog(k)), item("Decrypt data", () => decryptDialog(k)));
    if (isRsa(k)) menu.append(item("Public key", () => publicKeyDialog(k)));
  }
  if (k.keyUsage === "sign-verify") {
    menu.append(item("Sign data", () => signDialog(k)), item("Verify", () => verifyDialog(k)), item("Public key", () => publicKeyDialog(k)));
  }
  menu.append(
    item("Rotate", () => rotateDialog(k, reload)),
    item("Edit name and description", () => editDialog(k, reload)),
    item(k.isDisabled ? "Enable" : "Disable", () => toggleDialog(k, reload)),
    k.deletionDate ? item("Cancel deletion", () => cancelDeletionDialog(k, reload)) : item("Schedule deletion", () => deletionDialog(k, reload)),
    item("Versions", () => versionsDialog(k)));
  button.addEventListener("click", () => {
    const open = menu.hidden;
    for (const m of document.querySelectorAll(".menu")) m.hidden = true;
    menu.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) menu.querySelector("button").focus();
  });
  menu.addEventListener("keydown", (ev) => {
    const items = [...menu.querySelectorAll("button")];
    const i = items.indexOf(document.activeElement);
    if (ev.key === "Escape") { close(); button.focus(); ev.preventDefault(); }
    else if (ev.key === "ArrowDown") { items[(i + 1) % items.length].focus(); ev.preventDefault(); }
    else if (ev.key === "ArrowUp") { items[(i - 1 + items.length) % items.length].focus(); ev.preventDefault(); }
  });
  return el("div", { class: "menu-wrap" }, button, menu);
}

/** A modal dialog with a title; returns `{dialog, body, close}`. Escape closes it. */
function dialog(title, id) {
  const body = el("div", { class: "dialog-body" });
  const closeBtn = el("button", { type: "button", class: "dialog-close", text: "Close" });
  const d = el("dialog", { id, "aria-labelledby": `${id}-title` }, el("h2", { id: `${id}-title`, text: title }), body,
    el("div", { class: "row" }, closeBtn));
  const close = () => { d.close(); d.remove(); };
  closeBtn.addEventListener("click", close);
  d.addEventListener("close", () => d.remove());
  document.body.append(d);
  d.showModal();
  return { dialog: d, body, close };
}

function addKeyDialog(projectId, reload) {
  const { body, close } = dialog("Add Key", "add-key-dialog");
  const name = field("Name", el("input", { type: "text", id: "key-name", autocomplete: "off", maxlength: "32" }), "1 to 32 lower-case letters, digits and hyphens");
  const nameErr = errorBox("key-name-error");
  const usage = field("Key Usage", select([["encrypt-decrypt", "Encrypt/Decrypt"], ["sign-verify", "Sign/Verify"]], "key-usage"));
  const alg = field("Algorithm", select(ALGORITHMS["encrypt-decrypt"], "key-algorithm"));
  usage.input.addEventListener("change", () => {
    alg.input.replaceChildren(...ALGORITHMS[usage.input.value].map(([v, t]) => el("option", { value: v, text: t })));
  });
  const description = field("Description", el("textarea", { id: "key-description" }));
  const protection = field("Protection", select([["software", "Software (wrapped by the gateway)"], ["hsm", "HSM (the key lives in the HSM)"]], "key-protection"));
  const fragment = field("Customer fragment", select([["", "The gateway's default"]], "key-fragment"));
  api("GET", "/admin/system").then((s) => {
    for (const f of s.fragments) if (f.loaded) fragment.input.append(el("option", { value: f.id, text: `${f.name} (${f.id}, ${f.mode})` }));
  }).catch(() => { /* not an administrator: only the default */ });
  const rotation = field("Rotation period (days)", el("input", { type: "number", id: "key-rotation", min: "1", max: "3650" }), "Empty: no automatic rotation");
  const err = errorBox("add-key-error");
  const create = el("button", { type: "submit", class: "primary", id: "add-key-submit", text: "Create" });
  const check = () => {
    const v = name.input.value;
    const bad = v && !KEY_NAME.test(v);
    if (bad) showError(nameErr, "use 1 to 32 lower-case letters, digits and hyphens"); else clearError(nameErr);
    name.input.setAttribute("aria-invalid", bad ? "true" : "false");
    create.disabled = !KEY_NAME.test(v);
  };
  name.input.setAttribute("aria-describedby", nameErr.id);
  name.input.addEventListener("input", check);
  check();
  const form = el("form", {}, name.wrap, nameErr, usage.wrap, alg.wrap, description.wrap, protection.wrap, fragment.wrap, rotation.wrap, err,
    el("div", { class: "row" }, create));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(err, create, async () => {
      const req = { projectId, name: name.input.value, keyUsage: usage.input.value, encryptionAlgorithm: alg.input.value,
        description: description.input.value, protection: protection.input.value };
      if (fragment.input.value) req.customerFragmentId = fragment.input.value;
      if (rotation.input.value) req.rotationPeriodDays = Number(rotation.input.value);
      await api("POST", "/kms/keys", req);
      close();
      reload();
    });
  });
  body.append(form);
  name.input.focus();
}

function encryptDialog(k) {
  const { body } = dialog(`Encrypt data with ${k.name}`, "encrypt-dialog");
  const data = field("Data", el("textarea", { id: "encrypt-data" }));
  const isB64 = checkbox("Data is Base64 encoded", "encrypt-is-base64");
  const algorithm = isRsa(k) ? field("Encryption algorithm", select(OAEP, "encrypt-algorithm")) : null;
  const err = errorBox("encrypt-error");
  const go = el("button", { type: "submit", class: "primary", id: "encrypt-submit", text: "Encrypt" });
  const out = el("textarea", { id: "encrypt-output", readonly: true });
  const result = el("div", { hidden: true, id: "encrypt-result" }, field("Ciphertext", out).wrap, copyButton(out, "encrypt-copy"));
  const form = el("form", {}, data.wrap, isB64.wrap, algorithm && algorithm.wrap, err, el("div", { class: "row" }, go), result);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(err, go, async () => {
      const plaintext = isB64.input.checked ? checkB64(data.input.value) : b64FromText(data.input.value);
      const req = { plaintext };
      if (algorithm) req.encryptionAlgorithm = algorithm.input.value;
      const r = await api("POST", `/kms/keys/${k.id}/encrypt`, req);
      out.value = r.ciphertext;
      result.hidden = false;
    });
  });
  body.append(form);
  data.input.focus();
}

function decryptDialog(k) {
  const { body } = dialog(`Decrypt data with ${k.name}`, "decrypt-dialog");
  const data = field("Ciphertext", el("textarea", { id: "decrypt-data" }));
  const decode = checkbox("Decode Base64", "decrypt-decode");
  const algorithm = isRsa(k) ? field("Encryption algorithm", select(OAEP, "decrypt-algorithm")) : null;
  const err = errorBox("decrypt-error");
  const go = el("button", { type: "submit", class: "primary", id: "decrypt-submit", text: "Decrypt" });
  const out = el("textarea", { id: "decrypt-output", readonly: true });
  const result = el("div", { hidden: true, id: "decrypt-result" }, field("Plaintext", out, "Base64 unless Decode Base64 is on").wrap, copyButton(out, "decrypt-copy"));
  const form = el("form", {}, data.wrap, decode.wrap, algorithm && algorithm.wrap, err, el("div", { class: "row" }, go), result);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(err, go, async () => {
      const req = { ciphertext: data.input.value.trim() };
      if (algorithm) req.encryptionAlgorithm = algorithm.input.value;
      const r = await api("POST", `/kms/keys/${k.id}/decrypt`, req);
      out.value = decode.input.checked ? textFromB64(r.plaintext) : r.plaintext;
      result.hidden = false;
    });
  });
  body.append(form);
  data.input.focus();
}

/** The signing data controls shared by Sign and Verify. */
function signingFields(k, prefix) {
  const data = field("Data", el("textarea", { id: `${prefix}-data` }));
  const isB64 = checkbox("Data is Base64 encoded", `${prefix}-is-base64`);
  const isDigest = checkbox("Data is a digest (already hashed)", `${prefix}-is-digest`);
  const alg = field("Signing Algorithm", select([], `${prefix}-algorithm`));
  const algErr = errorBox(`${prefix}-algorithm-error`);
  api("GET", `/kms/keys/${k.id}/signing-algorithms`).then((r) => {
    alg.input.replaceChildren(...r.signingAlgorithms.map((a) => el("option", { value: a, text: a })));
  }).catch((e) => showError(algErr, e));
  const body = () => {
    let b64data;
    if (isB64.input.checked || isDigest.input.checked) b64data = checkB64(data.input.value);
    else b64data = b64FromText(data.input.value);
    return { data: b64data, signingAlgorithm: alg.input.value, isDigest: isDigest.input.checked };
  };
  return { nodes: [data.wrap, isB64.wrap, alg.wrap, algErr, isDigest.wrap], data, body };
}

function signDialog(k) {
  const { body } = dialog(`Sign data with ${k.name}`, "sign-dialog");
  const f = signingFields(k, "sign");
  const err = errorBox("sign-error");
  const go = el("button", { type: "submit", class: "primary", id: "sign-submit", text: "Sign" });
  const out = el("textarea", { id: "sign-output", readonly: true });
  const result = el("div", { hidden: true, id: "sign-result" }, field("Signature", out, "Base64").wrap, copyButton(out, "sign-copy"));
  const form = el("form", {}, ...f.nodes, err, el("div", { class: "row" }, go), result);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(err, go, async () => {
      const r = await api("POST", `/kms/keys/${k.id}/sign`, f.body());
      out.value = r.signature;
      result.hidden = false;
    });
  });
  body.append(form);
  f.data.input.focus();
}

function verifyDialog(k) {
  const { body } = dialog(`Verify with ${k.name}`, "verify-dialog");
  const f = signingFields(k, "verify");
  const sig = field("Signature", el("textarea", { id: "verify-signature" }), "Base64");
  const err = errorBox("verify-error");
  const go = el("button", { type: "submit", class: "primary", id: "verify-submit", text: "Verify" });
  const status = el("p", { id: "verify-status", "aria-live": "polite" });
  const form = el("form", {}, ...f.nodes, sig.wrap, err, el("div", { class: "row" }, go), status);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    status.replaceChildren();
    action(err, go, async () => {
      const r = await api("POST", `/kms/keys/${k.id}/verify`, { ...f.body(), signature: sig.input.value.trim() });
      status.replaceChildren("Signature Status: ", el("span", { class: r.signatureValid ? "status-valid" : "status-invalid", text: r.signatureValid ? "Valid" : "Invalid" }));
    });
  });
  body.append(form);
  f.data.input.focus();
}

function publicKeyDialog(k) {
  const { body } = dialog(`Public key of ${k.name}`, "public-key-dialog");
  const err = errorBox("public-key-error");
  const out = el("textarea", { id: "public-key-pem", readonly: true, rows: "8" });
  const download = el("a", { id: "public-key-download", download: `${k.name}.pem`, text: "Download PEM", hidden: true });
  body.append(field("Public key (PEM)", out).wrap, err, el("div", { class: "row" }, copyButton(out, "public-key-copy"), download));
  action(err, null, async () => {
    const r = await api("GET", `/kms/keys/${k.id}/public-key`);
    out.value = pemOf(r.publicKey);
    download.href = URL.createObjectURL(new Blob([out.value], { type: "application/x-pem-file" }));
    download.hidden = false;
  });
}

/** A dialog with one confirming action. */
function confirmDialog(title, id, text, label, extra, run) {
  const { body, close } = dialog(title, id);
  const err = errorBox(`${id}-error`);
  const go = el("button", { type: "submit", class: "primary", id: `${id}-submit`, text: label });
  const form = el("form", {}, el("p", { text }), ...extra, err, el("div", { class: "row" }, go));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); action(err, go, async () => { await run(); close(); }); });
  body.append(form);
  go.focus();
}

function rotateDialog(k, reload) {
  confirmDialog(`Rotate ${k.name}`, "rotate-dialog", `A new version (${k.version + 1}) encrypts and signs from now on; older versions still decrypt and verify.`,
    "Rotate key", [], async () => { await api("POST", `/kms/keys/${k.id}/rotate`, {}); reload(); });
}

function editDialog(k, reload) {
  const name = field("Name", el("input", { type: "text", id: "edit-name", value: k.name, maxlength: "32" }));
  const description = field("Description", el("textarea", { id: "edit-description" }));
  description.input.value = k.description || "";
  confirmDialog(`Edit ${k.name}`, "edit-dialog", "Name and description of the key.", "Save", [name.wrap, description.wrap], async () => {
    await api("PATCH", `/kms/keys/${k.id}`, { name: name.input.value, description: description.input.value });
    reload();
  });
}

function toggleDialog(k, reload) {
  const enable = k.isDisabled;
  confirmDialog(`${enable ? "Enable" : "Disable"} ${k.name}`, "toggle-dialog",
    enable ? "The key can be used again." : "The key refuses every operation until it is enabled again.",
    enable ? "Enable key" : "Disable key", [], async () => { await api("PATCH", `/kms/keys/${k.id}`, { isDisabled: !enable }); reload(); });
}

function deletionDialog(k, reload) {
  const days = field("Pending window (days)", el("input", { type: "number", id: "deletion-days", min: "7", max: "30", value: "30" }), "7 to 30 days; until then the deletion can be cancelled");
  confirmDialog(`Schedule deletion of ${k.name}`, "deletion-dialog", "The key is unusable at once and destroyed when the window ends.",
    "Schedule deletion", [days.wrap], async () => {
      await api("DELETE", `/kms/keys/${k.id}?pendingWindowDays=${encodeURIComponent(days.input.value)}`);
      reload();
    });
}

function cancelDeletionDialog(k, reload) {
  confirmDialog(`Cancel deletion of ${k.name}`, "cancel-deletion-dialog", `Scheduled for ${when(k.deletionDate)}. Cancelling leaves the key disabled.`,
    "Cancel deletion", [], async () => { await api("POST", `/kms/keys/${k.id}/cancel-deletion`, {}); reload(); });
}

function versionsDialog(k) {
  const { body } = dialog(`Versions of ${k.name}`, "versions-dialog");
  const rows = [];
  for (let v = k.version; v >= 1; v -= 1) {
    const use = v === k.version ? "current: encrypts and signs" : (v >= (k.minDecryptionVersion || 1) ? "decrypts and verifies" : "below the minimum decryption version");
    rows.push(el("tr", {}, el("td", { text: String(v) }), el("td", { text: use })));
  }
  body.append(el("dl", { class: "facts" },
    el("dt", { text: "Key ID" }), el("dd", { class: "mono", text: k.id }),
    el("dt", { text: "Current version" }), el("dd", { text: String(k.version) }),
    el("dt", { text: "Minimum decryption version" }), el("dd", { text: String(k.minDecryptionVersion || 1) }),
    el("dt", { text: "Rotation period" }), el("dd", { text: k.rotationPeriodDays ? `${k.rotationPeriodDays} days` : "none" }),
    el("dt", { text: "HSM label" }), el("dd", { class: "mono", text: k.hsmKeyLabel || "—" }),
    el("dt", { text: "Updated" }), el("dd", { text: when(k.updatedAt) })),
  el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Version" }), el("th", { scope: "col", text: "Use" }))), el("tbody", {}, rows))));
}

// --- Server Admin Console -------------------------------------------------------------

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}
function health(ok) { return el("span", { class: ok ? "pill good" : "pill bad", text: ok ? "healthy" : "failing" }); }

async function adminPage() {
  const stratErr = errorBox("strategy-error");
  const current = el("p", { id: "strategy-current" });
  const choice = field("KMS encryption strategy", select([["software", "Software-based Encryption"], ["hsm", "HSM"]], "strategy-select"));
  const save = el("button", { type: "submit", class: "primary", id: "strategy-save", text: "Save" });
  const result = el("p", { class: "ok", id: "strategy-result", role: "status" });
  const show = (s) => {
    current.replaceChildren("Current: ", el("strong", { text: s.strategy === "hsm" ? "HSM" : "Software-based Encryption" }), ` (${s.wrapping})`);
    choice.input.value = s.strategy;
  };
  const form = el("form", { class: "card" }, el("h2", { text: "Encryption strategy" }),
    el("p", { class: "hint", text: "How the instance root key is wrapped. Switching re-wraps the root key only; keys stay as they are." }),
    current, choice.wrap, stratErr, el("div", { class: "row" }, save), result);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    result.textContent = "";
    action(stratErr, save, async () => {
      const s = await api("PATCH", "/admin/encryption-strategy", { strategy: choice.input.value });
      show(s);
      const name = s.strategy === "hsm" ? "HSM" : "Software-based Encryption";
      result.textContent = s.changed ? `Switched to ${name}: the root key is now wrapped by ${s.wrapping}.` : `Unchanged: the strategy already was ${name}.`;
    });
  });
  const sysErr = errorBox("system-error");
  const hsmCard = el("section", { class: "card", id: "hsm-status", "aria-label": "HSM" }, el("h2", { text: "HSM" }));
  const storeCard = el("section", { class: "card", id: "store-status", "aria-label": "Store" }, el("h2", { text: "Store" }));
  const fragCard = el("section", { class: "card", id: "fragments-status", "aria-label": "Customer fragments" }, el("h2", { text: "Customer fragments" }));
  page("Server Admin Console", el("div", { class: "cards" }, form, hsmCard, storeCard), fragCard, sysErr);
  action(stratErr, null, async () => show(await api("GET", "/admin/encryption-strategy")));
  action(sysErr, null, async () => {
    const s = await api("GET", "/admin/system");
    if (s.hsm) {
      hsmCard.append(facts([["Token label", s.hsm.tokenLabel], ["Model", s.hsm.model], ["Manufacturer", s.hsm.manufacturer], ["Serial", s.hsm.serial], ["Slot", String(s.hsm.slot)]]),
        el("p", {}, "Health: ", health(s.hsm.healthy)));
    } else hsmCard.append(el("p", { text: "No HSM configured." }));
    storeCard.append(facts([["Kind", s.store.kind]]), el("p", {}, "Health: ", health(s.store.healthy)));
    if (!s.fragments.length) fragCard.append(el("p", { text: "No customer fragment configured." }));
    else fragCard.append(el("div", { class: "table-wrap" }, el("table", { id: "fragment-table" },
      el("thead", {}, el("tr", {}, ...["ID", "Mode", "State"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, s.fragments.map((f) => el("tr", {}, el("td", { class: "mono", text: f.id }),
        el("td", { text: f.mode || "unknown" }),
        el("td", {}, el("span", { class: f.loaded ? "pill good" : "pill bad", text: f.loaded ? "loaded" : (f.problem || "not loaded") }))))))));
  });
}

// --- Identities ------------------------------------------------------------------------

async function identitiesPage() {
  const listErr = errorBox("identities-error");
  const tbody = el("tbody", { id: "identity-rows" });
  const secretBox = el("div", { id: "identity-secret" });
  const load = async () => {
    clearError(listErr);
    try {
      const r = await api("GET", "/identities");
      tbody.replaceChildren(...r.identities.map((i) => identityRow(i, load, secretBox)));
    } catch (e) { showError(listErr, e); }
  };
  const name = field("Name", el("input", { type: "text", id: "identity-name", autocomplete: "off" }));
  const projects = [["", "None (every project; administrators only)"], ...knownProjects().map((p) => [p.id, `${p.name || "project"} (${p.id})`])];
  const project = field("Project", select(projects, "identity-project"));
  const roles = el("fieldset", { class: "roles" }, el("legend", { text: "Roles" }), PERMISSIONS.map((p) => checkbox(p, `identity-role-${p.replace(":", "-")}`).wrap));
  const method = field("Authentication", select([["token", "Token"], ["universal-auth", "Universal auth (client ID and secret)"]], "identity-auth"));
  const err = errorBox("identity-create-error");
  const create = el("button", { type: "submit", class: "primary", id: "identity-create", text: "Create identity" });
  const form = el("form", { class: "card" }, el("h2", { text: "Create an identity" }), name.wrap, project.wrap, roles, method.wrap, err, el("div", { class: "row" }, create));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    action(err, create, async () => {
      const permissions = PERMISSIONS.filter((p) => document.getElementById(`identity-role-${p.replace(":", "-")}`).checked);
      const req = { name: name.input.value.trim(), permissions, authMethod: method.input.value };
      if (project.input.value) req.projectId = project.input.value;
      const r = await api("POST", "/identities", req);
      showSecret(secretBox, r);
      await load();
    });
  });
  page("Identities", form, secretBox, el("h2", { text: "Identities" }), listErr,
    el("div", { class: "table-wrap" }, el("table", { id: "identity-table" }, el("thead", {}, el("tr", {},
      ...["Name", "Project", "Roles", "Authentication", "Created", "State", "Actions"].map((h) => el("th", { scope: "col", text: h })))), tbody)));
  await load();
}

/** The token or client secret of a new or rotated identity, shown this once. */
function showSecret(box, r) {
  const parts = [el("h2", { text: `Credentials of ${r.identity.name}` }), el("p", { text: "Shown once: copy them now; the gateway keeps only a hash." })];
  if (r.token) {
    const t = el("input", { type: "text", id: "identity-token", readonly: true, value: r.token, class: "mono" });
    parts.push(field("Token", t).wrap, copyButton(t, "identity-token-copy"));
  }
  if (r.clientSecret) {
    const id = el("input", { type: "text", id: "identity-client-id", readonly: true, value: r.clientId, class: "mono" });
    const s = el("input", { type: "text", id: "identity-client-secret", readonly: true, value: r.clientSecret, class: "mono" });
    parts.push(field("Client ID", id).wrap, field("Client Secret", s).wrap, copyButton(s, "identity-secret-copy"));
  }
  const dismiss = el("button", { type: "button", text: "Done", on: { click: () => box.replaceChildren() } });
  box.replaceChildren(el("div", { class: "secret", role: "status" }, parts, el("div", { class: "row" }, dismiss)));
}

function identityRow(i, reload, secretBox) {
  const err = errorBox();
  const revoke = el("button", { type: "button", class: "danger identity-revoke", text: "Revoke", "aria-label": `Revoke ${i.name}` });
  const rotate = el("button", { type: "button", class: "identity-rotate", text: "Rotate token", "aria-label": `Rotate the token of ${i.name}` });
  revoke.addEventListener("click", () => action(err, revoke, async () => { await api("DELETE", `/identities/${i.id}`); await reload(); }));
  rotate.addEventListener("click", () => action(err, rotate, async () => { showSecret(secretBox, await api("POST", `/identities/${i.id}/rotate-token`, {})); await reload(); }));
  const revoked = !!i.revokedAt;
  if (revoked || i.id === "00000000-0000-0000-0000-000000000000") { revoke.disabled = true; rotate.disabled = true; }
  if (i.authMethod !== "token") rotate.disabled = true;
  return el("tr", { "data-identity-name": i.name },
    el("td", { text: i.name }), el("td", { class: "mono", text: i.projectId || "every project" }),
    el("td", { text: (i.permissions || []).join(", ") }), el("td", { text: i.authMethod }),
    el("td", { text: when(i.createdAt) }),
    el("td", {}, el("span", { class: revoked ? "pill bad identity-state" : "pill good identity-state", text: revoked ? "Revoked" : "Active" })),
    el("td", {}, el("div", { class: "row" }, rotate, revoke), err));
}

// --- Audit log -------------------------------------------------------------------------

const auditView = { after: 0, history: [] };

async function auditPage() {
  const err = errorBox("audit-error");
  const tbody = el("tbody", { id: "audit-rows" });
  const prev = el("button", { type: "button", id: "audit-prev", text: "Previous" });
  const next = el("button", { type: "button", id: "audit-next", text: "Next" });
  const info = el("span", { id: "audit-paging", "aria-live": "polite" });
  const verify = el("button", { type: "button", id: "audit-verify", text: "Verify chain" });
  const verdict = el("p", { id: "audit-verdict", role: "status" });
  const verifyErr = errorBox("audit-verify-error");
  let nextAfter = 0;
  const load = async () => {
    clearError(err);
    try {
      const r = await api("GET", `/audit?after=${auditView.after}&limit=50`);
      tbody.replaceChildren(...r.records.map((a) => el("tr", {},
        el("td", { text: String(a.seq) }), el("td", { text: when(a.time) }), el("td", { text: a.source }),
        el("td", { text: a.operation }), el("td", { text: a.outcome }), el("td", { text: a.identityName || "" }),
        el("td", { class: "mono", text: (a.hash || "").slice(0, 16) }))));
      nextAfter = r.nextAfter;
      info.textContent = r.records.length ? `records ${r.records[0].seq}–${r.records[r.records.length - 1].seq}` : "no more records";
      prev.disabled = !auditView.history.length;
      next.disabled = r.records.length < 50;
    } catch (e) { showError(err, e); }
  };
  prev.addEventListener("click", () => { auditView.after = auditView.history.pop() || 0; load(); });
  next.addEventListener("click", () => { auditView.history.push(auditView.after); auditView.after = nextAfter; load(); });
  verify.addEventListener("click", () => action(verifyErr, verify, async () => {
    verdict.textContent = "";
    const r = await api("GET", "/audit/verify");
    verdict.replaceChildren(el("span", { class: r.valid ? "status-valid" : "status-invalid", text: r.valid ? "Chain intact" : "Chain broken" }),
      `: ${r.message}`);
  }));
  page("Audit log", el("div", { class: "row" }, verify), verifyErr, verdict, err,
    el("div", { class: "table-wrap" }, el("table", { id: "audit-table" }, el("thead", {}, el("tr", {},
      ...["Seq", "Time", "Source", "Operation", "Outcome", "Identity", "Hash"].map((h) => el("th", { scope: "col", text: h })))), tbody)),
    el("div", { class: "pager" }, prev, info, next));
  await load();
}

// --- start -------------------------------------------------------------------------------

document.addEventListener("click", (ev) => {
  if (!ev.target.closest(".menu-wrap")) for (const m of document.querySelectorAll(".menu")) m.hidden = true;
});
window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  route();
});
