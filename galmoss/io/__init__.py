"""Input and output: cutouts in, results tables and image blocks out.

Reading (:mod:`galmoss.io.fits`)
    :func:`read_image`, :func:`read_header`, :func:`read_image_with_header`
Writing (:mod:`galmoss.io.results`)
    :func:`write_results`, :func:`write_image_block`, :func:`galfit_header_cards`,
    :func:`update_image_block_header`, :func:`read_image_block`

This layer knows nothing of profiles or optimisers: it moves numpy arrays and
astropy tables between memory and files.
"""

from .fits import read_header, read_image, read_image_with_header
from .results import (
    GALFIT_KEYS,
    galfit_header_cards,
    read_image_block,
    update_image_block_header,
    write_image_block,
    write_results,
)

__all__ = [
    "GALFIT_KEYS",
    "galfit_header_cards",
    "read_header",
    "read_image",
    "read_image_block",
    "read_image_with_header",
    "update_image_block_header",
    "write_image_block",
    "write_results",
]
