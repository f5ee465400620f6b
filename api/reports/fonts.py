"""The font every report is set in: one that covers Latin and Chinese, since a patient's name may be
written in Chinese in an English report.

WenQuanYi Zen Hei (Debian `fonts-wqy-zenhei`, which ./dev installs) is embedded as a subset, so the PDF
shows and copies the same text on any reader. Where that font is not installed, ReportLab's Adobe CID
font STSong-Light is used instead: it needs no file on the server, but is not embedded (the reader
supplies a Song face; readers without Adobe's Asian font pack substitute one).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Final

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

logger = logging.getLogger(__name__)

EMBEDDED_FONT: Final = "WenQuanYiZenHei"
CID_FONT: Final = "STSong-Light"
# Debian's path of fonts-wqy-zenhei; the collection's first face is the proportional Zen Hei.
WQY_ZENHEI_PATHS: Final = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"),
)


@functools.cache
def report_font() -> str:
    """Register the report font with ReportLab once per process and return its name."""
    for path in WQY_ZENHEI_PATHS:
        if path.is_file():
            pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, str(path), subfontIndex=0))
            return EMBEDDED_FONT
    logger.warning("fonts-wqy-zenhei not installed: reports use the non-embedded CID font STSong-Light")
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
    return CID_FONT
