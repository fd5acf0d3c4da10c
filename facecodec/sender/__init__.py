"""facecodec.sender"""
