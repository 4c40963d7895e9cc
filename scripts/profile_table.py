#!/usr/bin/env python3
"""Instructions per request by component, from callgrind_annotate's listings.

    profile_table.py SELF_LISTING INCLUSIVE_LISTING CALLGRIND_FILE REQUESTS

scripts/profile.sh runs it. The first table sums the exclusive (self) instruction counts
of every function by the component it belongs to (its crate, or its library for C code),
so that its rows add up to the total; the second lists the gateway's own functions by
inclusive count (the function and everything it calls), which shows which step of a
request costs what. Both are divided by the number of requests the gateway served while
callgrind collected: the calls of `AuditLog::send` in CALLGRIND_FILE (every request
leaves exactly one audit record). REQUESTS, the number the benchmark sent, is shown beside
it (instrumentation is switched on by a command the gateway picks up a moment later, so
the two differ a little).
"""

import re
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")
# callgrind_annotate marks a function that calls itself with its call count: "(12x)".
CALLS = re.compile(r"\s+\([\d,]+x\)$")

# Rust crates (first path segment of a demangled name) -> the component they serve.
CRATES = {
    "rustls": "TLS (rustls)",
    "rustls_pki_types": "TLS (rustls)",
    "webpki": "TLS (rustls)",
    "tokio_rustls": "TLS (rustls)",
    "aws_lc_rs": "crypto (aws-lc-rs and aws-lc)",
    "hyper": "HTTP (hyper, h2, httparse, http)",
    "hyper_util": "HTTP (hyper, h2, httparse, http)",
    "h2": "HTTP (hyper, h2, httparse, http)",
    "httparse": "HTTP (hyper, h2, httparse, http)",
    "http": "HTTP (hyper, h2, httparse, http)",
    "http_body_util": "HTTP (hyper, h2, httparse, http)",
    "bytes": "HTTP (hyper, h2, httparse, http)",
    "tokio": "async runtime (tokio, mio)",
    "mio": "async runtime (tokio, mio)",
    "serde_json": "JSON (serde_json, serde)",
    "serde": "JSON (serde_json, serde)",
    "serde_core": "JSON (serde_json, serde)",
    "zmij": "JSON (serde_json, serde)",
    "itoa": "JSON (serde_json, serde)",
    "base64": "base64",
    "sha2": "SHA-256 and HMAC (sha2, hmac: audit chain, token hashes)",
    "hmac": "SHA-256 and HMAC (sha2, hmac: audit chain, token hashes)",
    "digest": "SHA-256 and HMAC (sha2, hmac: audit chain, token hashes)",
    "block_buffer": "SHA-256 and HMAC (sha2, hmac: audit chain, token hashes)",
    "rusqlite": "SQLite (rusqlite and the C library)",
    "hashbrown": "Rust standard library (core, alloc, std)",
    "core": "Rust standard library (core, alloc, std)",
    "alloc": "Rust standard library (core, alloc, std)",
    "std": "Rust standard library (core, alloc, std)",
    "tracing": "logging (tracing)",
    "tracing_core": "logging (tracing)",
    "tracing_subscriber": "logging (tracing)",
    "uuid": "gateway code (kms_gateway, uuid, time)",
    "time": "gateway code (kms_gateway, uuid, time)",
    "kms_gateway": "gateway code (kms_gateway, uuid, time)",
    "zeroize": "gateway code (kms_gateway, uuid, time)",
}


def split(rest):
    """'file:function [object]' -> (file, function, object)."""
    obj = ""
    m = re.match(r"^(.*) \[([^\]]*)\]$", rest)
    if m:
        rest, obj = m.group(1), m.group(2)
    rest = CALLS.sub("", rest)
    # "file:function"; a file is a path (no spaces), a function may hold ":" itself.
    m = re.match(r"^(\S*?\.(?:rs|c|h|S|s|cc|cpp)|\?\?\?|[^:\s]*):(.*)$", rest)
    file, func = (m.group(1), m.group(2)) if m else ("", rest)
    return file, func, obj


