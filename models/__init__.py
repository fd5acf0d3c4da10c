"""The shipped models, one folder each: package data, installed as ``facecodec._models``
(see facecodec/resources.py)."""
