"""find_prior: the installed prior a stream names, found by the id at the start of each
file; only the file that matches is read whole."""

import json
from pathlib import Path

import pytest

from facecodec.bitstream.prior import Prior, find_prior, prior_dirs, recorded_id
from facecodec.bitstream.streams import TABLES
from facecodec.errors import FormatError
from facecodec.resources import shipped


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """The files read whole (Prior.load and a legacy file's id both read_text)."""
    seen: list[Path] = []
    read_text = Path.read_text

    def spy(self, *a, **kw):
        seen.append(self)
        return read_text(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", spy)
    return seen


def save_legacy(prior: Prior, path: Path) -> None:
    """A prior as facecodec wrote it before the id came first (format, version, name ...,
    id and info last)."""
    body = prior._body()
    body["id"], body["info"] = prior.id, prior.info
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, separators=(",", ":")))


def test_every_shipped_prior_records_its_id_first_and_is_found_alone(reads):
    paths = sorted(p for kind in ("models", "priors") for p in shipped(kind).glob("**/*.json"))
    assert {p.relative_to(shipped("models")).as_posix() for p in paths
            if p.is_relative_to(shipped("models"))} >= {
        "fom/prior.json", "frontalizer_sup/prior.json", "frontalizer_sup_unsup/prior.json",
        "frontalizer_sup_unsup_expr/prior.json",
        *(f"frontalizer_sup_unsup_expr/operating_points/deadband{s}.json"
          for s in (0, 4, 8, 32))}  # each model package holds its priors
    assert shipped("priors") / "landmarks.json" in paths  # the one no model owns
    assert set(prior_dirs()[-2:]) == {shipped("models"), shipped("priors")}
    for path in paths:
        assert path.read_bytes().startswith(b'{"id":"'), path
        reads.clear()
        prior_id = recorded_id(path)
        assert reads == []  # the id comes from the file's first bytes
        assert find_prior(prior_id).id == prior_id
        assert reads == [path]  # the one file that matched, nothing else


def test_lookup_in_extra_dirs_reads_only_the_match(tmp_path, monkeypatch, reads):
    table = TABLES["landmarks"]
    a, b = Prior.untrained(table, name="a"), Prior.untrained(table, name="b")
    a.save(tmp_path / "one" / "x.json")  # any file name, any depth
    b.save(tmp_path / "two" / "deep" / "b.json")
    save_legacy(Prior.untrained(TABLES["fom"], name="a"), tmp_path / "one" / "old_a.json")
    save_legacy(Prior.untrained(TABLES["fom"], name="c"), tmp_path / "one" / "old_c.json")
    (tmp_path / "one" / "notes.json").write_text('{"id": "not a prior"}')
    (tmp_path / "one" / "broken.json").write_bytes(b"\xff\xfe garbage")
    monkeypatch.setenv("FACECODEC_PRIORS", f"{tmp_path / 'one'}:{tmp_path / 'two'}")

    assert find_prior(b.id).id == b.id
    assert reads == [tmp_path / "two" / "deep" / "b.json"]
    reads.clear()
    assert find_prior(a.id).id == a.id
    # the legacy file of the same name is read to learn its id; the others are not
    assert reads == [tmp_path / "one" / "old_a.json", tmp_path / "one" / "x.json"]
    legacy = Prior.untrained(TABLES["fom"], name="c")
    reads.clear()
    assert find_prior(legacy.id).id == legacy.id
    assert reads == [tmp_path / "one" / "old_c.json"] * 2  # its id, then the prior
    reads.clear()
    assert find_prior("a-0123456789ab") is None
    assert find_prior("../../etc/passwd") is None
    assert reads == [tmp_path / "one" / "old_a.json"]  # names a, id differs: not loaded


def test_a_damaged_file_claiming_the_id_is_an_error_naming_it(tmp_path, monkeypatch):
    prior = Prior.untrained(TABLES["landmarks"], name="d")
    path = prior.save(tmp_path / "d.json")
    path.write_text(path.read_text()[:-200])  # cut
    monkeypatch.setenv("FACECODEC_PRIORS", str(tmp_path))
    with pytest.raises(FormatError, match="d.json: prior file is not valid JSON"):
        find_prior(prior.id)
