#!/usr/bin/env bash
# The C parser (csvault/csvio/_csvblocks.c, with the column profile of _profile.c) under
# AddressSanitizer and UBSan: built
# into a temporary directory (the package's own build is left alone), loaded through
# CSVAULT_FASTCSV_MODULE_DIR, then tests/csvio's differential tests run against it with
# CSVAULT_TEST_EXAMPLES times their Hypothesis examples. Then atheris fuzzes it:
# FUZZ_SECONDS guided by coverage (0: no fuzzing; needs the fuzz extra), then half as
# long under ASan from the inputs it kept. Needs gcc (with libasan and libubsan) and
# Python's headers; make sanitize runs it in the project's .venv. A failing input the
# fuzzer finds is left in var/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
python="${PYTHON:-.venv/bin/python}"
export CSVAULT_TEST_EXAMPLES="${CSVAULT_TEST_EXAMPLES:-16}"
fuzz_seconds="${FUZZ_SECONDS:-40}"

build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$("$python" -c 'import importlib.machinery as m; print(m.EXTENSION_SUFFIXES[0])')"
module="$build/_csvblocks$suffix"
flags=(-shared -fPIC -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1
  -Wall -Wextra -Werror -I"$include" -DOUT_FIRST_CAP=1 -DBLOCKS_FIRST_CAP=1 -DTABLE_FIRST_CAP=2)
sources=(csvault/csvio/_csvblocks.c csvault/csvio/_profile.c)
echo "== building $module with ASan and UBSan"
gcc "${flags[@]}" -fsanitize=address,undefined "${sources[@]}" -o "$module"
if ! nm -D "$module" | grep -q __asan_report || ! nm -D "$module" | grep -q __ubsan_handle; then
  echo "c-sanitize: $module is not instrumented" >&2
  exit 1
fi

# The Python binary is not built with ASan: its runtime must be loaded first.
libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
  echo "c-sanitize: gcc has no libasan.so (Debian: libasan8, which gcc depends on)" >&2
  exit 1
fi
sanitized() {
  # detect_leaks=0: CPython keeps memory to the end of the process on purpose.
  # PYTHONMALLOC=malloc: every Python object (the parser's input) gets ASan's redzones.
  LD_PRELOAD="$libasan" PYTHONMALLOC=malloc \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  CSVAULT_FASTCSV_MODULE_DIR="$build" HYPOTHESIS_PROFILE=sanitize \
  "$@"
}

# Proof that the build under test is the sanitized one, with the ASan runtime active.
sanitized "$python" - "$module" <<'PY'
import os
import sys

from csvault.csvio import fastcsv

loaded = os.path.realpath(fastcsv._csvblocks.__file__)
assert loaded == os.path.realpath(sys.argv[1]), f"loaded {loaded}, not {sys.argv[1]}"
with open("/proc/self/maps") as maps:
    assert "libasan" in maps.read(), "the ASan runtime is not loaded"
print(f"c-sanitize: the C parser under test is {loaded}")
PY

echo "== differential tests, $CSVAULT_TEST_EXAMPLES times the examples"
log="$build/pytest.log"
status=0
sanitized "$python" -m pytest -q -p no:cacheprovider --capture=sys \
  --hypothesis-show-statistics \
  tests/csvio/test_fastcsv.py tests/csvio/test_csvblocks_args.py tests/csvio/test_profile.py \
  >"$log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  cat "$log"
  echo "c-sanitize: the differential tests failed under ASan/UBSan (exit $status)" >&2
  exit 1
fi
tail -n 1 "$log"
examples="$(grep -Eo '[0-9]+ passing,' "$log" | awk '{n += $1} END {print n + 0}')"
echo "differential tests: $examples Hypothesis examples, $((SECONDS - started)) s"

if [ "$fuzz_seconds" -le 0 ]; then
  echo "c-sanitize: passed in $((SECONDS - started)) s (no fuzzing)"
  exit 0
fi
if ! "$python" -c 'import atheris' 2>/dev/null; then
  echo "c-sanitize: atheris is not installed (the fuzz extra; make sanitize installs it)" >&2
  exit 1
fi
# libFuzzer's coverage and gcc's ASan runtime do not mix (the runtime's coverage
# hooks are stubs that take precedence): guided fuzzing runs a UBSan build whose
# comparisons feed libFuzzer (trace-cmp, with -use_value_profile); then the ASan
# build runs every input it kept, and mutations of them, without guidance.
mkdir -p "$build/fuzz" "$build/corpus" var/fuzz
echo "== fuzzing a UBSan build for $fuzz_seconds s (atheris)"
gcc "${flags[@]}" -fsanitize=undefined -fsanitize-coverage=trace-cmp \
  "${sources[@]}" -o "$build/fuzz/_csvblocks$suffix"
fuzz_log="$build/fuzz.log"
status=0
PYTHONPATH=. CSVAULT_FASTCSV_MODULE_DIR="$build/fuzz" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$python" tests/csvio/fuzz_fastcsv.py -max_total_time="$fuzz_seconds" -use_value_profile=1 \
  -artifact_prefix=var/fuzz/ -print_final_stats=1 "$build/corpus" >"$fuzz_log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  grep -v "^INFO: Instrumenting" "$fuzz_log" | tail -n 60
  echo "c-sanitize: the fuzzer found a failing input; run it again with" \
    "PYTHONPATH=. $python tests/csvio/fuzz_fastcsv.py var/fuzz/<file named above>" >&2
  exit 1
fi
grep -E "^Done|stat::number_of_executed_units|stat::new_units_added" "$fuzz_log" || true
kept="$(find "$build/corpus" -type f | wc -l)"
asan_seconds=$(((fuzz_seconds + 1) / 2))
echo "== the $kept inputs the fuzzer kept, then their mutations for $asan_seconds s," \
  "under ASan and UBSan"
status=0
sanitized env PYTHONPATH=. "$python" tests/csvio/fuzz_fastcsv.py -max_total_time="$asan_seconds" \
  -artifact_prefix=var/fuzz/ -print_final_stats=1 "$build/corpus" >"$fuzz_log" 2>&1 || status=$?
if [ "$status" != 0 ]; then
  grep -v "^INFO: Instrumenting" "$fuzz_log" | tail -n 60
  echo "c-sanitize: an input fails under ASan/UBSan (saved in var/fuzz/, named above)" >&2
  exit 1
fi
grep -E "^Done|stat::number_of_executed_units" "$fuzz_log" || true
echo "c-sanitize: passed in $((SECONDS - started)) s"
