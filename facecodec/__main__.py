"""``python -m facecodec`` is the ``facecodec`` command."""

from facecodec.cli import main

main()
