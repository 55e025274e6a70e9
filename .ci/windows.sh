#!/usr/bin/env bash
# Windows tests under Wine: builds procwire for x86_64-pc-windows-gnu and runs, under Wine, its
# unit tests, tests/windows.rs (named pipes and TCP between Windows processes, shared memory
# Value/Array and handle passing between them), tests/tokio_pipe.rs (procwire::tokio over named
# pipes, with blocking peers), the suites that start child processes
# (process, pool, queue, manager, shm: listed in process_tests below), its doc tests,
# the exchange example (README's main job) over a named pipe, the seeds' examples with child
# processes (squares, queue_squares, pool_squares, manager_list), and the `procwire` command's tests
# (cli/tests: `procwire bench --transports pipe,tcp ... --json` with its JSON checked, and
# `procwire echo` on a pipe: address with `procwire ping` against it, a wrong key refused).
#
# Needs only the Rust toolchain (rustup), gcc and python3 on Debian 12; installs the rest itself
# (mingw-w64 and Wine 8.0 from Debian, the Rust target). Everything it makes lives under the
# target directory ($CARGO_TARGET_DIR or target/): the ProcessPrng shim DLL and the Wine prefix
# in <target>/wine/. Re-runs reuse both. The Windows linker and runner are set through
# CARGO_TARGET_X86_64_PC_WINDOWS_GNU_{LINKER,RUNNER} for this run only: no .cargo/config.toml.
#
#   bash .ci/windows.sh                         # unit tests, tests/windows.rs and tokio_pipe.rs, doc tests, example, cli
#   bash .ci/windows.sh -- <test name filter>   # extra arguments go to the first test run
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export CARGO_TERM_COLOR=never
target=x86_64-pc-windows-gnu
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
wine_dir="$target_dir/wine"
# Upper bound for the test run itself (not the build): a hung Wine must not hang CI.
test_limit="${PROCWIRE_WINE_TEST_LIMIT:-900}"

step() { printf '\n== %s\n' "$*"; }
run() {
    printf '+ %s\n' "$*"
    "$@"
}
# Wine's helper processes inherit the standard streams of whatever starts them and outlive it,
# which would keep a CI log pipe open forever: anything that may start them gets /dev/null.
quiet() {
    printf '+ %s  (stdio on /dev/null)\n' "$*"
    "$@" </dev/null >/dev/null 2>&1
}

step "packages"
bash .ci/packages.sh
if ! rustup target list --installed | grep -qx "$target"; then
    run rustup target add "$target"
fi
WINEDEBUG=-all wine --version
x86_64-w64-mingw32-gcc --version | head -n1
cargo --version

export WINEPREFIX="$wine_dir/prefix"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$repo/.ci/wine/run.sh"
echo "WINEPREFIX=$WINEPREFIX WINEDEBUG=$WINEDEBUG WINEDLLOVERRIDES=$WINEDLLOVERRIDES"
echo "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=$CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER"
echo "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER"

step "ProcessPrng shim (Wine 8.0 has no bcryptprimitives.dll; Rust's std needs it)"
mkdir -p "$wine_dir"
shim_src=.ci/wine/processprng.c
shim="$wine_dir/bcryptprimitives.dll"
if [ ! -f "$shim" ] || [ "$shim_src" -nt "$shim" ]; then
    run x86_64-w64-mingw32-gcc -shared -O2 -s -o "$shim.tmp" "$shim_src" -ladvapi32
    mv "$shim.tmp" "$shim"
else
    echo "$shim is up to date"
fi

step "Wine prefix"
# A prefix counts as made once the marker exists; an interrupted boot is started over.
marker="$wine_dir/prefix.ready"
if [ ! -f "$marker" ] && [ -e "$WINEPREFIX" ]; then
    quiet wineserver -k || true
    run rm -rf "$WINEPREFIX"
fi
mkdir -p "$WINEPREFIX"
# One persistent server for the whole run, so that each test process does not start its own;
# it and everything Wine started under it go at exit.
if ! quiet wineserver -p; then
    echo "a wineserver already runs for this prefix (an earlier run that did not finish?); using it"
