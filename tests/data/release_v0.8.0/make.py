"""Write this folder's files with vqcodec 0.8.0: PYTHONPATH=<a 0.8.0 checkout> python make.py OUT."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_release_files import make  # noqa: E402

print(make(sys.argv[1], "0.8.0", {"kodim23_crop_64x48_q30": ((64, 48), 30), "kodim23_crop_96x64_q45": ((96, 64), 45),
                                  "kodim23_crop_128x96_q100": ((128, 96), 100)}))
