"""facecodec.export"""
