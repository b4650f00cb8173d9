#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs the tools the tests drive
# (nginx, oathtool, zbarimg, rsvg-convert, chromium, curl, openssl, the system CA certificates
# that https upstreams are checked against by default, systemd-analyze, php-cli,
# python3 for a fake admin socket run as nobody with setpriv from util-linux, PostgreSQL
# (only its binaries: the tests start private clusters, never the system one), and Django
# from PyPI), then
# checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nginx oathtool zbar-tools librsvg2-bin chromium curl openssl ca-certificates systemd wrk php-cli python3 util-linux procps jetty9 tomcat10 postgresql)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "Installing test tools: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A real third-party form-login console for tests/django_form.rs (Django's admin, PyPI).
python3 -c 'import django' 2>/dev/null || python3 -m pip install --quiet 'django>=4.2,<6'

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
