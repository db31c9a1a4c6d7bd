"""Published Kodak rate-distortion points of two learned codecs, carried over from CompressAI.

These figures are copied, not re-measured here. Source: github.com/InterDigitalInc/CompressAI at commit
128f00397509b9882aaaeea49f43f1714da083b4, files
  results/image/kodak/compressai-bmshj2018-hyperprior_mse_cpu.json  (Ballé et al. 2018, scale hyperprior)
  results/image/kodak/compressai-mbt2018_mse_cpu.json               (Minnen et al. 2018, joint autoregressive
                                                                      and hierarchical priors)
i.e. CompressAI's own pre-trained MSE models, qualities 1..8, real bitstreams (ANS coder) on CPU, averaged
over the 24 Kodak images. Their "psnr" is the mean per-image RGB PSNR and "ms-ssim" the mean per-image
MS-SSIM (pytorch_msssim), both computed on the float reconstruction in [0, 1] without rounding to 8 bits,
so they are marginally optimistic next to our 8-bit measurements. Only bpp, PSNR and MS-SSIM are carried
over; CompressAI's timings were taken on another machine and are left out.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReferenceCurve", "REFERENCE_CURVES", "SOURCE_REPO", "SOURCE_COMMIT"]

SOURCE_REPO = "InterDigitalInc/CompressAI"
SOURCE_COMMIT = "128f00397509b9882aaaeea49f43f1714da083b4"


@dataclass(frozen=True)
class ReferenceCurve:
    """One published curve: points ordered by quality (1..8), bpp in bits per pixel, PSNR in dB."""

    name: str
    path: str  # path in SOURCE_REPO at SOURCE_COMMIT
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim: tuple[float, ...]

    @property
    def source(self) -> str:
        return f"{SOURCE_REPO}/{self.path}"


REFERENCE_CURVES: tuple[ReferenceCurve, ...] = (
    ReferenceCurve(
        name="bmshj2018-hyperprior",
        path="results/image/kodak/compressai-bmshj2018-hyperprior_mse_cpu.json",
        bpp=(
            0.13129340277777776, 0.20889282226562503, 0.3198581271701389, 0.47835625542534727,
            0.6686842176649304, 0.9388258192274304, 1.2591722276475694, 1.6602240668402775,
        ),
        psnr=(
            27.58153679333392, 29.19669412138477, 30.972168705499175, 32.838191117040694,
            34.5262427611008, 36.74336461762285, 38.58385584443213, 40.55687370015212,
        ),
        ms_ssim=(
            0.9173671156167984, 0.9420618464549383, 0.9610564212004343, 0.9748740047216415,
            0.9835608204205831, 0.9892508039871851, 0.9928662578264872, 0.9954901412129402,
        ),
    ),
    ReferenceCurve(
        name="mbt2018",
        path="results/image/kodak/compressai-mbt2018_mse_cpu.json",
        bpp=(
            0.1105380588107639, 0.18696763780381942, 0.28770277235243064, 0.4323221842447917,
            0.6388041178385414, 0.8853352864583334, 1.2004021538628473, 1.587419297960069,
        ),
        psnr=(
            28.088869926632654, 29.645305305751226, 31.36235582178716, 33.085616005166436,
            35.09360247348057, 36.98857497402823, 38.9332181272494, 40.64035727274914,
        ),
        ms_ssim=(
            0.92072265346845, 0.9432242438197136, 0.9627579599618912, 0.9752304603656133,
            0.9835531041026115, 0.9892363622784615, 0.9928615341583887, 0.9953123057881991,
        ),
    ),
)
