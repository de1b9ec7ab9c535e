#!/usr/bin/env bash
# The main command on a built-in default: installs what it needs (idempotent), builds clipkit,
# generates a small image-caption set (coloured shapes), trains a small SigLIP from random
# initialisation on it, evaluates the checkpoint, embeds images and prompts to HDF5, searches
# those embeddings by text, exports it to ONNX with its tokenizer and config sidecars, and shows
# the spec it used. A couple of minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "== building clipkit (release)"
swift build -c release --product clipkit 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)/clipkit
out=${CLIPKIT_DEMO_DIR:-$PWD/results/demo}
rm -rf "$out"
mkdir -p "$out"
"$bin" info
echo "== generating the data set"
"$bin" demo-data "$out/data" --per-class 96
printf 'a red circle\na blue vertical bar\na yellow horizontal bar\na white circle\n' > "$out/prompts.txt"
cat > "$out/spec.yaml" <<YAML
results_dir: $out/results
model:
  type: siglip2-so400m-patch16-256
  pretrained_dir: $PWD/assets/demo-model   # architecture + tokenizer + preprocessing
  random_init: true                       # ClipKit extension: no pretrained weights
train:
  num_epochs: 20
  checkpoint_interval: 10
  validation_interval: 5
  precision: fp32
  loss_type: siglip
  optim:
    vision_lr: 1.0e-3
    text_lr: 1.0e-3
    weight_decay: 0.05
    warmup_steps: 20
    scheduler: cosine
dataset:
  train:
    datasets:
      - image_dir: $out/data/train
    batch_size: 32
  val:
    datasets:
      - image_dir: $out/data/val
  augmentation:
    scale: [1.0, 1.0]
    color_jitter: []
    grayscale: 0.0
evaluate:
  checkpoint: $out/results/train/epoch_20.pth
inference:
  checkpoint: $out/results/train/epoch_20.pth
  datasets:
    - image_dir: $out/data/val
  text_file: $out/prompts.txt
export:
  checkpoint: $out/results/train/epoch_20.pth
  onnx_file: $out/results/export/clip_model.onnx
  input_height: 32                        # the demo model's resolution
  input_width: 32
YAML
echo "== spec: $out/spec.yaml"
cat "$out/spec.yaml"
echo "== clipkit train"
"$bin" train -e "$out/spec.yaml"
echo "== clipkit evaluate"
"$bin" evaluate -e "$out/spec.yaml"
echo "== clipkit inference"
"$bin" inference -e "$out/spec.yaml"
echo "== clipkit search (the stored val embeddings, by text; val_00_* are the red circles)"
"$bin" search --embeddings "$out/results/inference" --text "a red circle" --top-k 3
echo "== clipkit export"
"$bin" export -e "$out/spec.yaml"
echo "== outputs"
find "$out/results" -maxdepth 2 -type f -o -maxdepth 2 -type l | sort
