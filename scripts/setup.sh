#!/usr/bin/env bash
# Install what ipseclab's tests need: Debian packages (as root) and the Python package with its dev extra
# in .venv.  Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# tshark/tcpdump: captures and Wireshark's view; user-mode-linux, mmdebstrap, nftables, iproute2: the lab;
# patchelf: points the newer UML kernel (installed below) at the C library it came with;
# iputils-ping, busybox (nc): pings and TCP transfers from the ipseclab endpoint's namespace, as in the peers'
# guests; iperf3: tests/bench/bench_tun.py
APT_PACKAGES=(tshark tcpdump user-mode-linux mmdebstrap nftables iproute2 procps patchelf iputils-ping busybox iperf3)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "setup: not root, so not installing ${missing[*]}; the tests that need them will be skipped" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.ipseclab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$stamp"
fi
# Byte-compile the checkout as pip does an installed package: the project is installed editable, and where
# PYTHONDONTWRITEBYTECODE is set (it is on these machines) every Python process the tests start (endpoints,
# injectors, CLI runs, xdist workers) would otherwise compile each module it imports again (about 0.4 G
# instructions for the decrypt command's imports, measured in tests/bench/bench_decrypt.py)
.venv/bin/python -m compileall -q -j 0 ipseclab testcases tests examples conftest.py >/dev/null

# The UML kernel the lab boots: bookworm's user-mode-linux (6.1) panics on CPUs with AMX, so the lab uses
# Debian unstable's (with its own C library, in the cache; nothing of the host's apt or libc changes).
# A failed download is not fatal here: the lab then falls back to bookworm's kernel, and its start-up
# probe says plainly whether that kernel can run on this CPU.
if [ "$(id -u)" = 0 ]; then
    .venv/bin/ipseclab kernel install || echo "setup: could not install the newer UML kernel (see above)" >&2
    .venv/bin/ipseclab kernel probe || true
fi
