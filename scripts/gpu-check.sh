#!/usr/bin/env bash
# The GPU check, in one go, for a session that has the H200 (issue #13). Two halves:
#
#   bash scripts/gpu-check.sh prepare
#       here (Swift): scripts/package.sh's static binary as .gpu-check/clipkit.tar.xz (23 MB).
#   bash scripts/gpu-check.sh device
#       on the GPU machine, from the repository root, with .gpu-check carried:
#         run(command: "bash scripts/gpu-check.sh device", carry: [".gpu-check"], timeout_s: 600)
#       It uses the machine's own python3 torch 2.11 libraries (and its transformers and Pillow for
#       the PyTorch baseline), and prints one summary (also in $OUT/gpu-check.txt when $OUT is set).
#
# With no argument: `device` where nvidia-smi exists, else `prepare`. CLIPKIT_GPU_CHECK_CPU=1 runs the
# device half on the CPU with small sizes: a dry run of this script on a machine without a GPU.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
mode=${1:-}
[ -z "$mode" ] && { command -v nvidia-smi > /dev/null && mode=device || mode=prepare; }
state=$root/.gpu-check
# What the binary was built from: the device half refuses a binary older than the sources beside it.
source_hash() { find Sources Package.swift scripts/package.sh -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16; }

if [ "$mode" = prepare ]; then
  set -e
  mkdir -p "$state"
  CLIPKIT_PACKAGE_TAR=1 bash scripts/package.sh "$state/dist/clipkit"
  mv "$state/dist/clipkit.tar.xz" "$state/clipkit.tar.xz"
  source_hash > "$state/source-hash"
  rm -rf "$state/dist"
  echo "== .gpu-check: $(du -sh "$state" | cut -f1)"
  echo "== on the GPU machine: bash scripts/gpu-check.sh device   (carry .gpu-check)"
  exit 0
fi
[ "$mode" = device ] || { echo "usage: gpu-check.sh [prepare|device]" >&2; exit 2; }

cpu=${CLIPKIT_GPU_CHECK_CPU:-0}
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
summary=$work/summary.txt
failures=0
say() { echo "$*" | tee -a "$summary"; }
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
section() { echo; echo "== $*"; }

# --- the binary, on this machine's torch ------------------------------------------------------
if [ "$cpu" = 1 ] && [ -x "${CLIPKIT_BIN:-}" ]; then
  ck() { "$CLIPKIT_BIN" "$@"; }
else
  [ -f "$state/clipkit.tar.xz" ] || { echo "gpu-check: $state/clipkit.tar.xz is missing: run 'bash scripts/gpu-check.sh prepare' where Swift is" >&2; exit 2; }
  [ "$(cat "$state/source-hash" 2> /dev/null)" = "$(source_hash)" ] \
    || { echo "gpu-check: $state/clipkit.tar.xz was built from other sources than these: run 'bash scripts/gpu-check.sh prepare' again" >&2; exit 2; }
  tar -C "$work" -xJf "$state/clipkit.tar.xz"
  ck() { "$work/clipkit/clipkit" "$@"; }
fi
# `env VAR=… "$work/run-ck.sh" …` runs the same binary as `ck`, with extra variables.
printf '#!/bin/sh\nexec %s "$@"\n' "$(if [ "$cpu" = 1 ] && [ -x "${CLIPKIT_BIN:-}" ]; then echo "$CLIPKIT_BIN"; else echo "$work/clipkit/clipkit"; fi)" > "$work/run-ck.sh"
chmod +x "$work/run-ck.sh"
py=${CLIPKIT_PYTHON:-python3}
export CLIPKIT_PYTHON=$py
baseline=1
"$py" -c 'import torch, transformers, PIL' 2> "$work/baseline.err" || { baseline=0; say "note: no PyTorch baseline: $(tail -1 "$work/baseline.err")"; }

if [ "$cpu" = 1 ]; then
  dev=cpu; gpu=cpu; export CLIPKIT_DEVICE=cpu
  big_layers=2; train_batch=8; train_steps=2; warm=1; images_per_class=4; embed_batch=16; peak=1
else
  dev=cuda; gpu=cuda:0; unset CLIPKIT_DEVICE
  big_layers=27; train_batch=256; train_steps=10; warm=3; images_per_class=86; embed_batch=256; peak=989
