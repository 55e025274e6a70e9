#!/usr/bin/env bash
# The Debian packages CI needs beyond the Rust toolchain, gcc and python3: mingw-w64 (the C
# compiler for the Windows target: ring's build script needs it for the Windows type-check
# too, not only for the Wine run) and Wine 8.0 with its 64-bit loader. Installs what is
# missing; does nothing when all are there.
set -euo pipefail
missing=()
for p in gcc-mingw-w64-x86-64 wine wine64; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    printf '+ apt-get update; apt-get install %s\n' "${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends gcc-mingw-w64-x86-64 wine wine64
else
    echo "gcc-mingw-w64-x86-64, wine and wine64 are installed"
fi
