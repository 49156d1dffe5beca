#!/bin/bash
# The cgroup and runtime tests on a bare, offline cgroup v2 host (this project's CI machine is v1 hybrid).
#
#   scripts/bare-v2-host.sh collect DIR   # here, on a Debian host where `make venv` ran: tools, libraries, wheels
#   scripts/bare-v2-host.sh run DIR [TESTS...]   # there, as root, in a copy of the checkout with DIR beside it
#
# "run" installs only what the host lacks (busybox, runc, docker-init, ip, nft and their libraries), makes a venv
# over the host's Python (which must have pytest, aiohttp and uvloop; the rest comes as wheels) and runs pytest.
set -euo pipefail
cmd=${1:?collect|run} dir=$(realpath -m "${2:?a directory}")
shift 2
case $cmd in
collect)
    mkdir -p "$dir/lib" "$dir/whl"
    cp /bin/busybox /usr/sbin/runc /usr/bin/tini-static /usr/sbin/nft /bin/ip "$dir/"
    for lib in $(ldd /usr/sbin/runc /usr/sbin/nft /bin/ip | awk '/=>/ {print $3}' | grep -v '/libc\.so') \
               /usr/lib/x86_64-linux-gnu/libfuse3.so.3; do
        cp -L "$lib" "$dir/lib/"
    done
    py=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    pins=$(.venv/bin/pip list --format freeze | grep -iE '^(isal|zstandard|pyroute2|mfusepy)==')
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVERSION:-$py}" \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dir/whl" $pins
    ;;
run)
    [ -e /sys/fs/cgroup/cgroup.controllers ] || { echo "not a cgroup v2 host" >&2; exit 1; }
    [ -e /bin/busybox ] || cp "$dir/busybox" /bin/busybox
    [ -e /usr/sbin/runc ] || cp "$dir/runc" /usr/sbin/runc
    command -v docker-init >/dev/null || cp "$dir/tini-static" /usr/bin/docker-init
    for tool in ip nft; do command -v $tool >/dev/null || cp "$dir/$tool" /usr/bin/; done
    for lib in "$dir"/lib/*; do
        ldconfig -p | grep -q "$(basename "$lib") " || cp "$lib" /usr/lib/x86_64-linux-gnu/
    done
    ldconfig
    venv=${VENV:-/tmp/sampan-v2-venv}
    python3 -m venv --system-site-packages "$venv"
    # the host's python may itself be a venv, whose packages a nested venv does not see
    python3 -c 'import site; print(site.getsitepackages()[0])' > "$("$venv/bin/python" -c \
        'import site; print(site.getsitepackages()[0])')/host.pth"
    "$venv/bin/pip" install -q --no-index --no-deps "$dir"/whl/*.whl
    "$venv/bin/pip" install -q --no-index --no-deps --no-build-isolation -e .
    "$venv/bin/python" -m compileall -q src
    exec "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE "${@:-tests/runtime}"
    ;;
*) echo "usage: $0 collect|run DIR [TESTS...]" >&2; exit 2 ;;
esac