def crate(func):
    name = func.lstrip("<&*(").split(" as ")[0]
    return name.split("::")[0] if "::" in name else ""


def component(file, func, obj):
    if "softhsm" in obj or "kryoptic" in obj:
        return "PKCS#11 library (SoftHSM2)"
    if re.search(r"/(libc|ld-linux|libm|libpthread)[.-]", obj) or file.startswith("./"):
        if re.match(r"_?_?(libc_)?(malloc|free|realloc|calloc|cfree|_int_|tcache|unlink|"
                    r"malloc_consolidate|sysmalloc|aligned_alloc|posix_memalign)", func):
            return "memory allocator (glibc malloc, free)"
        if re.match(r"_?_?(mem|str|wmem)", func):
            return "memcpy, memset, memcmp (glibc)"
        return "glibc (system call wrappers, other)"
    if "sqlite3" in file or func.startswith("sqlite3"):
        return "SQLite (rusqlite and the C library)"
    c = crate(func)
    if c:
        return CRATES.get(c, f"other Rust ({c})")
    if "aws-lc" in file or "aws_lc" in func or "aws-lc" in obj:
        return "crypto (aws-lc-rs and aws-lc)"
    if re.search(r"(sha\d+_block|aes_|gcm_|ecp_|bn_|p256|x25519|chacha|poly1305|rsa)", func):
        return "crypto (aws-lc-rs and aws-lc)"
    return "other C code (SQLite or aws-lc, without line tables)"


def rows(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m and "PROGRAM TOTALS" not in m.group(2):
                yield int(m.group(1).replace(",", "")), m.group(2)


def total(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m and "PROGRAM TOTALS" in m.group(2):
                return int(m.group(1).replace(",", ""))
    return 0


def calls_of(path, suffix):
    """Calls of the functions whose name ends with `suffix`, from callgrind's own file."""
    names, calls, callee = {}, {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2).strip()
                callee = m.group(1) if line.startswith("cfn=") else None
                continue
            m = re.match(r"^calls=(\d+)", line)
            if m and callee:
                calls[callee] = calls.get(callee, 0) + int(m.group(1))
                callee = None
    return sum(n for i, n in calls.items() if names.get(i, "").endswith(suffix))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    self_path, incl_path, out_path = sys.argv[1:4]
    sent = int(sys.argv[4] or 0)
    requests = calls_of(out_path, "kms_gateway::audit::AuditLog::send")
    print(f"\nrequests: {requests} served while instrumented (audit records), {sent} sent by the benchmark")
    if requests <= 0:
        sys.exit("profile_table: no request was served while callgrind collected")
    all_ir = total(self_path)
    groups = {}
    for ir, rest in rows(self_path):
        # The same function appears once per source file its code came from (inlining).
        key = component(*split(rest))
        groups[key] = groups.get(key, 0) + ir
    print(f"\ninstructions per request, by component ({requests} requests, "
          f"{all_ir / requests:,.0f} instructions each)")
    print(f"{'component':<62}{'instr/req':>12}{'share':>8}")
    for key, ir in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{key:<62}{ir / requests:>12,.0f}{100 * ir / all_ir:>7.1f}%")

    print("\nthe gateway's own functions, inclusive (the function and all it calls), per request")
    seen = {}
    for ir, rest in rows(incl_path):
        _, func, _ = split(rest)
        if crate(func) != "kms_gateway" or "closure" in func and func in seen:
            continue
        name = re.sub(r"::h[0-9a-f]{16}$", "", func)
        seen[name] = max(seen.get(name, 0), ir)
    for name, ir in sorted(seen.items(), key=lambda kv: -kv[1])[:30]:
        short = name if len(name) <= 96 else name[:93] + "..."
        print(f"{ir / requests:>12,.0f}  {short}")


if __name__ == "__main__":
    main()
