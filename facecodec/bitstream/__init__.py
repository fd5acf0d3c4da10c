"""facecodec.bitstream"""
