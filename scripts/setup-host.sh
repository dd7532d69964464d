#!/usr/bin/env bash
# Installs the system packages the lab and the tests need (Debian/Ubuntu, as root).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
# dnsmasq-base and udhcpc: the lab's DHCP uplinks (tests/harness/uplinks.py).
# systemd-container and mmdebstrap: the lab's systemd-booted routers (lab/nspawn.py).
PACKAGES=(iproute2 nftables iptables conntrack keepalived conntrackd openssh-server openssh-client
          systemd-container mmdebstrap
          iputils-ping procps psmisc util-linux python3 python3-venv make git
          iperf3 strace dnsmasq-base udhcpc)
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-host: run as root (the lab uses network and mount namespaces)" >&2
    exit 1
fi
# The Link Status Monitor: lsm 1.0.4 on Debian 12, renamed foolsm 1.0.21 on Debian 13.
if dpkg-query -W -f='${Status}' lsm 2>/dev/null | grep -q "install ok installed" \
        || ! apt-cache show foolsm >/dev/null 2>&1; then
    PACKAGES+=(lsm)
else
    PACKAGES+=(foolsm)
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
