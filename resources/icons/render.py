"""Render the application icon's PNG sizes, .ico (Windows) and .icns (macOS) from contrastive-workbench.svg.

    python resources/icons/render.py

Needs PySide6 (QtSvg) and Pillow; run it after editing the SVG and commit what it writes.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "contrastive-workbench"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)  # freedesktop hicolor sizes, Windows up to 256, macOS up to 1024
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(size: int):
    """The SVG drawn at ``size`` x ``size`` px, as a Pillow RGBA image."""
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    image = QImage(size, size, QImage.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    QSvgRenderer(str(HERE / f"{NAME}.svg")).render(painter)
    painter.end()
    buf = QBuffer()
    buf.open(QIODevice.WriteOnly)
    image.save(buf, "PNG")
    return Image.open(io.BytesIO(bytes(buf.data()))).convert("RGBA")


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - QtSvg needs one
    images = {s: render(s) for s in PNG_SIZES}
    for s, im in images.items():
        im.save(HERE / f"{NAME}-{s}.png", optimize=True)
    images[256].save(HERE / f"{NAME}.ico", sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[images[s] for s in ICO_SIZES if s != 256])
    images[1024].save(HERE / f"{NAME}.icns", append_images=[images[s] for s in (16, 32, 64, 128, 256, 512)])
    print(f"wrote {len(images)} PNGs, {NAME}.ico and {NAME}.icns into {HERE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
