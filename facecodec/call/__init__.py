"""A real call: two peers over WebRTC (aiortc), the stream on data channels, a link you can
degrade, and a report of what people judge calls by (docs/call.md).

    signalling.py  the offer/answer exchange (one TCP connection, one JSON line each way)
    link.py        the emulated link: a seeded UDP relay on 127.0.0.1 (loss, jitter,
                   reordering, a rate cap)
    wire.py        the data channels and what goes on each (the stream split by chunk)
    peer.py        the sender (input -> Encoder -> channels) and the receiver (channels ->
                   tolerant Decoder -> screen, recording, feedback)
    record.py      the receiver's recording
    report.py      the report's arithmetic
    run.py         a loopback call; one end of a call between two machines

Needs the ``call`` extra (``pip install 'facecodec[call]'``: aiortc); the modules that do
not talk to the network (link, wire, report) import without it.
"""
