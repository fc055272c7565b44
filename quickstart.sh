#!/usr/bin/env bash
# One command from a fresh Debian machine to a cluster running the web example: installs the
# system packages, builds skiff and the layered web:v1/web:v2 images, starts `skiff server`
# (API server, controllers, scheduler, node agent and service proxy) and deploys web:v1 with
# kubectl behind a NodePort Service.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (sudo ./quickstart.sh): containers need namespaces, overlayfs and cgroups" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages=(busybox-static libseccomp-dev pkg-config gcc curl containernetworking-plugins iproute2 nftables conntrack)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
fi
command -v kubectl >/dev/null || { echo "kubectl is needed (it is the user interface)" >&2; exit 1; }

echo "==> building skiff (release)"
cargo build --release --locked -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff

echo "==> building the example images: one layer per instruction"
examples/web/build.sh /usr/local/bin/skiff
skiff image history web:v1

data=${SKIFF_DATA_DIR:-/var/lib/skiff}
pidfile=/run/skiff-server.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "==> skiff server already running (pid $(cat "$pidfile"))"
else
    echo "==> starting skiff server (log: /var/log/skiff-server.log)"
    nohup skiff --data-dir "$data" server >/var/log/skiff-server.log 2>&1 &
    echo $! >"$pidfile"
fi
export KUBECONFIG="$data/kubeconfig.yaml"
for _ in $(seq 1 100); do
    [ -f "$KUBECONFIG" ] && kubectl get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.2
done
for _ in $(seq 1 100); do
    kubectl get nodes 2>/dev/null | grep -q " Ready" && break
    sleep 0.2
done
kubectl get nodes -o wide

echo "==> deploying web:v1 (3 replicas) behind NodePort 30080"
kubectl apply -f examples/web/web.yaml
kubectl rollout status deployment/web --timeout=120s
kubectl get pods,svc -o wide
for _ in $(seq 1 50); do curl -fsS --max-time 2 http://127.0.0.1:30080/ >/dev/null 2>&1 && break; sleep 0.2; done
for _ in 1 2 3 4 5 6; do curl -fsS --max-time 5 http://127.0.0.1:30080/; done

cat <<TXT

web:v1 answers on http://127.0.0.1:30080/ (any node address works too), served by 3 pods.
Try (export KUBECONFIG=$KUBECONFIG):
  kubectl scale deployment web --replicas=9          # converges to 9 pods
  kubectl delete pod -l app=web --wait=false          # new pods appear, unasked
  kubectl set image deployment/web web=web:v2         # rolling update to v2, no request lost
  while sleep 0.2; do curl -s 127.0.0.1:30080; done   # watch it happen (in another shell)
  kubectl rollout history deployment/web
  kubectl rollout undo deployment/web                 # back to v1
  kubectl logs deploy/web; kubectl exec deploy/web -- ps
Stop: kill \$(cat $pidfile); wipe containers and the pod network: skiff reset
TXT
