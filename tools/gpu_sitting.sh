#!/bin/bash
# One GPU sitting for the HAM10000 diagnoser, sized for the workplace's `device` tool (an H200 lent for 15 minutes to
# some sessions; the call's working tree must stay under 64 MiB and nothing can be downloaded there).
#
#   bash tools/gpu_sitting.sh pack       # here: builds .gpu/ (ignored; ~51 MB): the HAM images, the masks re-saved
#                                        # as 1-bit PNGs (lossless: they are 0/255), Lite0's ImageNet weights without
#                                        # the 1000-class head, and untracks the shipped ham_cnn weights for the call
#   run(command="bash tools/gpu_sitting.sh full", carry=[".gpu"], timeout_s=590)   # there, about 9 minutes
#   bash tools/gpu_sitting.sh restore    # here, right after: tracks the shipped weights again
#   bash tools/gpu_sitting.sh rehearse   # here: every stage on the CPU with tiny subsets (a minute), before a call
#
# `full`: a GPU smoke run (fails fast), the frames decoded at three sizes, four Lite0 teachers in parallel (320x240,
# 384x288, 448x336 with mixup, 320x240 without; 3 minutes each), then two students (320x240 and 384x288) distilled
# from all four, calibrated and exported; the folders come back as tar files under $OUT (no checkpoints, no ONNX:
# `python -m dermchat export-onnx --weights DIR` rebuilds it here in seconds).
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
state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
torch.save({k: v for k, v in state.items() if not k.startswith("_fc.")}, ".gpu/imagenet/efficientnet-lite0.pth")
PYEOF
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
D=.gpu/ham
R=${RUNS:-/tmp/runs}
mkdir -p "$OUT" "$R"
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }
train() { timeout $STAGE_S $PY -m dermchat.classifier.train --data $D --split-seed 0 --backbone efficientnet-lite0 --patience 100 "$@"; }
if [ "$MODE" = rehearse ]; then
  DEV=cpu; TH=1; SIZES="160x120 224x168"; S1=160x120; S2=224x168; S3=224x168
  TEACH="--limit 120 --max-batches 2 --batch-size 8 --epochs 2 --max-minutes 0.3"
  STUD="--limit 120 --max-batches 2 --batch-size 8 --epochs 2 --max-minutes 0.3"
  STAGE_S=200
else
  DEV=cuda; TH=3; SIZES="320x240 384x288 448x336"; S1=320x240; S2=384x288; S3=448x336
  TEACH="--batch-size 64 --lr 1e-3 --epochs 60 --max-minutes 3.0"
  STUD="--batch-size 64 --lr 1e-3 --epochs 60 --max-minutes 2.3"
  STAGE_S=280
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
  for s in $SIZES; do
    $PY -c "
from dermchat.classifier.data import load_pixels, read_metadata
ids = [r.image_id for r in read_metadata('$D')]
w, h = (int(v) for v in '$s'.split('x'))
px, _ = load_pixels('$D', ids, with_masks=True, size=(w, h))
print('$s', px.shape)" &
  done
  wait
fi

say "teachers"
train --out $R/tA --input-size $S1 --mixup 0.2 --seed 21 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tA.log 2>&1 &
train --out $R/tB --input-size $S2 --mixup 0.2 --seed 22 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tB.log 2>&1 &
train --out $R/tC --input-size $S3 --mixup 0.2 --seed 23 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tC.log 2>&1 &
train --out $R/tD --input-size $S1 --seed 24 --device $DEV --threads $TH --no-calibrate $TEACH >$R/tD.log 2>&1 &
wait
TEACHERS=""
for t in tA tB tC tD; do
  grep -h "best epoch\|error\|Error" $R/$t.log 2>/dev/null | tail -2 | sed "s/^/$t: /"  # the run's stdout: log + tracebacks
  [ -f $R/$t/model.pt ] && TEACHERS="$TEACHERS $R/$t"
done
(cd $R && tar cf $OUT/teachers_AB.tar --exclude=checkpoint.pt tA tB tA.log tB.log 2>/dev/null)
(cd $R && tar cf $OUT/teachers_CD.tar --exclude=checkpoint.pt tC tD tC.log tD.log 2>/dev/null)
[ -n "$TEACHERS" ] || { say "no teacher finished"; exit 5; }

say "students distilled from:$TEACHERS"
train --out $R/s1 --input-size $S1 --mixup 0.2 --seed 31 --device $DEV --threads 4 $STUD \
  --distill-from $TEACHERS --distill-weight 0.7 >$R/s1.log 2>&1 &
train --out $R/s2 --input-size $S2 --mixup 0.2 --seed 32 --device $DEV --threads 4 $STUD \
  --distill-from $TEACHERS --distill-weight 0.7 >$R/s2.log 2>&1 &
wait
for s in s1 s2; do
  tr '\r' '\n' <$R/$s.log | grep "teacher accuracy\|best epoch\|calibrated\|ONNX\|error\|Error" | tail -5 | sed "s/^/$s: /"
  (cd $R && tar cf $OUT/student_$s.tar --exclude=checkpoint.pt --exclude=model.onnx $s $s.log 2>/dev/null)
done
ls -la $OUT
say "done"
