#!/usr/bin/env bash
# Install the Debian packages sampan and its tests need, only when some are missing (apt-get update is slow).
set -euo pipefail
packages=(python3 python3-venv python3-dev gcc tar busybox-static debootstrap docker.io skopeo umoci runc
          docker-registry iproute2 kmod tini apache2-utils fuse3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(id -u)" != 0 ]; then
  echo "sampan: make must run as root (it installs Debian packages and uses namespaces)" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
