#!/usr/bin/env bash
# The main job, end to end: bootstrap busybox, list it, save and re-load it, and check the store.
set -euo pipefail
demo_dir=$(mktemp -d)
cleanup() { umount "$demo_dir/bundle/rootfs" 2>/dev/null || true; rm -rf "$demo_dir"; }
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
echo
echo "demo: OK"
