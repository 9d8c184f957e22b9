"""Intensity sanity checks: values no scanner produces, named as such before any maths runs.

Float values near the float32 limit overflow every later statistic (mean, std, Otsu) and
surface as an unrelated error deep in preprocessing; a few isolated voxels at the int16
limits (+-32767, -32768) are corrupt or saturated spikes that wreck percentile and window
estimates; integers beyond 2^24 (uint32 near 4e9: negative values stored unsigned) lose
their values in float32 and break every histogram; a constant image (a blank export, a
decompression bomb of zeros) holds nothing to learn. Each is reported here with the file,
the value and the count.
"""

from __future__ import annotations

import numpy as np

from medmae.io.errors import ScanError
from medmae.io.geometry import check_same_grid
from medmae.io.volume import Volume

ABSURD_FLOAT = 1e12
"""No CT (HU) or MR magnitude comes near this; squares of such values overflow float32."""
MAX_EXACT_INT = 2 ** 24
"""Whole numbers above this are not exact in float32, the working type; no scanner stores them."""
SPIKE_FRACTION = 1e-3
"""At most this fraction of voxels at the int16 limits counts as 'isolated spikes'."""
INT16_LIMITS = (-32768, -32767, 32767)


def check_intensities(vol: Volume) -> None:
    """Raise ScanError when ``vol`` (an image, not a label map) holds absurd intensities:
    float magnitudes above :data:`ABSURD_FLOAT`, or isolated voxels at the int16 limits far
    outside the range of the rest of the image."""
    a = np.asarray(vol.array)
    check_not_constant(vol)
    if a.dtype.kind in "iu" and a.size:
        peak = max(abs(int(a.min())), abs(int(a.max())))
        if peak > MAX_EXACT_INT:
            wrapped = " (values near 2^32 are usually negative numbers stored as unsigned)" \
                if a.dtype.kind == "u" and peak > 2 ** 31 else ""
            raise ScanError(vol.path, f"absurd intensities: {a.dtype} values up to {peak:.4g}, beyond 2^24 where "
                                      f"the float32 working type loses whole numbers{wrapped}; the file is "
                                      "wrongly typed or corrupt")
    if a.dtype.kind == "f":
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        if peak > ABSURD_FLOAT:
            n = int(np.count_nonzero(np.abs(a) > ABSURD_FLOAT))
            raise ScanError(vol.path, f"absurd intensities: {n} voxel(s) with magnitude up to {peak:.3g} "
                                      f"(near the float limit; above {ABSURD_FLOAT:.0e}), which would overflow "
                                      "every statistic; the file is corrupt or wrongly scaled")
    spikes = _int16_spikes(a)
    if spikes:
        raise ScanError(vol.path, spikes)


def check_not_constant(vol: Volume) -> None:
    """Raise ScanError when every voxel of ``vol`` holds the same value."""
    a = np.asarray(vol.array)
    if a.size and a.min() == a.max():
        raise ScanError(vol.path, f"constant image: every voxel holds {a.flat[0]:g}; nothing to learn from "
                                  "(a blank export, or a compressed file of zeros)")


def _int16_spikes(a: np.ndarray) -> str:
    """A description of isolated int16-limit spikes in ``a``, or '' when there are none."""
    if a.dtype.kind not in "iuf" or a.size == 0:
        return ""
    at_limit = np.isin(a, INT16_LIMITS)
    n = int(np.count_nonzero(at_limit))
    if n == 0 or n > SPIKE_FRACTION * a.size:
        return ""
    rest = a[~at_limit]
    if rest.size == 0:
        return ""
    lo, hi = (float(v) for v in np.percentile(rest, [0.1, 99.9]))
    if max(abs(lo), abs(hi)) * 4 > 32767:
        return ""  # the data itself reaches that far: the values are part of it
    return (f"absurd intensities: {n} isolated voxel(s) at the int16 limit (+-32767) while the rest of the "
            f"image lies in [{lo:g}, {hi:g}]: corrupt or saturated spikes; clip or repair the file")


def check_label(image: Volume, labels: Volume, kind: str = "label") -> None:
    """A label/anatomy map must cover the image's voxel grid (any axis order) and hold whole numbers >= 0."""
    check_same_grid(image, labels, what=f"{kind} map")
    a = labels.array
    if a.dtype.kind == "f" and not np.all(np.mod(a, 1) == 0):
        raise ScanError(labels.path, f"{kind} map holds non-integer values; expected label ids")
    if a.min() < 0:
        raise ScanError(labels.path, f"{kind} map holds negative values (min {a.min()}); expected label ids >= 0")
