#!/usr/bin/env python3
"""Validate the Kubernetes manifests in deploy/kubernetes/ without a cluster.

    python3 scripts/check-k8s.py [DIR]

Two layers:

1. Checks of what matters to this gateway, on the parsed YAML (PyYAML): every object has
   apiVersion, kind and metadata.name; the kustomization lists every manifest but the
   placeholder Secrets; the Deployment's probes are HTTPS on the API port with /readyz for
   readiness and /healthz for liveness; it runs non-root with a read-only root file system
   and no capabilities; every Secret, ConfigMap and claim it refers to (volumes, projected
   sources, envFrom, valueFrom, items) exists in the manifests with those keys; every file
   an environment variable names (PIN, root key, TLS, fragments, token, PKCS#11 library)
   lies in a volume that provides it; every environment name is one the gateway knows
   (docs/CONFIGURATION.md) or a PKCS#11 vendor's own; the Service, PodDisruptionBudget and
   NetworkPolicy select the pods; every placeholder Secret value is marked REPLACE-ME.
   A self-test then breaks copies of the manifests in known ways and expects each to fail.
2. Schema validation with the `kubernetes-validate` package from PyPI (the OpenAPI schemas
   of each Kubernetes release ship inside it, so no cluster or network is needed once it
   is installed), in strict mode, against the oldest and newest releases it carries. It is
   installed once into a virtual environment under ~/.cache/kms-gateway. Set
   KMSGW_K8S_SCHEMA=0 to skip this layer (it is then reported as skipped).

PyYAML comes from Debian (python3-yaml); as root on Debian it is installed when missing.
Prints one line per check and ends with `k8s-manifests: N passed, M failed`; exits 1 on
any failure.
"""

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KV_VERSION = "1.37.0"  # kubernetes-validate, pinned: its schemas decide what passes
# Environment variables read by PKCS#11 vendor libraries, not by the gateway.
VENDOR_ENV = {
    "SOFTHSM2_CONF": "SoftHSM2 configuration file",
    "KRYOPTIC_CONF": "Kryoptic configuration file",
    "ChrystokiConfigurationPath": "Thales Luna: directory holding Chrystoki.conf",
}
# Names whose value is a file the container must be able to read.
FILE_ENV = {
    "HSM_PIN_FILE",
    "ROOT_ENCRYPTION_KEY_FILE",
    "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE",
    "CUSTOMER_FRAGMENTS_FILE",
    "KMSGW__TLS__CERT_FILE",
    "KMSGW__TLS__KEY_FILE",
    "PKCS11_LIB_PATH",
    "HSM_LIB_PATH",
    "SOFTHSM2_CONF",
}
SECRET_FILE_ENV = {
    "HSM_PIN_FILE",
    "ROOT_ENCRYPTION_KEY_FILE",
    "KMSGW__AUTH__BOOTSTRAP_TOKEN_FILE",
    "CUSTOMER_FRAGMENTS_FILE",
    "KMSGW__TLS__KEY_FILE",
}
# Secrets must never be plain environment values in a manifest.
SECRET_VALUE_ENV = {"HSM_PIN", "ROOT_ENCRYPTION_KEY", "CUSTOMER_FRAGMENTS"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
PLACEHOLDER_FILE = "secret-example.yaml"


def ensure_yaml():
    try:
        import yaml  # noqa: F401
        return
    except ImportError:
        pass
    debian_python = Path("/usr/bin/python3")
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("check-k8s: installing python3-yaml (Debian)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "python3-yaml"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if debian_python.exists() and Path(sys.executable).resolve() != debian_python.resolve():
            os.execv(str(debian_python), [str(debian_python), *sys.argv])
        return
    sys.exit("check-k8s: PyYAML is missing; install it with: sudo apt-get install -y python3-yaml")


ensure_yaml()
import yaml  # noqa: E402


# ---------------------------------------------------------------------------------------
class Report:
    def __init__(self, quiet=False):
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.quiet = quiet

    def check(self, ok, what, why=""):
        if ok:
            self.passed += 1
            if not self.quiet:
                print(f"ok   - {what}")
        else:
            self.failed += 1
            self.failures.append(f"{what}: {why}" if why else what)
            if not self.quiet:
                print(f"FAIL - {what}" + (f": {why}" if why else ""))
        return ok


def known_env_names():
    """Environment names from the table of docs/CONFIGURATION.md."""
    text = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    names = set()
    for line in text.splitlines():
        if line.startswith("|"):
            names.update(t for t in re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", line)
                         if re.fullmatch(r"[A-Z][A-Z0-9_]*", t))
    return names


def load(directory):
    """[(file name, document)] for every YAML document in DIR."""
    docs = []
    for path in sorted(Path(directory).glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_keys(obj):
    return set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())


def octal_ok(mode):
    return mode is None or (isinstance(mode, int) and 0 <= mode <= 0o777 and not mode & 0o007)


# ---------------------------------------------------------------------------------------
def check_manifests(docs, r, env_names):
    by_kind = {}
    for fname, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((fname, d))

    # Basic shape of every object.
    for fname, d in docs:
        name = (d.get("metadata") or {}).get("name")
        kind = d.get("kind")
        r.check(bool(d.get("apiVersion")) and bool(kind) and (bool(name) or kind == "Kustomization"),
                f"{fname}: {kind or '?'}/{name or '?'} has apiVersion, kind and metadata.name",
                f"apiVersion={d.get('apiVersion')!r} kind={kind!r} name={name!r}")
    seen = {}
    for fname, d in docs:
        if d.get("kind") == "Kustomization":
            continue
        key = (d.get("kind"), (d.get("metadata") or {}).get("name"))
        seen.setdefault(key, []).append(fname)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    r.check(not dups, "no two objects share a kind and name", str(dups))

    namespaces = {d["metadata"]["name"] for _, d in by_kind.get("Namespace", [])}
    kustomizations = by_kind.get("Kustomization", [])
    kz_ns = kustomizations[0][1].get("namespace") if kustomizations else None
    for fname, d in docs:
        kind = d.get("kind")
        if kind in CLUSTER_SCOPED or kind == "Kustomization":
            continue
        ns = (d.get("metadata") or {}).get("namespace")
        r.check(ns is not None and (ns in namespaces or ns == kz_ns) and (kz_ns is None or ns == kz_ns),
                f"{fname}: {kind}/{d['metadata'].get('name')} is in the gateway's namespace",
                f"namespace {ns!r}, namespaces defined {sorted(namespaces)}, kustomization {kz_ns!r}")

    # The kustomization: every manifest but the placeholder Secrets, and only files that exist.
    files = sorted({f for f, _ in docs})
    if r.check(len(kustomizations) == 1, "one kustomization.yaml", f"found {len(kustomizations)}"):
        resources = kustomizations[0][1].get("resources") or []
        missing = [f for f in resources if f not in files]
        r.check(not missing, "kustomization: every resource is a file here", f"missing {missing}")
        left_out = [f for f in files if f not in resources and f not in ("kustomization.yaml", PLACEHOLDER_FILE)]
        r.check(not left_out, "kustomization: lists every manifest", f"not listed: {left_out}")
        r.check(PLACEHOLDER_FILE not in resources,
                f"kustomization: leaves out {PLACEHOLDER_FILE} (placeholders must never be applied)")

    secrets = {d["metadata"]["name"]: d for _, d in by_kind.get("Secret", [])}
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    pvcs = {d["metadata"]["name"]: d for _, d in by_kind.get("PersistentVolumeClaim", [])}
    service_accounts = {d["metadata"]["name"] for _, d in by_kind.get("ServiceAccount", [])}

    # Placeholder Secrets: every value visibly a placeholder.
    for fname, d in by_kind.get("Secret", []):
        values = dict(d.get("stringData") or {})
        values.update(d.get("data") or {})
        real = [k for k, v in values.items() if "REPLACE-ME" not in str(v)]
        r.check(fname == PLACEHOLDER_FILE and not real,
                f"{fname}: Secret {d['metadata']['name']} holds only REPLACE-ME placeholders",
                f"keys without a placeholder: {real}" if real else f"Secrets belong in {PLACEHOLDER_FILE} only")

    deployments = by_kind.get("Deployment", [])
    r.check(len(deployments) == 1, "one Deployment", f"found {len(deployments)}")
    if not deployments:
        return
    fname, dep = deployments[0]
    dn = f"{fname}: Deployment {dep['metadata']['name']}"
    spec = dep.get("spec") or {}
    tmpl = spec.get("template") or {}
    pod_labels = (tmpl.get("metadata") or {}).get("labels") or {}
    pod = tmpl.get("spec") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    r.check(labels_match(sel, pod_labels), f"{dn}: selector matches the pod labels",
            f"selector {sel}, pod labels {pod_labels}")
    containers = pod.get("containers") or []
    if not r.check(len(containers) == 1, f"{dn}: one container", f"found {len(containers)}"):
        return
    c = containers[0]

    # Ports.
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    r.check(8000 in ports.values(), f"{dn}: container port 8000 (the HTTPS API)", f"ports {ports}")

    def port_of(p):
        return ports.get(p) if isinstance(p, str) else p

    # Probes.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        pr = c.get(probe) or {}
        hg = pr.get("httpGet") or {}
        r.check(hg.get("path") == path and hg.get("scheme") == "HTTPS" and port_of(hg.get("port")) == 8000,
                f"{dn}: {probe} is GET {path} over HTTPS on port 8000",
                f"httpGet {hg}")
    sp = c.get("startupProbe")
    if sp is not None:
        hg = sp.get("httpGet") or {}
        r.check(hg.get("scheme") == "HTTPS" and port_of(hg.get("port")) == 8000
                and hg.get("path") in ("/healthz", "/readyz"),
                f"{dn}: startupProbe over HTTPS on port 8000", f"httpGet {hg}")

    # Security.
    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    r.check(non_root and uid not in (None, 0), f"{dn}: runAsNonRoot with a non-zero runAsUser",
            f"runAsNonRoot={non_root} runAsUser={uid}")
    r.check(uid == 10001, f"{dn}: runs as the image's user 10001", f"runAsUser={uid}")
    r.check(csc.get("readOnlyRootFilesystem") is True, f"{dn}: read-only root file system")
    r.check(csc.get("allowPrivilegeEscalation") is False and not csc.get("privileged"),
            f"{dn}: no privilege escalation, not privileged")
    r.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []) and
            not (csc.get("capabilities") or {}).get("add"),
            f"{dn}: drops ALL capabilities and adds none")
    r.check(pod.get("automountServiceAccountToken") is False, f"{dn}: no service account token mounted")
    sa = pod.get("serviceAccountName")
    r.check(sa is None or sa in service_accounts, f"{dn}: its ServiceAccount exists", f"{sa!r}")
    res = c.get("resources") or {}
    r.check(bool((res.get("requests") or {}).get("cpu")) and bool((res.get("requests") or {}).get("memory"))
            and bool((res.get("limits") or {}).get("memory")),
            f"{dn}: cpu/memory requests and a memory limit", f"resources {res}")

    # Volumes and what they provide.
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    mounts = c.get("volumeMounts") or []
    for m in mounts:
        r.check(m.get("name") in volumes, f"{dn}: mount {m.get('mountPath')} has a volume", f"no volume {m.get('name')!r}")
    unused = set(volumes) - {m.get("name") for m in mounts}
    r.check(not unused, f"{dn}: every volume is mounted", f"unused {sorted(unused)}")

    def need_secret(name, keys, where):
        if not r.check(name in secrets, f"{dn}: Secret {name} ({where}) is defined", "not in the manifests"):
            return
        missing = [k for k in keys if k not in secret_keys(secrets[name])]
        r.check(not missing, f"{dn}: Secret {name} has the keys {where} uses", f"missing {missing}")

    def need_configmap(name, keys, where):
        if not r.check(name in configmaps, f"{dn}: ConfigMap {name} ({where}) is defined", "not in the manifests"):
            return
        missing = [k for k in keys if k not in set((configmaps[name].get("data") or {}))]
        r.check(not missing, f"{dn}: ConfigMap {name} has the keys {where} uses", f"missing {missing}")

    # files[mount path] = set of file names it provides, or None when any file may be there.
    provided = {}
    writable = set()
    for m in mounts:
        v = volumes.get(m.get("name"))
        if v is None:
            continue
        path = m["mountPath"].rstrip("/")
        where = f"volume {v['name']}"
        if "secret" in v:
            s = v["secret"]
            items = s.get("items")
            need_secret(s.get("secretName"), [i["key"] for i in items or []], where)
            r.check(octal_ok(s.get("defaultMode")), f"{dn}: {where} is not world-readable",
                    f"defaultMode {oct(s.get('defaultMode') or 0)}")
            provided[path] = ({i.get("path") for i in items} if items
                              else secret_keys(secrets.get(s.get("secretName"), {})))
            r.check(m.get("readOnly") is True, f"{dn}: {where} is mounted read-only")
        elif "configMap" in v:
            cm = v["configMap"]
            items = cm.get("items")
            need_configmap(cm.get("name"), [i["key"] for i in items or []], where)
            provided[path] = ({i.get("path") for i in items} if items
                              else set((configmaps.get(cm.get("name"), {}).get("data") or {})))
        elif "projected" in v:
            names = set()
            for src in v["projected"].get("sources") or []:
                if "secret" in src:
                    s = src["secret"]
                    items = src["secret"].get("items")
                    need_secret(s.get("name"), [i["key"] for i in items or []], f"{where}, projected")
                    names |= ({i.get("path") for i in items} if items
                              else secret_keys(secrets.get(s.get("name"), {})))
                elif "configMap" in src:
                    cm = src["configMap"]
                    items = cm.get("items")
                    need_configmap(cm.get("name"), [i["key"] for i in items or []], f"{where}, projected")
                    names |= ({i.get("path") for i in items} if items
                              else set((configmaps.get(cm.get("name"), {}).get("data") or {})))
            r.check(octal_ok(v["projected"].get("defaultMode")), f"{dn}: {where} is not world-readable")
            provided[path] = names
            r.check(m.get("readOnly") is True, f"{dn}: {where} is mounted read-only")
        elif "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"].get("claimName")
            r.check(claim in pvcs, f"{dn}: PersistentVolumeClaim {claim} ({where}) is defined")
            provided[path] = None
            if not m.get("readOnly"):
                writable.add(path)
        else:  # hostPath, emptyDir, CSI, ...: anything may be in it
            provided[path] = None
            if not m.get("readOnly"):
                writable.add(path)

    def provider_of(file_path):
        best = None
        for mp in provided:
            if file_path == mp or file_path.startswith(mp + "/"):
                if best is None or len(mp) > len(best):
                    best = mp
        return best

    # Environment: names the gateway knows, values that resolve.
    env = {}
    for e in c.get("env") or []:
        n = e.get("name")
        if "value" in e:
            env[n] = str(e["value"])
        vf = e.get("valueFrom") or {}
        if "secretKeyRef" in vf:
            need_secret(vf["secretKeyRef"].get("name"), [vf["secretKeyRef"].get("key")], f"env {n}")
        if "configMapKeyRef" in vf:
            need_configmap(vf["configMapKeyRef"].get("name"), [vf["configMapKeyRef"].get("key")], f"env {n}")
        if n in SECRET_VALUE_ENV:
            r.check("value" not in e, f"{dn}: {n} does not carry a secret in the manifest",
                    "use a *_FILE from a Secret volume, or valueFrom.secretKeyRef")
    for ef in c.get("envFrom") or []:
        if "configMapRef" in ef:
            cm = ef["configMapRef"].get("name")
            need_configmap(cm, [], "envFrom")
            for k, v in ((configmaps.get(cm) or {}).get("data") or {}).items():
                env.setdefault(k, str(v))
                r.check(k not in SECRET_VALUE_ENV, f"{dn}: ConfigMap {cm} carries no secret ({k})")
        if "secretRef" in ef:
            need_secret(ef["secretRef"].get("name"), [], "envFrom")
            env.update({k: "" for k in secret_keys(secrets.get(ef["secretRef"].get("name"), {}))})
    unknown = sorted(n for n in env if n not in env_names and n not in VENDOR_ENV)
    r.check(not unknown, f"{dn}: every environment name is one the gateway or a PKCS#11 vendor reads",
            f"unknown to docs/CONFIGURATION.md: {unknown}")
    r.check(bool(env.get("PKCS11_LIB_PATH") or env.get("HSM_LIB_PATH")), f"{dn}: PKCS11_LIB_PATH is set")
    selectors = [n for n in ("HSM_SLOT", "HSM_TOKEN_LABEL", "HSM_TOKEN_SERIAL") if env.get(n)]
    r.check(len(selectors) == 1, f"{dn}: exactly one of HSM_SLOT, HSM_TOKEN_LABEL, HSM_TOKEN_SERIAL",
            f"set: {selectors}")
    r.check(bool(env.get("HSM_PIN_FILE")) or any(e.get("name") == "HSM_PIN" and "valueFrom" in e
                                                  for e in c.get("env") or []),
            f"{dn}: the HSM PIN comes from a Secret")
    r.check(bool(env.get("KMSGW__TLS__CERT_FILE")) and bool(env.get("KMSGW__TLS__KEY_FILE")),
            f"{dn}: TLS certificate and key files are set")
    for n in sorted(FILE_ENV & set(env)):
        path = env[n]
        if not path:
            continue
        mp = provider_of(path)
        if not r.check(mp is not None, f"{dn}: {n}={path} lies in a mounted volume", "no volume mounted there"):
            continue
        names = provided[mp]
        rel = os.path.relpath(path, mp)
        if names is not None:
            r.check(rel in names, f"{dn}: {n}: the volume at {mp} provides {rel}",
                    f"it provides {sorted(names)}")
        if n in SECRET_FILE_ENV:
            v = volumes[[m for m in mounts if m["mountPath"].rstrip("/") == mp][0]["name"]]
            r.check("secret" in v or "projected" in v, f"{dn}: {n} comes from a Secret", f"volume {v}")
    store = env.get("KMSGW__STORE__URL", "sqlite://data/kms-gateway.db")
    if store.startswith("sqlite://"):
        db = store[len("sqlite://"):]
        mp = provider_of(os.path.dirname(db)) if db.startswith("/") else None
        r.check(mp in writable, f"{dn}: the SQLite store {db} is on a writable volume",
                f"mounts {sorted(writable)}")
        r.check(spec.get("replicas", 1) == 1 and (spec.get("strategy") or {}).get("type") == "Recreate",
                f"{dn}: one replica with the Recreate strategy (SQLite has one writer)",
                f"replicas={spec.get('replicas')} strategy={spec.get('strategy')}")
    r.check(provider_of("/tmp") in writable, f"{dn}: a writable /tmp beside the read-only root")

    # Graceful shutdown fits in the grace period.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    app_grace = int(env.get("KMSGW__SERVER__SHUTDOWN_GRACE_SECONDS", "30"))
    pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
    pre_s = int(pre[-1]) if len(pre) == 2 and pre[0] == "sleep" and str(pre[-1]).isdigit() else 0
    r.check(grace > app_grace + pre_s, f"{dn}: terminationGracePeriodSeconds covers preStop + shutdown grace",
            f"{grace} <= {pre_s} + {app_grace}")

    # Service, PDB, NetworkPolicy.
    for fname, svc in by_kind.get("Service", []):
        sn = f"{fname}: Service {svc['metadata']['name']}"
        r.check(labels_match((svc.get("spec") or {}).get("selector") or {}, pod_labels),
                f"{sn}: selector matches the pod labels")
        for p in (svc.get("spec") or {}).get("ports") or []:
            r.check(port_of(p.get("targetPort", p.get("port"))) == 8000,
                    f"{sn}: port {p.get('port')} targets the container's 8000", f"targetPort {p.get('targetPort')}")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    r.check(len(pdbs) >= 1, "a PodDisruptionBudget")
    for fname, pdb in pdbs:
        pn = f"{fname}: PodDisruptionBudget {pdb['metadata']['name']}"
        ps = pdb.get("spec") or {}
        r.check(labels_match((ps.get("selector") or {}).get("matchLabels") or {}, pod_labels),
                f"{pn}: selector matches the pod labels")
        min_av = ps.get("minAvailable")
        replicas = spec.get("replicas", 1)
        blocks = (isinstance(min_av, int) and min_av >= replicas) or ps.get("maxUnavailable") in (0, "0%") \
            or min_av == "100%"
        r.check(not blocks, f"{pn}: does not block every drain of {replicas} replica(s)",
                f"minAvailable={min_av} maxUnavailable={ps.get('maxUnavailable')}")
    nps = by_kind.get("NetworkPolicy", [])
    r.check(len(nps) >= 1, "a NetworkPolicy")
    for fname, np in nps:
        nn = f"{fname}: NetworkPolicy {np['metadata']['name']}"
        ns = np.get("spec") or {}
        r.check(labels_match((ns.get("podSelector") or {}).get("matchLabels") or {}, pod_labels),
                f"{nn}: podSelector matches the pod labels")
        in_ports = [port_of(p.get("port")) for rule in ns.get("ingress") or [] for p in rule.get("ports") or []]
        r.check(8000 in in_ports and set(in_ports) <= {8000}, f"{nn}: ingress opens the API port 8000 only",
                f"ports {in_ports}")
        r.check("Egress" in (ns.get("policyTypes") or []), f"{nn}: restricts egress too")


