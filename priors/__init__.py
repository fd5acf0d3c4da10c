"""The fitted priors: package data, installed as ``facecodec._priors`` (see
facecodec/resources.py)."""
