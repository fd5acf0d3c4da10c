"""facecodec.models"""
