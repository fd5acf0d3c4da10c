"""facecodec.eval: ``facecodec eval``, methods compared on the same face tubes.

    base.py     EvalClip, Encoded (what a method returns), Method (the plug-in interface)
    clips.py    the clips: a manifest split (training cache when present) or a video folder
    metrics.py  LPIPS-alex, PSNR, MS-SSIM, landmark NME, temporal consistency (motion ratio,
                flicker), bit rates
    methods.py  the zero-bit baseline and THE REGISTRY of methods (model methods plug in there)
    classic.py  x264, x265, SVT-AV1 through PyAV, bit accounting, rate search on CRF
    neural.py   the codec end to end (real .fcs bytes), FOM and FOM-mult baselines
    runner.py   clips x methods x operating points -> per-clip scores, progress bar
    report.py   Markdown + JSON, rate-quality plots, contact sheet (outside the repository)

Importing this package loads neither torch nor MediaPipe.
"""
