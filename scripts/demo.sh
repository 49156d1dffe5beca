#!/usr/bin/env bash
# The main job, end to end: bootstrap busybox, list it, save and re-load it, and check the store.
set -euo pipefail
demo_dir=$(mktemp -d)
trap 'rm -rf "$demo_dir"' EXIT
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
echo
echo "demo: OK"