fi
fx=$root/Tests/ModelTests/Fixtures

section "clipkit info"
ck info | tee "$work/info.txt"
if [ "$cpu" != 1 ]; then
  grep -q "compute capability" "$work/info.txt" && say "info: $(grep -m1 'compute capability' "$work/info.txt" | sed 's/^ *//')" || fail "clipkit info lists no GPU"
  grep -m1 "sdpa bfloat16" "$work/info.txt" | sed 's/^ */info: /' | tee -a "$summary"
fi

section "CUDA vs CPU embeddings (fp32 max |diff| <= 1e-4, bf16 cosine >= 0.999)"
for m in tiny_siglip tiny_siglip2_naflex tiny_nvclip; do
  if ck bench parity --model "$fx/$m" --images "$fx/images" --device "$gpu" > "$work/parity-$m.txt" 2>&1; then
    say "parity $m: ok ($(grep -c ' ok$' "$work/parity-$m.txt") checks)"
  else
    cat "$work/parity-$m.txt"; fail "parity $m"
  fi
  grep "^parity" "$work/parity-$m.txt" | sed 's/^/  /'
done

section "20 training steps, CUDA vs CPU (fp32, losses within 1e-4 relative), and fp16 with loss scaling"
spec=$work/train.yaml
cat > "$spec" <<EOF
results_dir: $work/train
model:
  type: siglip2-so400m-patch16-256
  pretrained_dir: $fx/tiny_siglip
train:
  num_epochs: 20
  seed: 1234
  precision: fp32
  checkpoint_interval: 20
  optim: {vision_lr: 1.0e-3, text_lr: 2.0e-3, weight_decay: 0.05, betas: [0.9, 0.95], eps: 1.0e-6, warmup_steps: 5, scheduler: cosine}
dataset:
  seed: 1234
  train:
    datasets:
      - image_dir: $fx/images
    batch_size: 4
  augmentation: {scale: [1.0, 1.0], color_jitter: [], grayscale: 0.0}
EOF
CLIPKIT_LOG_LOSS=1 CLIPKIT_DEVICE=cpu ck train -e "$spec" results_dir="$work/train-cpu" > "$work/train-cpu.txt" 2>&1 || fail "CPU training run"
CLIPKIT_LOG_LOSS=1 CLIPKIT_DEVICE=$gpu ck train -e "$spec" results_dir="$work/train-gpu" > "$work/train-gpu.txt" 2>&1 || fail "$gpu training run"
"$py" - "$work/train-cpu.txt" "$work/train-gpu.txt" <<'EOF' | tee -a "$summary" || failures=$((failures + 1))
import sys
def losses(f):
    return [float(l.split()[3]) for l in open(f) if l.startswith("step ") and " loss " in l]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=float("inf"))
