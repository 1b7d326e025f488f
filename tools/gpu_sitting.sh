#!/bin/bash
# One GPU sitting for the HAM10000 diagnoser, sized for the workplace's `device` tool (an H200 lent for 15 minutes to
# some sessions; the call's working tree must stay under 64 MiB and nothing can be downloaded there).
#
#   bash tools/gpu_sitting.sh pack       # here: builds .gpu/ (ignored; ~57 MB): the HAM images and the masks re-saved
#                                        # as 1-bit PNGs (lossless: they are 0/255) in one .tar.gz (the tool counts each
#                                        # small file's disk blocks), Lite0/1/2's ImageNet weights in fp16 without the
#                                        # 1000-class head, and untracks the shipped ham_cnn weights for the call
#   run(command="set -o pipefail; bash tools/gpu_sitting.sh full 2>&1 | tee $OUT/run.log", carry=[".gpu"], timeout_s=590)
#   bash tools/gpu_sitting.sh restore    # here, right after: tracks the shipped weights again
#   bash tools/gpu_sitting.sh rehearse   # here: every stage on the CPU with tiny subsets (a minute), before a call
#
# `full` (sitting 2): a GPU smoke run (fails fast), the frames decoded at three sizes, four teachers in parallel for
# 3.2 minutes each (Lite2 at 448x336 and 384x288, Lite1 and Lite0 at 448x336, all with mixup), then two Lite0 students
# (320x240 and 384x288: the chat path's speed) distilled from all four, calibrated and exported; the folders come back
# as tar files under $OUT (no checkpoints, no ONNX: `python -m dermchat export-onnx --weights DIR` rebuilds it here).
# Sitting 1 (2026-12-04: Lite0 teachers at 320-448) and the `probe` (cuDNN autotuning on/off) are in the model card.
#   run(command="PROBE_MIN=2 bash tools/gpu_sitting.sh probe", carry=[".gpu"], timeout_s=200)
set -u
MODE=${1:-full}
SHIPPED="dermchat/weights/ham_cnn/model.onnx dermchat/weights/ham_cnn/model.pt dermchat/weights/ham_cnn/ood_stats.npz"
if [ "$MODE" = pack ]; then
  SRC=${DATA:-../shared/data/ham10000}
  PY=${PY:-.venv/bin/python}
  mkdir -p .gpu/ham/images .gpu/ham/masks .gpu/imagenet
  grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >>.git/info/exclude
  cp "$SRC"/images/*.jpg .gpu/ham/images/ && cp "$SRC"/metadata.csv "$SRC"/README.md .gpu/ham/ || exit 1
  $PY - "$SRC" <<'PYEOF' || exit 1
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermchat.classifier.lite import imagenet_weights_path

for src in sorted(Path(sys.argv[1], "masks").glob("*.png")):
    mask = np.asarray(Image.open(src).convert("L"))
    if not np.isin(mask, (0, 255)).all():
        raise SystemExit(f"{src} is not a 0/255 mask; a 1-bit copy would change it")
    Image.fromarray(mask > 127).save(Path(".gpu/ham/masks", src.name), optimize=True)
for variant in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):  # fp16, no 1000-class head
    state = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    kept = {k: v.half() if v.is_floating_point() else v for k, v in state.items() if not k.startswith("_fc.")}
    torch.save(kept, f".gpu/imagenet/{variant}.pth")
PYEOF
  # one tar instead of 17k small files: the device tool counts each file's disk blocks (masks: 3.5 MB of data, 34 MB on disk)
  (cd .gpu && tar cf - ham | gzip -1 >ham.tar.gz && rm -r ham) || exit 1
  git rm -q --cached $SHIPPED && for f in $SHIPPED; do echo "/$f" >>.git/info/exclude; done
  du -sh .gpu; echo "packed; after the call run: bash tools/gpu_sitting.sh restore"
  exit 0
fi
if [ "$MODE" = restore ]; then
  git reset -q HEAD -- $SHIPPED && sed -i '\#^/dermchat/weights/ham_cnn/#d' .git/info/exclude && git status --short
  exit 0
fi
export PYTHONUNBUFFERED=1 DERMCHAT_IMAGENET_DIR=.gpu/imagenet HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export DERMCHAT_CACHE_DIR=${DERMCHAT_CACHE_DIR:-/tmp/dccache}
OUT=${OUT:-/tmp/gpuout}
PY=${PY:-python3}
D=${HAM:-/tmp/ham}
mkdir -p "$D" && tar xzf .gpu/ham.tar.gz -C "$D" --strip-components=1 || exit 2
R=${RUNS:-/tmp/runs}
mkdir -p "$OUT" "$R"
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }
train() { timeout $STAGE_S $PY -m dermchat.classifier.train --data $D --split-seed 0 --patience 100 "$@"; }
decode() {  # fills the decoded-frame cache for one WxH, so the parallel runs after it start from the cache
  $PY -c "
from dermchat.classifier.data import load_pixels, read_metadata
ids = [r.image_id for r in read_metadata('$D')]
w, h = (int(v) for v in '$1'.split('x'))
px, _ = load_pixels('$D', ids, with_masks=True, size=(w, h))
print('$1', px.shape)"
}
if [ "$MODE" = rehearse ]; then
  DEV=cpu; TH=1; SIZES="160x120 224x168"; S1=160x120; S2=224x168; S3=224x168
  TEACH="--limit 120 --max-batches 2 --batch-size 8 --epochs 2 --max-minutes 0.3"
  STUD="--limit 120 --max-batches 2 --batch-size 8 --epochs 2 --max-minutes 0.3"
  STAGE_S=200
else
  DEV=cuda; TH=3; SIZES="320x240 384x288 448x336"; S1=320x240; S2=384x288; S3=448x336
  GPU_RUN="--batch-size 64 --lr 1e-3 --epochs 60"
  TEACH="$GPU_RUN --max-minutes 3.2"
  STUD="$GPU_RUN --max-minutes 2.3"
  STAGE_S=280
fi

if [ "$MODE" = probe ]; then  # the first sitting's epoch 1 took 1.4 min (then 10 s): cuDNN autotuning? (yes: 1.3 vs 0.5 min)
  say "probe: decoding $S1"
  decode $S1
  for b in on off; do
    flag=""; [ $b = on ] && flag=--cudnn-benchmark
    train --out $OUT/p_$b --input-size $S1 --mixup 0.2 --seed 41 --device $DEV --threads 6 --no-calibrate \
      $GPU_RUN --max-minutes ${PROBE_MIN:-2.0} $flag >$R/p_$b.log 2>&1 &
  done
  wait
  for b in on off; do rm -f $OUT/p_$b/checkpoint.pt $OUT/p_$b/split.json; grep -h "epoch\|rror" $OUT/p_$b/training_log.txt $R/p_$b.log | tail -4; done
  say "done"; exit 0
fi
say "environment"
nvidia-smi -L 2>/dev/null
$PY -c "import torch, numpy, PIL, scipy, tqdm, onnx, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" || exit 3
nproc

say "smoke: two batches, calibration and export on $DEV"
train --out $R/smoke --limit 80 --max-batches 2 --epochs 1 --batch-size 16 --input-size $S1 --mixup 0.2 --seed 1 \
  --device $DEV --threads 4 >$R/smoke.log 2>&1 || { tail -40 $R/smoke.log; exit 4; }
grep -h "torch\|calibrated\|ONNX\|done" $R/smoke/training_log.txt

if [ "$MODE" != rehearse ]; then
  say "decoding frames at $SIZES"
  for s in $SIZES; do decode $s & done
  wait
fi

say "teachers"
# Sitting 1 (Lite0 at 320-448, 3 min each) landed on 2.3's plateau (model card); sitting 2 tries larger backbones.
L0="--backbone efficientnet-lite0"; L1="--backbone efficientnet-lite1"; L2="--backbone efficientnet-lite2"
train --out $R/tA $L2 --input-size $S3 --mixup 0.2 --seed 21 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tA.log 2>&1 &
train --out $R/tB $L2 --input-size $S2 --mixup 0.2 --seed 22 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tB.log 2>&1 &
train --out $R/tC $L1 --input-size $S3 --mixup 0.2 --seed 23 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tC.log 2>&1 &
train --out $R/tD $L0 --input-size $S3 --mixup 0.2 --seed 24 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tD.log 2>&1 &
wait
TEACHERS=""
for t in tA tB tC tD; do
  grep -h "best epoch\|error\|Error" $R/$t.log 2>/dev/null | tail -2 | sed "s/^/$t: /"  # the run's stdout: log + tracebacks
  [ -f $R/$t/model.pt ] && TEACHERS="$TEACHERS $R/$t"
  (cd $R && tar cf $OUT/teacher_$t.tar --exclude=checkpoint.pt $t $t.log 2>/dev/null)  # one each: Lite2's is ~10 MB
done
[ -n "$TEACHERS" ] || { say "no teacher finished"; exit 5; }

say "students distilled from:$TEACHERS"
train --out $R/s1 $L0 --input-size $S1 --mixup 0.2 --seed 31 --device $DEV --threads 4 $STUD \
  --distill-from $TEACHERS --distill-weight 0.7 >$R/s1.log 2>&1 &
train --out $R/s2 $L0 --input-size $S2 --mixup 0.2 --seed 32 --device $DEV --threads 4 $STUD \
  --distill-from $TEACHERS --distill-weight 0.7 >$R/s2.log 2>&1 &
wait
for s in s1 s2; do
  tr '\r' '\n' <$R/$s.log | grep "teacher accuracy\|best epoch\|calibrated\|ONNX\|error\|Error" | tail -5 | sed "s/^/$s: /"
  (cd $R && tar cf $OUT/student_$s.tar --exclude=checkpoint.pt --exclude=model.onnx $s $s.log 2>/dev/null)
done
ls -la $OUT
say "done"
