#!/usr/bin/env bash
# The main job, end to end: bootstrap busybox, list it, save and re-load it, and check the store.
set -euo pipefail
demo_dir=$(mktemp -d)
# The demo's own storage roots: it leaves nothing behind (`system reset` removes containers, network interfaces,
# the firewall table and mounts with the store).
export SAMPAN_ROOT="$demo_dir/root" SAMPAN_RUNROOT="$demo_dir/run"
cleanup() {
  umount "$demo_dir/bundle/rootfs" 2>/dev/null || true
  sampan system reset -f >/dev/null 2>&1 || true
  rm -rf "$demo_dir"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step sampan --version
step sampan image bootstrap busybox
step sampan images
step sampan image inspect --format '{{.Id}} {{.Os}}/{{.Architecture}} layers={{len .RootFS.Layers}}' busybox
step sampan history busybox
step sampan save -o "$demo_dir/busybox.tar" busybox
step sampan rmi busybox
step sampan load -i "$demo_dir/busybox.tar"
step sampan images --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'
step sampan system df
step sampan system check

# The runtime: the busybox image's layers as an overlay root, runc's default spec, one container.
lower=$(sampan image inspect --format '{{.GraphDriver.Data.LowerDir}}' busybox)
mkdir -p "$demo_dir/bundle/rootfs" "$demo_dir/upper" "$demo_dir/work"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$demo_dir/upper,workdir=$demo_dir/work" "$demo_dir/bundle/rootfs"
(cd "$demo_dir/bundle" && sampan-runc spec)
python3 - "$demo_dir/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"].update(terminal=False, args=["sh", "-c", "echo hello from $(hostname): $(id)"])
config["hostname"] = "sampan-demo"
json.dump(config, open(path, "w"), indent=2)
PY
step sampan-runc --root "$demo_dir/state" run --bundle "$demo_dir/bundle" demo

# Containers: one in the foreground, one in the background with logs, exec and stop, and a memory limit.
step sampan run --rm busybox sh -c 'echo hello from $(hostname): $(id)'
step sampan run -d --name demo-web busybox sh -c 'trap "echo bye; exit 0" TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done'
sleep 1
step sampan ps
step sampan logs --tail 3 demo-web
step sampan exec demo-web sh -c 'echo exec in $(hostname): $(cat /proc/1/cmdline | tr "\0" " ")'
step sampan stop demo-web
step sampan ps -a --filter name=demo-web
step sampan rm demo-web
printf '\n\033[1m$ sampan run --rm -m 32m busybox sh -c <allocate forever>\033[0m\n'
set +e
sampan run --rm -m 32m busybox sh -c 'x=a; while true; do x=$x$x; done'
code=$?
set -e
echo "exit status $code (the OOM killer ended it: 137 expected)"
[ "$code" = 137 ]

# The container's own /proc: its memory limit, not the host's.
step sampan run --rm -m 64m busybox head -1 /proc/meminfo

# A user network: a web server reached by name from another container, and through a port published in the kernel.
step sampan network create demo-net
step sampan run -d --name demo-srv --network demo-net -p 127.0.0.1::80 busybox sh -c \
  'mkdir -p /www && echo "hello from demo-srv" > /www/index.html && exec httpd -f -p 80 -h /www'
step sampan run --rm --network demo-net busybox sh -c \
  'for i in $(seq 50); do wget -qO- http://demo-srv/ 2>/dev/null && exit 0; sleep 0.1; done; exit 1'
step sampan port demo-srv 80
published=$(sampan port demo-srv 80 | head -1)
printf '\n\033[1m$ (from the host) GET http://%s/\033[0m\n' "$published"
python3 -c "import sys, urllib.request; print(urllib.request.urlopen('http://' + sys.argv[1] + '/', timeout=5).read().decode().strip())" "$published"
step sampan rm -f demo-srv
step sampan network rm demo-net
step sampan system check
echo
echo "demo: OK"
