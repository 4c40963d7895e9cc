# KMS Gateway. `make test` installs what it needs (as root on Debian), then runs the whole
# suite against SoftHSM2 and again against Kryoptic. `make run` starts a dev gateway.
SHELL := /bin/bash
CARGO ?= cargo
NEXTEST := $(CARGO) nextest run --no-fail-fast --failure-output final

.PHONY: all build deps test test-softhsm test-kryoptic kryoptic run bench fmt lint clean

all: build

build:
	$(CARGO) build --release

deps:
	scripts/install-deps.sh

## test: the whole suite on a throw-away SoftHSM2 token, then on a Kryoptic token.
test: deps test-softhsm test-kryoptic test-clients test-fuzz test-deploy test-docker

## The PostgreSQL store tests share one throw-away cluster (a database each) per run.
test-softhsm:
	KMSGW_TEST_PKCS11=softhsm scripts/pg-cluster.sh with $(NEXTEST)

kryoptic:
	scripts/kryoptic-build.sh >/dev/null

test-kryoptic: kryoptic
	KMSGW_TEST_PKCS11=kryoptic scripts/pg-cluster.sh with $(NEXTEST)

## test-clients: Infisical's Python SDK, hvac, boto3, the AWS CLI, the AWS Encryption SDK,
## XKS requests signed by botocore, the web console (headless Chromium) and schemathesis
## against one real gateway.
.PHONY: test-clients
test-clients:
	scripts/client-tests.sh

## test-fuzz: every cargo fuzz target of fuzz/ for KMSGW_FUZZ_SECONDS (default 30) each.
.PHONY: test-fuzz
test-fuzz:
	scripts/fuzz.sh

## test-deploy: the Kubernetes manifests in deploy/kubernetes, checked without a cluster.
## test-docker: the image built and driven end to end (skipped without a Docker engine).
.PHONY: test-deploy test-docker
test-deploy:
	python3 scripts/check-k8s.py

test-docker:
	scripts/docker-e2e.sh

## run: a dev gateway on https://127.0.0.1:8000 with its state under var/.
run: deps
	scripts/dev-run.sh

## bench: the HTTP load benchmark, load sent by oha (installed once), with raw aws-lc-rs rows.
bench: deps
	scripts/bench.sh

## profile: instructions per request by component, the gateway under valgrind's callgrind.
.PHONY: profile
profile: deps
	scripts/profile.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf var
