#!/usr/bin/env bash
# Installs the system packages the lab and the tests need (Debian/Ubuntu, as root).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
PACKAGES=(iproute2 nftables iptables conntrack lsm openssh-server openssh-client
          iputils-ping procps psmisc util-linux python3 python3-venv make git
          dnsmasq-base udhcpc)
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: run as root (the lab uses network and mount namespaces)" >&2
    exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The lsm package starts its daemon on install where systemd runs; the lab never uses it.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
