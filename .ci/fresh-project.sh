#!/usr/bin/env bash
# A new project must be able to depend on procwire next to the newest releases of the crates
# users most often share with it. This builds one in target/fresh-project: procwire by path,
# and serde (with derive), libc and socket2 at the newest versions `cargo add` finds. It fails
# when resolution fails, as an exact pin (`=x.y.z`) or a too-narrow range in Cargo.toml would.
# Without the network, `cargo add --offline` takes the newest versions already downloaded.
#
#     bash .ci/fresh-project.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir="$root/target/fresh-project"
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir"
export CARGO_TARGET_DIR="$dir/target"

# procwire's own manifest leaves serde's `derive` feature to its users (its derives come from
# serde_derive): fail if the normal dependency on serde asks for it again.
cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" | python3 -c '
import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "procwire")
bad = [d for d in pkg["dependencies"] if d["name"] == "serde" and d["kind"] is None and "derive" in d["features"]]
sys.exit("procwire asks for serde/derive: use serde_derive for its own derives" if bad else 0)'

# Written by hand, not `cargo init`, which would add it to procwire's workspace; the empty
# [workspace] table makes it a workspace of its own.
mkdir src
touch src/lib.rs
printf '[package]\nname = "fresh-project"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n[workspace]\n\n[dependencies]\n' >Cargo.toml
offline=()
(cd / && cargo info serde) >/dev/null 2>&1 || { offline=(--offline); echo "registry unreachable: offline"; }
add() { cargo add --quiet "${offline[@]}" "$@"; }
add procwire --path "$root"
add serde --features derive
add libc socket2
echo "fresh project's dependencies:"
sed -n '/^\[dependencies\]/,$p' Cargo.toml
cargo generate-lockfile "${offline[@]}"
for crate in procwire serde libc socket2; do
    printf '  resolved %s %s\n' "$crate" "$(cargo pkgid "$crate" | sed 's/.*[@#]//')"
done
cargo check --quiet "${offline[@]}"
echo "a fresh project resolves and builds procwire beside the newest serde, libc and socket2"

# The three programs a newcomer writes from README alone (a keyed server and client with typed
# messages and a read timeout; a queue with two producer and two consumer processes; a pool
# map over 1,000 items), built and run as that project's binaries: they need no list of
# functions, no sentinel and no `None` argument.
mkdir -p src/bin
cp "$root"/.ci/newcomer/*.rs src/bin/
if grep -n 'None\b' src/bin/*.rs | grep -v 'Some(' ; then
    echo "a newcomer program passes None"; exit 1
fi
for program in keyed queue pool; do
    cargo run --quiet "${offline[@]}" --bin "$program"
done
