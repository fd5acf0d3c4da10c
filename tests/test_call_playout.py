"""The call's player (facecodec/call/playout.py): the sound without gaps, pictures held
for lip sync."""

import pytest

from facecodec.call.playout import AV_LEAD_S, Playout


def test_pictures_wait_for_a_late_sound_and_a_late_packet_stretches_it():
    p = Playout()
    assert not p.sound(0.0, 0.3)  # before the first picture nothing plays
    assert p.played == 0 and p.level is None
    # the first picture sets L: the sound's 95th percentile (0.3) over its median (0.2)
    assert p.picture(0.1, 0.2) == pytest.approx(0.3 - AV_LEAD_S - 0.2)
    assert p.level == pytest.approx(0.3)
    assert p.picture(0.2, 0.35) == 0.0  # drawn after its sound: shown at once
    assert p.sound(0.5, 0.36)  # after its time: a gap, and L moves up to it
    assert (p.late, p.played, p.level) == (1, 1, pytest.approx(0.36))
    assert not p.sound(0.6, 0.33)


def test_the_level_follows_the_last_window():
    p = Playout()
    for k in range(40):  # 4 s of pictures at 0.15 s, sound at 0.1 s: L follows the pictures
        p.sound(0.1 * k, 0.1)
        p.picture(0.1 * k + 0.05, 0.15)
    assert p.level == pytest.approx(0.15) and p.late == 0
    for k in range(40, 80):  # then the sound comes at 0.25 s: after a gap, L follows it
        p.sound(0.1 * k, 0.25)
        hold = p.picture(0.1 * k + 0.05, 0.15)
    # two gaps: the re-set just after the first saw one slow packet in 20 (below the
    # 95th percentile) and went back to the pictures' 0.15 s
    assert p.level == pytest.approx(0.25) and p.late == 2
    assert hold == pytest.approx(0.25 - AV_LEAD_S - 0.15)
