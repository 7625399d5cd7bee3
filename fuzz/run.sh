#!/usr/bin/env bash
# Bounded fuzzing of wharf's pure parsers with cargo-fuzz (libFuzzer).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 120 s for each of payload, reference, signature and config, one
# after the other. Not part of CI. Environment:
#   FUZZ_SECONDS    seconds per target (the first argument wins)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer, default "none": the code under test
#                   is safe Rust (unsafe_code = forbid), so ASan only slows
#                   it down; "address" works too
#   CARGO_TARGET_DIR  where to build (default fuzz/target)
#
# Stable rustc is enough: cargo-fuzz's nightly-only flags are allowed with
# RUSTC_BOOTSTRAP=1, set here. cargo-fuzz is installed from crates.io when
# missing. Seeds come from tests/fixtures (fuzz/make-seeds.sh, fuzz/seeds/);
# what libFuzzer finds goes to fuzz/corpus/<target>/ (not committed), a crash
# to fuzz/artifacts/<target>/. Each target's figures are printed and appended
# to fuzz/runs/log.tsv. Exit status is 1 when any target crashed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
seconds=${1:-${FUZZ_SECONDS:-120}}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(payload reference signature config)
sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${CARGO_TARGET_DIR:-$here/target}
export RUSTC_BOOTSTRAP=1

case $seconds in '' | *[!0-9]*) echo "run.sh: seconds must be a number, got '$seconds'" >&2; exit 2 ;; esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || exit 2
fi

"$here/make-seeds.sh" || exit 2

cd "$root" || exit 2
fuzz=(cargo fuzz)
common=(--fuzz-dir "$here" --sanitizer "$sanitizer" --target-dir "$target_dir")
echo "== building ${targets[*]} (sanitizer: $sanitizer, target dir: $target_dir)"
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${common[@]}" "$t" || exit 2
done

mkdir -p "$here/runs"
log="$here/runs/log.tsv"
[ -s "$log" ] || printf 'date\ttarget\tseconds\texecutions\tcrashes\tcorpus\n' >"$log"
total_execs=0
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus="$here/corpus/$t"
  artifacts="$here/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  out="$here/runs/$t.log"
  before=$(find "$artifacts" -type f | wc -l)
  started=$SECONDS
  echo "== fuzzing $t for ${seconds}s (log: $out)"
  # First corpus dir receives new inputs; the seeds dir is read only.
  "${fuzz[@]}" run "${common[@]}" "$t" "$corpus" "$here/seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"$out" 2>&1
  status=$?
  elapsed=$((SECONDS - started))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$out" | tail -1 | tr -d '#')
  after=$(find "$artifacts" -type f | wc -l)
  crashes=$((after - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes="?"  # libFuzzer failed without writing an artifact: see the log
  fi
  files=$(find "$corpus" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$elapsed" "${execs:-0}" "$crashes" "$files" >>"$log"
  total_execs=$((total_execs + ${execs:-0}))
  summary+=("$(printf '%-10s %5ss %12s executions  %s crashes  %s corpus files' "$t" "$elapsed" "${execs:-0}" "$crashes" "$files")")
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "!! $t failed (exit $status); last lines of $out:"
    grep -E 'panicked|Test unit written|SUMMARY|ERROR' "$out" | head -5
  fi
done

echo "== summary (at most ${seconds}s per target)"
printf '%s\n' "${summary[@]}"
echo "total: $total_execs executions"
exit "$failed"
