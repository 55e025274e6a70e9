#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu: runs a Windows program under Wine.
#
# .ci/windows.sh sets it up (packages, prefix, ProcessPrng shim) and points cargo here through
# CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER, so Linux builds never see it. The Wine settings
# come from the environment; the defaults match what .ci/windows.sh makes, so this also works
# by hand after one run of that script:
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=.ci/wine/run.sh \
#   cargo test --target x86_64-pc-windows-gnu --test windows
set -u
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
export WINEPREFIX="${WINEPREFIX:-$target_dir/wine/prefix}"
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
if [ ! -f "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
    echo "run.sh: no Wine prefix with the ProcessPrng shim at $WINEPREFIX; run .ci/windows.sh once" >&2
    exit 1
fi
wine "$@"
status=$?
if [ "$status" -eq 53 ]; then
    echo "run.sh: exit status 53 is what Wine gives when a DLL import is missing (ProcessPrng?)" >&2
fi
exit "$status"