ok = len(a) == len(b) == 20 and worst <= 1e-4
print("train fp32: %d/%d steps, worst relative loss difference %.2e, first %.6f vs %.6f, last %.6f vs %.6f  %s" % (
    len(b), len(a), worst, a[0] if a else 0, b[0] if b else 0, a[-1] if a else 0, b[-1] if b else 0, "ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
EOF
CLIPKIT_LOG_LOSS=1 CLIPKIT_DEVICE=$gpu ck train -e "$spec" results_dir="$work/train-fp16" train.precision=fp16 > "$work/train-fp16.txt" 2>&1 || fail "fp16 training run"
"$py" - "$work/train-fp16.txt" <<'EOF' | tee -a "$summary" || failures=$((failures + 1))
import math, sys
text = open(sys.argv[1]).read()
l = [float(x.split()[3]) for x in text.splitlines() if x.startswith("step ") and " loss " in x]
scaling = [x for x in text.splitlines() if x.startswith("fp16 loss scaling")]
ok = len(l) == 20 and all(math.isfinite(v) for v in l) and scaling
print("train fp16: %d steps, all finite: %s, last loss %.6f; %s  %s" % (len(l), all(math.isfinite(v) for v in l), l[-1] if l else float("nan"),
      scaling[0] if scaling else "no loss-scaling line", "ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
EOF
grep -h "peak GPU memory" "$work/train-gpu.txt" | tail -1 | sed 's/^/  /'

section "Process groups: a 1-rank group ($([ "$cpu" = 1 ] && echo Gloo || echo NCCL)) trains as one process; 2 ranks where there are 2 GPUs"
launchvars() { echo "RANK=$1 LOCAL_RANK=$1 WORLD_SIZE=$2 LOCAL_WORLD_SIZE=$2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$3"; }
compare() {  # compare REFERENCE_LOG LOG LABEL TOLERANCE
  "$py" - "$@" <<'EOF' | tee -a "$summary" || failures=$((failures + 1))
import sys
def losses(f):
    return [float(l.split()[3]) for l in open(f) if l.startswith("step ") and " loss " in l]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
worst = max((abs(x - y) / abs(x) for x, y in zip(a, b)), default=float("inf"))
ok = len(a) == len(b) == 20 and worst <= float(sys.argv[4])
print("%s: %d steps, worst relative loss difference to one process %.2e  %s" % (sys.argv[3], len(b), worst, "ok" if ok else "FAIL"))
sys.exit(0 if ok else 1)
EOF
}
env $(launchvars 0 1 29533) CLIPKIT_LOG_LOSS=1 CLIPKIT_DIST_TIMEOUT=120 "$work/run-ck.sh" train -e "$spec" \
  results_dir="$work/train-group1" > "$work/train-group1.txt" 2>&1 || fail "1-rank group run"
grep -h "Joined" "$work/train-group1.txt" | sed 's/^/  /'
compare "$work/train-gpu.txt" "$work/train-group1.txt" "1-rank group" 1e-5
ngpu=$(nvidia-smi -L 2> /dev/null | grep -c "^GPU" || true)
if [ "$cpu" != 1 ] && [ "${ngpu:-0}" -ge 2 ]; then
  for r in 0 1; do
    env $(launchvars $r 2 29544) CLIPKIT_LOG_LOSS=1 CLIPKIT_DIST_TIMEOUT=120 "$work/run-ck.sh" train -e "$spec" \
      results_dir="$work/train-group2" dataset.train.batch_size=2 > "$work/train-group2-$r.txt" 2>&1 &
  done
  wait || true
  compare "$work/train-gpu.txt" "$work/train-group2-0.txt" "2 NCCL ranks (batch 2 each) vs 1 GPU (batch 4)" 1e-4
  grep -h "replicas\|all-reduce" "$work/train-group2-0.txt" | sed 's/^/  /' | tee -a "$summary"
else
  say "2-rank NCCL run: skipped (${ngpu:-0} GPU on this machine)"
fi

section "Benchmark: so400m-patch16-256-sized random SigLIP, bf16 training, $gpu"
big=$work/so400m && mkdir -p "$big"
cat > "$big/config.json" <<EOF
{"model_type": "siglip", "architectures": ["SiglipModel"],
 "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": $big_layers,
   "max_position_embeddings": 64, "vocab_size": 256000, "projection_size": 1152, "hidden_act": "gelu_pytorch_tanh",
   "layer_norm_eps": 1e-6, "model_type": "siglip_text_model"},
 "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": $big_layers,
   "image_size": 256, "patch_size": 16, "num_channels": 3, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
   "vision_use_head": true, "model_type": "siglip_vision_model"}}
EOF
sed 's/"height": 32/"height": 256/; s/"width": 32/"width": 256/' "$fx/tiny_siglip/preprocessor_config.json" > "$big/preprocessor_config.json"
cp "$fx/tiny_siglip"/{tokenizer.json,tokenizer_config.json,special_tokens_map.json} "$big/"
ck bench train --model "$big" --device "$gpu" --precision bf16 --batch-size "$train_batch" --steps "$train_steps" --warmup "$warm" \
  --threads 16 --peak-tflops "$peak" 2>&1 | tee "$work/bench-train.txt" | grep -E "train step|error" | tee -a "$summary" || fail "clipkit bench train"
if [ "$baseline" = 1 ]; then
  "$py" tools/bench_pytorch_train.py --model "$big" --device "$gpu" --precision bf16 --batch-size "$train_batch" --steps "$train_steps" \
    --warmup "$warm" --threads 16 --peak-tflops "$peak" 2>&1 | tee "$work/bench-train-pt.txt" | grep -E "train step|Error" | tee -a "$summary" || fail "PyTorch train baseline"
fi

section "Benchmark: whole-job image embedding (decode + preprocess + model), bf16, $gpu"
ck demo-data "$work/photos" --per-class "$images_per_class" --size 384 > /dev/null
rm -rf "$work/photos/val"
n=$(ls "$work/photos/train" | grep -c png)
busy() {  # runs "$@" while sampling GPU utilisation; prints the command's output and the mean busy %
  local log=$work/util.$RANDOM
  if command -v nvidia-smi > /dev/null && [ "$cpu" != 1 ]; then
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -i 0 -lms 100 > "$log" 2> /dev/null &
    local smi=$!
    "$@"; local rc=$?
    kill "$smi" 2> /dev/null; wait "$smi" 2> /dev/null
    awk '{s += $1; n++} END { if (n) printf "  GPU busy %.0f %% (mean of %d samples)\n", s / n, n }' "$log"
    return $rc
  fi
  "$@"
}
busy ck bench embed --model "$big" --random-init --images "$work/photos" --device "$gpu" --precision bf16 --batch-size "$embed_batch" \
  --threads 16 --repeats 2 2>&1 | grep -E "image embedding|GPU busy|error" | tee -a "$summary" || fail "clipkit bench embed"
if [ "$baseline" = 1 ]; then
  busy "$py" tools/bench_transformers_embed.py --model "$big" --random-init --images "$work/photos" --device "$gpu" --precision bf16 \
    --batch-size "$embed_batch" --threads 16 --workers 14 --repeats 2 2>&1 | grep -E "image embedding|GPU busy|Error" | tee -a "$summary" || fail "transformers embed baseline"
fi

if [ "$cpu" != 1 ] && [ "${ngpu:-0}" -ge 2 ]; then
  section "Scaling: so400m-sized SigLIP, bf16, one epoch of the generated photos, 1 GPU vs 2 NCCL ranks (batch 64 per GPU)"
  cat > "$work/scale.yaml" <<EOF
results_dir: $work/scale
model: {type: siglip2-so400m-patch16-256, pretrained_dir: $big, random_init: true}
train: {num_epochs: 1, precision: bf16, checkpoint_interval: 100, cudnn: {deterministic: false}}
dataset: {train: {datasets: [{image_dir: $work/photos/train}], batch_size: 64, num_workers: 7}}
EOF
  CLIPKIT_DEVICE=cuda:0 "$work/run-ck.sh" train -e "$work/scale.yaml" results_dir="$work/scale1" > "$work/scale1.txt" 2>&1 || fail "1-GPU scaling run"
  for r in 0 1; do
    env $(launchvars $r 2 29555) CLIPKIT_DIST_TIMEOUT=300 "$work/run-ck.sh" train -e "$work/scale.yaml" results_dir="$work/scale2" \
      > "$work/scale2-$r.txt" 2>&1 &
  done
  wait || true
  "$py" - "$work/scale1.txt" "$work/scale2-0.txt" "$n" <<'EOF' | tee -a "$summary"
import re, sys
def seconds(f):
    m = re.findall(r"^epoch 1/1: train_loss .*?, ([0-9.]+) s", open(f).read(), re.M)
    return float(m[-1]) if m else float("nan")
one, two, n = seconds(sys.argv[1]), seconds(sys.argv[2]), int(sys.argv[3])
print("scaling: 1 GPU %.1f images/s, 2 NCCL ranks %.1f images/s: efficiency %.0f %%" % (n / one, n / two, 100 * one / (2 * two)))
EOF
  grep -h "all-reduce" "$work/scale2-0.txt" | sed 's/^/  /' | tee -a "$summary"
fi

echo
echo "================ gpu-check summary ($n images, $(date -u +%FT%TZ)) ================"
cat "$summary"
[ "$failures" = 0 ] && echo "gpu-check: all checks passed" || echo "gpu-check: $failures check(s) failed"
[ -n "${OUT:-}" ] && { cp "$summary" "$OUT/gpu-check.txt"; cp "$work"/*.txt "$OUT/" 2> /dev/null; }
exit $((failures > 0))
