#!/usr/bin/env bash
# Installs what the local server stack (deploy/local/stack.py) and the test suite need, and only what is
# missing: Debian packages, FerretDB, the compose-spec schema (Go module cache) and the project venv.
# Idempotent; when everything is present it runs in about a second and changes nothing.
#
# Usage: bash deploy/local/install.sh      (from anywhere; paths are relative to the repository)
set -euo pipefail

readonly APT_PACKAGES=(rabbitmq-server dovecot-imapd dovecot-lmtpd chromium)
readonly FERRETDB_MODULE=github.com/FerretDB/FerretDB
readonly FERRETDB_VERSION=v1.24.2
readonly COMPOSE_MODULE=github.com/compose-spec/compose-go/v2
readonly COMPOSE_VERSION=v2.16.2

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

say() { printf 'install: %-10s %s\n' "$1" "$2"; }
die() { printf 'install: FAILED: %s\n' "$*" >&2; exit 1; }

# Root for apt; a non-root developer gets sudo (which may prompt) rather than a failure.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# --- Debian packages ---------------------------------------------------------------------------------
step_apt() {
    local missing=() pkg
    command -v dpkg-query >/dev/null || die "dpkg-query not found: this script expects Debian/Ubuntu"
    for pkg in "${APT_PACKAGES[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    # `python3 -m venv` needs ensurepip, which Debian ships separately (python3-venv); only ask for it
    # when we are going to create the venv.
    if [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        say apt "skipped: ${APT_PACKAGES[*]} already installed"
        return
    fi

    # policy-rc.d exit 101 tells invoke-rc.d not to start services from maintainer scripts
    # (Debian policy 9.3.3.1), so the system RabbitMQ/Dovecot never occupy the standard ports that the
    # stack and `make demo` use. An existing policy is left alone; one we create is removed afterwards
    # so a developer machine keeps its normal behaviour for other packages.
    local policy=/usr/sbin/policy-rc.d created_policy=
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\n# created by hotline-gateway deploy/local/install.sh\nexit 101\n' > $policy && chmod 755 $policy"
        created_policy=1
    fi
    say apt "installing: ${missing[*]} (apt-get update first)"
    local rc=0
    {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if [ -n "$created_policy" ]; then as_root rm -f "$policy"; fi
    [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} exited with $rc"
    say apt "installed: ${missing[*]}"

    # On a systemd machine the units we just installed are enabled and would start at the next
    # boot on the standard ports; the stack runs its own servers, so keep the system ones off.
    # Units of packages that were already installed are somebody's choice and left alone.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        local units=()
        for pkg in "${missing[@]}"; do
            case "$pkg" in
                rabbitmq-server) units+=(rabbitmq-server.service) ;;
                dovecot-imapd | dovecot-lmtpd) units+=(dovecot.service) ;;
            esac
        done
        if [ ${#units[@]} -gt 0 ]; then
            as_root systemctl disable --now "${units[@]}" >/dev/null 2>&1 ||
                die "systemctl disable ${units[*]} failed"
            say apt "disabled system units: ${units[*]}"
        fi
    fi
}

# --- FerretDB ----------------------------------------------------------------------------------------
# True when $1 is a FerretDB binary of the wanted version that actually runs.
ferretdb_ok() {
    [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "version: ${FERRETDB_VERSION}\$"
}

step_ferretdb() {
    command -v go >/dev/null || die "Go is not installed; FerretDB ${FERRETDB_VERSION} is built from source and needs Go >= 1.21 (https://go.dev/dl/)"
    local gopath gobin candidate
    gopath=$(go env GOPATH)
    gobin=$(go env GOBIN)
    gobin=${gobin:-$gopath/bin}
    for candidate in "$(command -v ferretdb || true)" "$gopath/bin/ferretdb" "$gobin/ferretdb"; do
        if [ -n "$candidate" ] && ferretdb_ok "$candidate"; then
            say ferretdb "skipped: $candidate is ${FERRETDB_VERSION}"
            return
        fi
    done

    mkdir -p "$gobin"
    local work log
    work=$(mktemp -d)
    log="$work/build.log"
    # shellcheck disable=SC2064  # expand $work now: it is local
    trap "rm -rf '$work'" RETURN

    # First the documented way. Both builds use -trimpath so the second one reuses the first one's
    # build cache.
    say ferretdb "building ${FERRETDB_VERSION} (go install; a few minutes on a fresh machine)"
    if GOBIN="$work/bin" go install -trimpath "${FERRETDB_MODULE}/cmd/ferretdb@${FERRETDB_VERSION}" >"$log" 2>&1 &&
        ferretdb_ok "$work/bin/ferretdb"; then
        mv -f "$work/bin/ferretdb" "$gobin/ferretdb"
        say ferretdb "installed: $gobin/ferretdb (go install)"
        return
    fi
    # `go install` fails behind proxies that refuse the deprecation lookup ("loading deprecation ...
    # 403"), and even when it succeeds the binary panics at start: build/version/version.go requires
    # build/version/version.txt, which is generated by FerretDB's release tooling and is not part of the
    # module zip. So build from the module source with that file written.
    say ferretdb "go install unusable ($(tail -n 1 "$log" | cut -c1-100)); building from module source"
    local dir
    dir=$(go mod download -json "${FERRETDB_MODULE}@${FERRETDB_VERSION}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("Dir", ""))') ||
        die "go mod download ${FERRETDB_MODULE}@${FERRETDB_VERSION} failed"
    [ -d "$dir" ] || die "go mod download gave no source directory for ${FERRETDB_MODULE}"
    cp -r "$dir" "$work/src"
    chmod -R u+w "$work/src"   # the module cache is read-only
    printf '%s\n' "${FERRETDB_VERSION}" >"$work/src/build/version/version.txt"
    (cd "$work/src" && go build -trimpath -buildvcs=false -o "$work/ferretdb" ./cmd/ferretdb) >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; die "go build of FerretDB ${FERRETDB_VERSION} failed (output above)"; }
    ferretdb_ok "$work/ferretdb" || die "the FerretDB binary built from source does not run: $("$work/ferretdb" --version 2>&1 | head -n 3)"
    mv -f "$work/ferretdb" "$gobin/ferretdb"
    say ferretdb "installed: $gobin/ferretdb (built from module source)"
}

# --- compose-spec schema -----------------------------------------------------------------------------
step_compose_spec() {
    local dir
    # Cheap when cached: `go mod download` answers from the module cache without the network.
    dir=$(go mod download -json "${COMPOSE_MODULE}@${COMPOSE_VERSION}" |
        python3 -c 'import json, sys; m = json.load(sys.stdin); print(m.get("Dir", "") if not m.get("Error") else "")') ||
        die "go mod download ${COMPOSE_MODULE}@${COMPOSE_VERSION} failed"
    [ -f "$dir/schema/compose-spec.json" ] || die "compose-spec.json not found in ${COMPOSE_MODULE}@${COMPOSE_VERSION} (dir: '$dir')"
    say compose "ready: $dir/schema/compose-spec.json"
}

# --- Python venv -------------------------------------------------------------------------------------
step_venv() {
    if [ ! -x .venv/bin/python ]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
            die "python3 >= 3.11 required, found $(python3 --version 2>&1)"
        python3 -m venv .venv || die "python3 -m venv .venv failed"
        say venv "created .venv ($(.venv/bin/python --version))"
    else
        say venv "skipped: .venv exists ($(.venv/bin/python --version))"
    fi
    local stamp=.venv/.hotline-install-stamp
    if [ ! -f pyproject.toml ]; then
        say pip "skipped: no pyproject.toml yet, nothing to install"
        return
    fi
    if [ "$stamp" -nt pyproject.toml ]; then
        say pip "skipped: .venv is newer than pyproject.toml"
        return
    fi
    say pip "installing -e '.[all,dev]' (pyproject.toml is newer than the last install)"
    local log
    log=$(mktemp)
    # pip and the build backend are chatty; their output is shown only when the install fails.
    # A current pip first: the one python -m venv bundles may not match `.[all]`'s self-referencing
    # extras (email_ingest vs email-ingest, PEP 685) and then installs without them, only warning.
    if ! { .venv/bin/python -m pip install -q --upgrade 'pip>=25' &&
           .venv/bin/python -m pip install -q -e '.[all,dev]'; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "pip install -e '.[all,dev]' failed (output above)"
    fi
    rm -f "$log"
    # Every service's dependencies must be there, whatever pip said.
    .venv/bin/python -c 'import aioimaplib, aiosmtplib, argon2, nh3, pymongo, playwright, aiosmtpd' ||
        die "the venv lacks a dependency after pip install -e '.[all,dev]'"
    touch "$stamp"
    say pip "installed"
}

step_apt
step_ferretdb
step_compose_spec
step_venv
say done "local stack prerequisites are in place"
