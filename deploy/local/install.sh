#!/usr/bin/env bash
# Installs what the local server stack (deploy/local/stack.py) and the test suite need, and only what is
# missing: Debian packages, FerretDB (patched, see step_ferretdb), the compose-spec schema (Go module
# cache) and the project venv.
# Idempotent; when everything is present it runs in about a second and changes nothing.
#
# Usage: bash deploy/local/install.sh      (from anywhere; paths are relative to the repository)
set -euo pipefail

readonly APT_PACKAGES=(rabbitmq-server dovecot-imapd dovecot-lmtpd chromium patch nginx-light)
readonly FERRETDB_MODULE=github.com/FerretDB/FerretDB
readonly FERRETDB_VERSION=v1.24.2
# FerretDB v1 is frozen (its last release, v1.24.2, is the tip of main-v1), so this patch stays pinned to it.
readonly FERRETDB_PATCH=deploy/local/ferretdb-v1.24.2.patch
# A name of its own, so that a stock `ferretdb` on PATH is never taken for the patched build; stack.py
# runs this one.
readonly FERRETDB_PROGRAM=ferretdb-hotline
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
# The local and test stand-in for MongoDB is FerretDB v1.24.2 (SQLite backend) with the four parts of
# $FERRETDB_PATCH (docs/architecture.md, "The database stand-in"): finds, updates and deletes by _id
# use the _id index, each update/findAndModify/delete runs alone, atomic per document as on
# MongoDB 7, and an update command of many statements no longer holds a connection per statement. It is always built from the module source: `go install` would give a stock binary, one
# that panics at start besides (build/version/version.go requires build/version/version.txt,
# which FerretDB's release tooling generates and the module zip lacks).
#
# The binary carries the patch's sha256 in its build info (build/version/package.txt, printed by
# `--version` as `package:`), so a stock build, or one from another patch, is never taken for this one.

# True when $1 is a FerretDB binary of the wanted version, built with the patch whose stamp is $2,
# and it runs.
ferretdb_ok() {
    local out
    [ -x "$1" ] && out=$("$1" --version 2>/dev/null) &&
        grep -qxF "version: ${FERRETDB_VERSION}" <<<"$out" &&
        grep -qxF "package: $2" <<<"$out"
}

step_ferretdb() {
    command -v go >/dev/null || die "Go is not installed; FerretDB ${FERRETDB_VERSION} is built from source and needs Go >= 1.21 (https://go.dev/dl/)"
    command -v patch >/dev/null || die "patch is not installed; it applies ${FERRETDB_PATCH} (apt-get install patch)"
    [ -f "$FERRETDB_PATCH" ] || die "${FERRETDB_PATCH} is missing"
    local gopath gobin target stamp
    gopath=$(go env GOPATH)
    gobin=$(go env GOBIN)
    gobin=${gobin:-$gopath/bin}
    target="$gobin/$FERRETDB_PROGRAM"
    stamp="hotline-patch-sha256-$(sha256sum "$FERRETDB_PATCH" | cut -d' ' -f1)"
    if ferretdb_ok "$target" "$stamp"; then
        say ferretdb "skipped: $target is ${FERRETDB_VERSION} with ${FERRETDB_PATCH}"
        return
    fi

    mkdir -p "$gobin"
    local work log dir started
    work=$(mktemp -d)
    log="$work/build.log"
    # shellcheck disable=SC2064  # expand $work now: it is local
    trap "rm -rf '$work'" RETURN

    started=$SECONDS
    say ferretdb "building ${FERRETDB_VERSION} with ${FERRETDB_PATCH} from module source (2-3 minutes on a fresh machine)"
    dir=$(go mod download -json "${FERRETDB_MODULE}@${FERRETDB_VERSION}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("Dir", ""))') ||
        die "go mod download ${FERRETDB_MODULE}@${FERRETDB_VERSION} failed"
    [ -d "$dir" ] || die "go mod download gave no source directory for ${FERRETDB_MODULE}"
    cp -r "$dir" "$work/src"
    chmod -R u+w "$work/src"   # the module cache is read-only
    # No fuzz and no "assume reversed": every hunk applies exactly where it was written, or the install
    # stops here; there is no fallback to a stock build.
    patch -d "$work/src" -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch -i "$repo/$FERRETDB_PATCH" >"$log" 2>&1 ||
        { cat "$log" >&2; die "${FERRETDB_PATCH} does not apply to ${FERRETDB_MODULE}@${FERRETDB_VERSION} (output above)"; }
    printf '%s\n' "${FERRETDB_VERSION}" >"$work/src/build/version/version.txt"
    printf '%s\n' "$stamp" >"$work/src/build/version/package.txt"
    (cd "$work/src" && go build -trimpath -buildvcs=false -o "$work/ferretdb" ./cmd/ferretdb) >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; die "go build of FerretDB ${FERRETDB_VERSION} failed (output above)"; }
    ferretdb_ok "$work/ferretdb" "$stamp" ||
        die "the FerretDB binary built from source does not run or lacks the patch stamp: $("$work/ferretdb" --version 2>&1 | head -n 6)"
    mv -f "$work/ferretdb" "$target"
    say ferretdb "installed: $target (patched, built in $((SECONDS - started)) s)"
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
