"""Write this folder's files with vqcodec 0.4.1: PYTHONPATH=<a 0.4.1 checkout> python make.py OUT."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_release_files import make  # noqa: E402

print(make(sys.argv[1], "0.4.1", {"kodim23_crop_64x48_q10": ((64, 48), 10), "kodim23_crop_96x64_q60": ((96, 64), 60),
                                  "kodim23_crop_256x192_q100": ((256, 192), 100)}))
