#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 300) on nightly Rust with
# cargo-fuzz, starting from the seed corpus in fuzz/corpus/<target>. Not in
# CI. Crashes land in fuzz/artifacts/<target>/; each one found becomes a
# regression test beside the code it broke.
#
#   rustup toolchain install nightly && cargo +nightly install cargo-fuzz
#   bash fuzz/run.sh 300
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
for t in unpack manifest lockfile hash; do
    mkdir -p "corpus/$t"
    # A private copy: what libFuzzer adds is not committed.
    work="$(mktemp -d)"
    cp -r "corpus/$t/." "$work/"
    echo "== $t for ${secs}s"
    cargo +nightly fuzz run "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=4096 2>&1 \
        | grep -E "^(#[0-9]+\s+DONE|==[0-9]+==ERROR|SUMMARY|Done [0-9]+ runs)" || true
    rm -rf "$work"
done
