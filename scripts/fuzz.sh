#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a fixed time each, one after
# another, and fails if any of them crashes (docs/fuzzing.md). Installs
# cargo-fuzz when it is missing. The fuzz crate needs a nightly toolchain
# (sanitizers, coverage instrumentation); nothing else here does.
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TARGETS    space-separated targets (default: all, from `cargo fuzz list`)
#   FUZZ_TOOLCHAIN  the nightly toolchain to use (default: nightly)
#
# Each run starts from the committed seeds (fuzz/seeds/TARGET) and what
# earlier runs found (fuzz/corpus/TARGET, not committed); a crash leaves its
# input in fuzz/artifacts/TARGET. Each run's libFuzzer log is printed
# (ending with its final stats) and kept in fuzz/logs/TARGET.log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-30}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
cargo=(cargo "+$toolchain")

if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
    echo "==== installing cargo-fuzz ===="
    cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$("${cargo[@]}" fuzz list)}

echo "==== building the fuzz targets ===="
"${cargo[@]}" fuzz build

failed=()
for t in $targets; do
    echo
    echo "==== $t: ${seconds}s ===="
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/logs/$t.log"
    mkdir -p fuzz/logs
    # -jobs=1 runs the fuzzer in one child process whose output goes to
    # fuzz-0.log in the working directory (libFuzzer prints it when the job
    # ends); it is kept in fuzz/logs.
    rm -f fuzz-0.log
    extra=()
    if [ "$t" = api ]; then
        # The api target keeps a store across inputs (fuzz_targets/api.rs),
        # so every input ends with more allocated than it started with and
        # libFuzzer would scan for leaks after each one: ten times slower.
        extra+=(-detect_leaks=0)
    fi
    status=0
    "${cargo[@]}" fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -timeout=30 \
        -print_final_stats=1 "${extra[@]}" || status=$?
    if [ -f fuzz-0.log ]; then
        mv fuzz-0.log "$log"
    fi
    echo "corpus: $(find "fuzz/corpus/$t" -type f | wc -l) files"
    if [ "$status" -ne 0 ]; then
        echo "$t FAILED (exit $status); inputs in fuzz/artifacts/$t/, log in $log"
        failed+=("$t")
    fi
done

echo
if [ ${#failed[@]} -ne 0 ]; then
    echo "crashed: ${failed[*]}"
    exit 1
fi
echo "all targets ran ${seconds}s without a crash"
