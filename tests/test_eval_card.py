"""`facecodec eval --card`: the model card's evaluation section."""

from facecodec.eval.report import CARD_BEGIN, CARD_END, card_section, update_card


def results(model_dir) -> dict:
    row = dict(target_kbps=None, kbps_all=30.5, kbps_steady=12.25, bits_per_frame=816.6,
               lpips=0.2261, psnr=24.641, nme=0.0291, identity=0.3126, flicker=0.097,
               eye_corr=0.8123, mouth_open_corr=0.6049, mouth_width_corr=None,
               blink_recall=0.75, blink_hits=9, blink_frames=12)
    return {
        "command": "facecodec eval --card", "commit": "abc1234", "date": "2026-11-29",
        "clips": [{"name": "a"}, {"name": "b"}], "clips_from": "val split of manifest.csv",
        "methods": {"facecodec": {"model": str(model_dir)}, "zero-bit": {},
                    "svtav1": {}, "facecodec:model=other": {"model": "/elsewhere"}},
        "summary": [
            {"method": "facecodec", **row},
            {"method": "facecodec:model=other", **row},
            {"method": "zero-bit", **row, "kbps_all": 0.0, "nme": 0.2},
            {"method": "svtav1", **row, "target_kbps": 10},
            {"method": "svtav1", **row, "target_kbps": 30},
        ],
    }


def test_section_holds_this_model_and_the_references(tmp_path):
    s = card_section(results(tmp_path), tmp_path, None)
    lines = s.splitlines()
    assert lines[0] == CARD_BEGIN and lines[-1] == CARD_END
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| method")]
    assert [r.split(" | ")[0] for r in rows] == ["| facecodec", "| zero-bit", "| svtav1 @10"]
    assert rows[0] == ("| facecodec | 30.50 | 12.25 | 817 | 0.226 | 24.64 | 0.029 | 0.313 | "
                       "0.10 | 0.81 | 0.60 | - | 0.75 (9/12) |")
    assert "2 clips (val split of manifest.csv)" in s
    assert card_section(results(tmp_path), tmp_path / "nothing", None) is None


def test_update_replaces_the_section(tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# model\n\ntext\n")
    first = card_section(results(tmp_path), tmp_path, None)
    update_card(card, first)
    update_card(card, first.replace("30.50", "31.00"))
    text = card.read_text()
    assert text.startswith("# model\n\ntext\n\n" + CARD_BEGIN)
    assert text.count(CARD_BEGIN) == 1 and "31.00" in text and "30.50" not in text


def test_operating_points_share_a_curve():
    from facecodec.eval.report import series_name

    assert series_name("facecodec:deadband=8") == "facecodec"
    assert series_name("facecodec:sources=1;deadband=4") == "facecodec:sources=1"
    assert series_name("facecodec:deadband=0;prior=priors/x.json") == "facecodec"
    assert series_name("svtav1:preset=8") == "svtav1:preset=8"
