#!/usr/bin/env bash
# Crash and concurrency safety of the store, measured (issue 13). Not part of
# CI: it takes ~15 minutes. Prints its figures; exits non-zero on any failure.
#
#   1. SIGKILL `kiln build hello image` at N random moments of a cold build
#      of examples/hello; after each kill, `kiln verify` over the whole store
#      must find 0 modified or partial entries; the next build must succeed.
#   2. 4 concurrent `kiln build hello` in one store: the recipe runs once,
#      all 4 print the same output.
#   3. `kiln gc` in a loop while the targets rebuild: nothing a build uses
#      is deleted (every build succeeds, verify stays clean).
#
# Usage: bash tests/soak/crash_and_concurrency.sh [KILLS]   (default 50; 0
# skips part 1)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
kills="${1:-50}"
cargo build --quiet --manifest-path "$repo/Cargo.toml" -p kiln
kiln="$repo/target/debug/kiln"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export KILN_HOME="$work/home"
proj="$work/hello"
mkdir -p "$proj"
cp "$repo/examples/hello/"{hello.go,go.mod,kiln.toml} "$proj/"
cd "$proj"

# Warm the toolchain download once, so kills land in builds, not downloads.
"$kiln" -q prefetch --unpack --name go "$(grep -o 'https://[^"]*whl' kiln.toml)" >/dev/null

# How long a cold build takes: the window the kills are drawn from.
start=$(date +%s%N)
"$kiln" -q build hello image --no-link
full_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "cold build of hello + image: ${full_ms} ms"

corrupt=0 failed_after=0
for i in $(seq 1 "$kills"); do
    [[ "$kills" -eq 0 ]] && break
    # A fresh key every round (SOURCE_DATE_EPOCH is part of it): a cold build.
    epoch=$((1000 + i))
    delay_ms=$(( RANDOM * RANDOM % full_ms ))
    "$kiln" -q build hello image --no-link --source-date-epoch "$epoch" >/dev/null 2>&1 &
    pid=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Tools die with kiln (bwrap --die-with-parent); give them a moment.
    sleep 0.2
    if ! "$kiln" -q verify >/dev/null 2>"$work/verify.err"; then
        corrupt=$((corrupt + 1))
        echo "round $i (killed at ${delay_ms} ms): verify failed:"; cat "$work/verify.err"
    fi
    if ! "$kiln" -q build hello image --no-link --source-date-epoch "$epoch" >/dev/null 2>"$work/build.err"; then
        failed_after=$((failed_after + 1))
        echo "round $i: the build after the kill failed:"; cat "$work/build.err"
    fi
done
echo "kill -9 at $kills random moments: $corrupt rounds with a modified or partial entry, $failed_after failed rebuilds"

# 4 concurrent builds of one target in one store.
epoch=99999
for j in 1 2 3 4; do
    "$kiln" build hello --no-link --json --source-date-epoch "$epoch" >"$work/c$j.json" 2>/dev/null &
done
wait
outs=$(cat "$work"/c?.json | grep -o '"path": *"[^"]*"' | sort -u | wc -l)
ran=$(cat "$work"/c?.json | grep -o '"cached": *false' | wc -l)
echo "4 concurrent builds: $outs distinct output(s), the recipe ran $ran time(s)"

# gc concurrent with builds.
gc_fail=0 build_fail=0
( for _ in $(seq 1 20); do "$kiln" -q gc >/dev/null 2>&1 || echo x >>"$work/gcfail"; done ) &
gcpid=$!
for e in 200001 200002 200003; do
    "$kiln" -q build hello image --source-date-epoch "$e" -o "result-$e" >/dev/null 2>"$work/b.err" || { build_fail=$((build_fail + 1)); cat "$work/b.err"; }
done
wait "$gcpid"
[[ -f "$work/gcfail" ]] && gc_fail=$(wc -l <"$work/gcfail")
"$kiln" -q verify >/dev/null || { echo "verify failed after gc + builds"; corrupt=$((corrupt + 1)); }
for e in 200001 200002 200003; do ./"result-$e-hello"/bin/hello >/dev/null || build_fail=$((build_fail + 1)); done
echo "gc x20 during 3 builds: $build_fail failed builds or missing outputs, $gc_fail failed gc runs"

[[ $corrupt -eq 0 && $failed_after -eq 0 && $outs -eq 1 && $ran -eq 1 && $build_fail -eq 0 && $gc_fail -eq 0 ]]
