"""Mask clean-up at thumbnail scale: closing, small holes, small fragments. Sizes are in mask pixels;
the segmenter converts them from microns with the slide's mpp.

Closing uses Euclidean distance transforms rather than a structuring element, so its cost does not
grow with the radius (a 40-pixel disk would make scipy's binary_dilation crawl).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def close(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate then erode by a disk of `radius` pixels; the outside of the image counts as background."""
    if radius < 1:
        return mask.copy()
    pad = int(np.ceil(radius)) + 1
    padded = np.pad(mask, pad, constant_values=False)
    dilated = ndimage.distance_transform_edt(~padded) <= radius
    closed = ndimage.distance_transform_edt(dilated) > radius
    return np.asarray(closed[pad:-pad, pad:-pad])


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background regions enclosed by tissue whose area is at most `max_area` pixels.

    Background touching the image border is never a hole. Larger holes (lumens, fat) are kept, so a
    tiler does not place patches on empty glass inside the tissue outline.
    """
    if max_area <= 0:
        return mask.copy()
    labels, count = ndimage.label(~mask)  # 4-connected background against 8-connected tissue
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = sizes <= max_area
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def remove_small_objects(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drop 8-connected tissue fragments smaller than `min_area` pixels (dust, debris, noise)."""
    if min_area <= 0:
        return mask.copy()
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_area
    keep[0] = False
    return np.asarray(keep[labels])
