"""facecodec.receiver"""
