"""Examples; the demo's photo ships as package data, ``facecodec._examples`` (see
facecodec/resources.py)."""