fi
trap 'printf "+ wineserver -k\n"; wineserver -k </dev/null >/dev/null 2>&1 || true' EXIT
# Makes the prefix the first time (4-6 s); later only starts Wine's services (under a second).
# Either way they start here, with /dev/null for stdio, and not from a test with cargo's pipes.
quiet wine wineboot --init
sys32="$WINEPREFIX/drive_c/windows/system32"
if ! cmp -s "$shim" "$sys32/bcryptprimitives.dll"; then
    run cp "$shim" "$sys32/bcryptprimitives.dll"
fi
touch "$marker"
echo "prefix ready"

# The suites with child processes (Process, start/waitall/Exchange, wait over sentinels, Pool,
# Queue and Manager handed to children, shared-memory connections over named pipes), whose
# children are the test binary run again.
process_tests=(--test process --test pool --test queue --test manager --test registered --test no_test_entry
    --test shm --test shm_consumers)

# The seeds' examples, which start child processes (Process, start, Pool, Manager, Queue).
seed_examples=(squares queue_squares pool_squares manager_list)

step "build the tests, the examples and the procwire command for $target"
run cargo test --target "$target" --all-features --lib --test windows --test tokio_pipe "${process_tests[@]}" --no-run
run cargo build --target "$target" --all-features --example exchange
for ex in "${seed_examples[@]}"; do
    run cargo build --target "$target" --all-features --example "$ex"
done
run cargo test --target "$target" --all-features -p procwire-cli --no-run

step "unit tests, tests/windows.rs and tests/tokio_pipe.rs under Wine (at most ${test_limit}s)"
run timeout --kill-after=10 "$test_limit" \
    cargo test --target "$target" --all-features --lib --test windows --test tokio_pipe "$@"

step "the suites with child processes under Wine (at most ${test_limit}s)"
# Two tests at a time: every message goes through the one wineserver, and a dozen tests with
# their children at once slow each other past their own time limits. Three queue tests that
# start no child and push tens of thousands of messages through one process's queue server
# take minutes each at Wine's ~10^4 pipe messages a second; they run on Unix.
run timeout --kill-after=10 "$test_limit" \
    cargo test --target "$target" --all-features "${process_tests[@]}" -- --test-threads=2 \
    --skip remote_handles_in_one_process_share_the_work \
    --skip joins_waiting_on_a_connection_are_answered_by_one_joined_with_their_count \
    --skip gets_that_time_out_in_threads_sharing_a_handle_lose_and_repeat_nothing

step "doc tests under Wine"
run timeout --kill-after=10 "$test_limit" cargo test --target "$target" --all-features --doc

step "main job under Wine: the exchange example over a named pipe"
run timeout --kill-after=10 "$test_limit" cargo run --target "$target" --all-features --example exchange

step "the seeds' examples under Wine: ${seed_examples[*]}"
for ex in "${seed_examples[@]}"; do
    run timeout --kill-after=10 "$test_limit" cargo run --target "$target" --all-features --example "$ex"
done

step "the procwire command under Wine: bench JSON over pipe and tcp, echo and ping on a pipe: address"
# cli/tests run procwire.exe as a user would: `bench --transports pipe,tcp --sizes 16 --duration
# 50ms --repeat 1 --json` with every cell and field checked (not speed: Wine's pipes go through
# wineserver), and `echo --listen pipe:...` with `ping` against it, a wrong key exiting with 3.
# Wine 8's CreateProcess sometimes fails with ERROR_INTERNAL_ERROR (os error 1359) when the
# machine is loaded; that one failure, and only it, earns a second run, said out loud.
cli_log=$(mktemp)
# Into a file, not a pipe: Wine's helpers could hold a pipe open (see quiet()).
status=0
run timeout --kill-after=10 "$test_limit" cargo test --target "$target" --all-features -p procwire-cli \
    >"$cli_log" 2>&1 || status=$?
cat "$cli_log"
if [ "$status" -ne 0 ]; then
    grep -q "os error 1359" "$cli_log" || exit "$status"
    echo "Wine's CreateProcess failed with ERROR_INTERNAL_ERROR (os error 1359): running the cli tests once more"
    run timeout --kill-after=10 "$test_limit" cargo test --target "$target" --all-features -p procwire-cli
fi
