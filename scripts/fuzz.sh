#!/usr/bin/env bash
# Fuzzes one parser of untrusted bytes with libFuzzer + AddressSanitizer:
#   bash scripts/fuzz.sh TARGET SECONDS      (TARGET: pickle pth safetensors tar shardURL image tokenizer spec onnx embeddingsRequest, or all)
# Seeds come from the test fixtures; the growing corpus stays in .build-fuzz/corpus/TARGET. A crash,
# sanitizer report or timeout (10 s per input) stops the run with exit 1 and leaves the input in
# .build-fuzz/crashes/TARGET/: add it to Tests/FuzzTests/Regressions/TARGET/ with the fix.
# Prints one summary line per target: executions, executions per second, corpus size, new crashes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
targets=(pickle pth safetensors tar shardURL image tokenizer spec onnx embeddingsRequest)
usage() { echo "usage: bash scripts/fuzz.sh TARGET SECONDS   (TARGET: ${targets[*]} or all)" >&2; exit 2; }
[ $# -eq 2 ] || usage
case "$2" in ''|*[!0-9]*|0) usage ;; esac  # libFuzzer reads 0 as "no time limit"
if [ "$1" = all ]; then run=("${targets[@]}"); else
  [[ " ${targets[*]} " == *" $1 "* ]] || usage
  run=("$1")
fi
secs=$2
bash scripts/setup.sh
out=.build-fuzz
echo "== building clipkit-fuzz (libFuzzer + AddressSanitizer)"
mkdir -p "$out/logs"
# One -sanitize flag with both (swiftc keeps only the last of several, so SwiftPM's --sanitize twice
# would drop coverage); C and C++ get coverage and ASan. SwiftPM's own --sanitize fuzzer makes it link
# with libFuzzer's main instead of the executable's entry point.
san=(--sanitize fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address -Xcxx -fsanitize=fuzzer-no-link,address)
if ! swift build --build-path "$out" --product clipkit-fuzz "${san[@]}" -Xswiftc -DCLIPKIT_FUZZING > "$out/logs/build.log" 2>&1; then
  grep -E "error:" "$out/logs/build.log" | head -20 >&2 || tail -20 "$out/logs/build.log" >&2
  echo "fuzz: building the harness failed (log: $out/logs/build.log)" >&2
  exit 1
fi
bin=$(swift build --build-path "$out" --show-bin-path "${san[@]}")/clipkit-fuzz
[ -x "$bin" ] || { echo "fuzz: the harness did not build" >&2; exit 1; }

# Real files of each format from the fixtures (small ones: libFuzzer's max input length follows them).
seeds() {
  local t=$1 dir=$2 f
  mkdir -p "$dir"
  case $t in
    pickle) for f in Tests/TorchTests/Fixtures/*.pth Tests/ModelTests/Fixtures/tiny_siglip_tao.pth; do
              unzip -p "$f" '*data.pkl' > "$dir/$(basename "$f").pkl" 2>/dev/null || true; done ;;
    pth) cp Tests/TorchTests/Fixtures/*.pth "$dir/" ;;
    safetensors) find Tests -name '*.safetensors' -size -64k -exec cp {} "$dir/" \; ;;
    tar) find Tests/DataTests/Fixtures -name '*.tar' -exec cp {} "$dir/" \; ;;
    shardURL) printf 's3://AK:se%%2Fc@b/k-{0..2}.tar?endpoint=http://127.0.0.1:9000&region=eu-west-1\nhttps://u:p@h/x.tar?X-Amz-Signature=ab\npipe:cat a.tar\n\0[default]\naws_access_key_id = A\n[profile p]\nregion = r\nendpoint_url = http://e\n' > "$dir/list" ;;
    image) cp Tests/ImagingTests/Fixtures/images/* Tests/ImagingTests/Fixtures/bad/* "$dir/" ;;
    tokenizer) cp Tests/TokenizerTests/Fixtures/bert_wordpiece/tokenizer.json "$dir/bert.json"
               cp Tests/TokenizerTests/Fixtures/bytelevel_bpe/tokenizer.json "$dir/bytelevel.json" ;;
    spec) cp Tests/SpecTests/Fixtures/*.yaml "$dir/"
          printf 'results_dir: /tmp/r\ntrain:\n  num_epochs: 3\n\0train.optim.betas=[0.9,0.99]\nmodel.type=${results_dir}\n' > "$dir/overrides.yaml" ;;
    onnx) cp Tests/DeployTests/Fixtures/*.onnx "$dir/" ;;
    embeddingsRequest)
      printf '{"model": "m", "input": ["a photo of a cat", "data:image/png;base64,%s"], "encoding_format": "base64"}' \
        "$(base64 -w0 Tests/ImagingTests/Fixtures/images/$(ls Tests/ImagingTests/Fixtures/images | grep -m1 '\.png$'))" > "$dir/mixed.json"
      printf '{"model": "m", "input": "  one text  "}' > "$dir/one.json" ;;
  esac
  # Inputs that once crashed stay in the corpus.
  [ -d "Tests/FuzzTests/Regressions/$t" ] && find "Tests/FuzzTests/Regressions/$t" -type f ! -name '*.md' -exec cp {} "$dir/" \;
  return 0
}

status=0
summary=()
for t in "${run[@]}"; do
  corpus=$out/corpus/$t crashes=$out/crashes/$t log=$out/logs/$t.log
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  seeds "$t" "$out/seeds/$t"
  before=$(find "$crashes" -type f | wc -l)
  echo "== fuzzing $t for ${secs}s (log: $log)"
  rc=0
  CLIPKIT_FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:handle_abort=1 \
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$corpus" "$out/seeds/$t" > "$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new=$(( $(find "$crashes" -type f | wc -l) - before ))
  line="$t: ${runs:-0} runs, ${eps:-0} exec/s, corpus $(find "$corpus" -type f | wc -l) files, new crashes: $new"
  if [ $rc -ne 0 ] || [ "$new" -gt 0 ]; then
    status=1
    line="$line  FAILED (exit $rc): $(grep -m1 -E 'ERROR: |Fatal error|SUMMARY' "$log" || tail -1 "$log")"
  fi
  echo "$line"
  summary+=("$line")
done
echo "== fuzz summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
