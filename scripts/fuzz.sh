#!/usr/bin/env bash
# Runs each fuzz target for a while, one after the other, and fails if any
# of them fails (a crasher is written under the package's
# testdata/fuzz/<FuzzName>/ by go test).
#
#   scripts/fuzz.sh [fuzztime]     fuzztime as go test takes it: 30s (default), 2m, 10000x
set -euo pipefail
cd "$(dirname "$0")/.."

T="${1:-30s}"
# Minimising each new interesting input is capped so that large inputs
# (RTP sessions) do not stall the run for a minute each.
MINIMIZE="${FUZZ_MINIMIZE_TIME:-5s}"

targets=(
	"FuzzReader ./engine/mkv"
	"FuzzVerify ./serve/sigv4"
	"FuzzRTPDepacketize ./ingest"
	"FuzzJSONOperations ./serve"
	"FuzzFrameReader ./cluster"
)

failed=()
for t in "${targets[@]}"; do
	read -r name pkg <<<"$t"
	echo "=== $name ($pkg) for $T"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$T" -fuzzminimizetime "$MINIMIZE" "$pkg"; then
		failed+=("$name")
	fi
done

if ((${#failed[@]} > 0)); then
	echo "fuzz: FAILED: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets passed"