# ---------------------------------------------------------------------------------------
def self_test(docs, r, env_names):
    """Each mutation must make the checks fail; a checker that passes anything is no check."""

    def dep(ds):
        return next(d for _, d in ds if d.get("kind") == "Deployment")

    def container(ds):
        return dep(ds)["spec"]["template"]["spec"]["containers"][0]

    def env_set(ds, name, value):
        c = container(ds)
        c["env"] = [e for e in c.get("env") or [] if e.get("name") != name] + [{"name": name, "value": value}]

    # (what, mutation, a word the failure message must hold)
    mutations = [
        ("readiness probe over HTTP",
         lambda ds: container(ds)["readinessProbe"]["httpGet"].update(scheme="HTTP"), "readinessProbe"),
        ("liveness probe on /readyz",
         lambda ds: container(ds)["livenessProbe"]["httpGet"].update(path="/readyz"), "livenessProbe"),
        ("a probe on the wrong port",
         lambda ds: container(ds)["readinessProbe"]["httpGet"].update(port=8443), "readinessProbe"),
        ("running as root",
         lambda ds: container(ds)["securityContext"].update(runAsUser=0, runAsNonRoot=False), "runAsNonRoot"),
        ("a writable root file system",
         lambda ds: container(ds)["securityContext"].update(readOnlyRootFilesystem=False), "read-only root"),
        ("an unknown KMSGW__ variable",
         lambda ds: env_set(ds, "KMSGW__SERVER__LISTEN_ADDR", "0.0.0.0:8000"), "KMSGW__SERVER__LISTEN_ADDR"),
        ("the PIN in plain text", lambda ds: env_set(ds, "HSM_PIN", "1234"), "HSM_PIN"),
        ("a Secret that does not exist", lambda ds: next(
            v for v in dep(ds)["spec"]["template"]["spec"]["volumes"] if "secret" in v)["secret"].update(
                secretName="kms-gateway-nope"), "kms-gateway-nope"),
        ("a file no volume provides",
         lambda ds: env_set(ds, "HSM_PIN_FILE", "/run/secrets/kms-gateway/pin"), "HSM_PIN_FILE"),
        ("a Service that selects nothing", lambda ds: next(
            d for _, d in ds if d.get("kind") == "Service")["spec"]["selector"].update(
                {"app.kubernetes.io/name": "other"}), "Service"),
        ("a PDB that selects nothing", lambda ds: next(
            d for _, d in ds if d.get("kind") == "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(
                {"app.kubernetes.io/name": "other"}), "PodDisruptionBudget"),
        ("a PDB that blocks every drain", lambda ds: next(
            d for _, d in ds if d.get("kind") == "PodDisruptionBudget")["spec"].update(
                {"maxUnavailable": 0}), "drain"),
        ("a Deployment selector off the pod labels", lambda ds: dep(ds)["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "other"}), "selector"),
        ("a real-looking value in the example Secret", lambda ds: next(
            d for _, d in ds if d.get("kind") == "Secret")["stringData"].update({"pin": "123456"}), "REPLACE-ME"),
        ("two replicas on one SQLite file",
         lambda ds: dep(ds)["spec"].update(replicas=2), "one replica"),
    ]
    for what, mutate, word in mutations:
        broken = copy.deepcopy(docs)
        try:
            mutate(broken)
        except (StopIteration, KeyError, TypeError) as e:
            r.check(False, f"self-test: {what} can be set up", repr(e))
            continue
        probe = Report(quiet=True)
        check_manifests(broken, probe, env_names)
        r.check(any(word in f for f in probe.failures), f"self-test: {what} is caught",
                f"no failure mentions {word!r}; failures: {probe.failures}")


# ---------------------------------------------------------------------------------------
def schema_validate(directory, r):
    if os.environ.get("KMSGW_K8S_SCHEMA", "1") in ("0", "false", "no"):
        print("SKIPPED - schema validation (KMSGW_K8S_SCHEMA=0)")
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kms-gateway"
    venv = cache / f"k8s-validate-{KV_VERSION}"
    exe = venv / "bin" / "kubernetes-validate"
    if exe.exists() and subprocess.run([str(exe), "--version"], capture_output=True).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)  # made by a Python that is gone
    if not exe.exists():
        print(f"check-k8s: installing kubernetes-validate {KV_VERSION} into {venv} (once)", file=sys.stderr)
        try:
            if subprocess.run([sys.executable, "-m", "venv", str(venv)],
                              capture_output=True).returncode != 0:
                # Debian's python3 makes virtual environments only with python3-venv.
                shutil.rmtree(venv, ignore_errors=True)
                if os.geteuid() == 0 and shutil.which("apt-get"):
                    print("check-k8s: installing python3-venv (Debian)", file=sys.stderr)
                    subprocess.run(["apt-get", "update", "-qq"], check=True)
                    subprocess.run(["apt-get", "install", "-y", "-qq", "python3-venv"], check=True,
                                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                               stdout=subprocess.DEVNULL)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"kubernetes-validate=={KV_VERSION}"], check=True)
        except (subprocess.CalledProcessError, OSError) as e:
            shutil.rmtree(venv, ignore_errors=True)
            r.check(False, "schema validation: install kubernetes-validate",
                    f"{e}; as root on Debian, python3-venv may be missing (apt-get install python3-venv); "
                    "KMSGW_K8S_SCHEMA=0 skips this layer")
            return
    # Versions it carries: the oldest and the newest.
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import kubernetes_validate.utils as u; print(' '.join(u.all_versions()))"],
                         capture_output=True, text=True)
    versions = sorted(out.stdout.split(), key=lambda v: tuple(int(x) for x in v.split(".")))
    if not versions:
        versions = [".".join(KV_VERSION.split(".")[:2])]
    files = [str(p) for p in sorted(Path(directory).glob("*.y*ml")) if p.name != "kustomization.yaml"]
    for version in sorted({versions[0], versions[-1]}, key=lambda v: tuple(int(x) for x in v.split("."))):
        res = subprocess.run([str(exe), "--strict", "--quiet", "-k", version, *files],
                             capture_output=True, text=True)
        msg = (res.stdout + res.stderr).strip()
        r.check(res.returncode == 0, f"schema: every manifest is valid (strict) for Kubernetes {version}", msg)
    # Self-test: a misspelt field must be refused.
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "deployment.yaml"
        bad.write_text((Path(directory) / "deployment.yaml").read_text()
                       .replace("readinessProbe:", "readinesProbe:", 1))
        res = subprocess.run([str(exe), "--strict", "--quiet", str(bad)], capture_output=True, text=True)
        r.check(res.returncode != 0 and "readinesProbe" in res.stdout + res.stderr,
                "self-test: the schema validation refuses a misspelt field (readinesProbe)",
                (res.stdout + res.stderr).strip() or "it passed")


def main():
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy" / "kubernetes"
    if not directory.is_dir():
        sys.exit(f"check-k8s: no directory {directory}")
    r = Report()
    try:
        docs = load(directory)
    except yaml.YAMLError as e:
        r.check(False, f"{directory}: every file parses as YAML", str(e))
        print(f"k8s-manifests: {r.passed} passed, {r.failed} failed")
        return 1
    r.check(bool(docs), f"{directory}: manifests found", "no *.yaml files")
    env_names = known_env_names()
    r.check(len(env_names) > 10, "docs/CONFIGURATION.md lists the environment names",
            f"found {sorted(env_names)}")
    check_manifests(docs, r, env_names)
    self_test(docs, r, env_names)
    schema_validate(directory, r)
    if r.failures:
        print("\nfailures:")
        for f in r.failures:
            print(f"  - {f}")
    print(f"k8s-manifests: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
