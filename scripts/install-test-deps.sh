#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (tshark for
# captures, iproute2 for network namespaces, systemd's tools for the unit and
# notify checks). Run as root on Debian; CI calls it from .ci/run.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: run as root (sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
packages=(tshark iproute2 systemd python3 procps socat openssl hostapd wpasupplicant chromium fonts-dejavu-core gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-base linuxptp alsa-utils genimage mtools dosfstools e2fsprogs fakeroot fdisk g++-aarch64-linux-gnu)
# trixie ships systemd-networkd as its own package (bookworm has it inside systemd).
if apt-cache show systemd-networkd >/dev/null 2>&1; then packages+=(systemd-networkd); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-test-deps: all present (${packages[*]})"
fi
