#!/usr/bin/env bash
# One command from a fresh Debian machine to a running web container built from layers:
# installs the system packages, builds skiff, builds the web:v1/web:v2 images and runs web:v1.
# (The cluster — Deployment + NodePort — replaces the single container once it lands.)
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (sudo ./quickstart.sh): containers need namespaces, overlayfs and cgroups" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages=(busybox-static libseccomp-dev pkg-config gcc curl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi

echo "==> building skiff (release)"
cargo build --release --locked -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff

echo "==> building the example images: one layer per instruction"
examples/web/build.sh /usr/local/bin/skiff
skiff image history web:v1

port=${PORT:-8080}
skiff rm -f web >/dev/null 2>&1 || true
echo "==> running web:v1 on 127.0.0.1:${port}"
skiff run -d --name web --network host -e PORT="${port}" --memory 64m web:v1 >/dev/null
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:${port}/" && break
    sleep 0.1
done

cat <<TXT

web:v1 answers on http://127.0.0.1:${port}/ . Try:
  skiff ps                      # the container: a process on this kernel, not a VM
  skiff image history web:v2    # the layers and the instructions that made them
  skiff exec web ps             # the container's own PID namespace
  skiff logs web
  skiff stop web && skiff rm web
TXT
