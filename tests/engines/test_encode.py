"""Encoding: chapter files to ACX's MP3 spec, an M4B whose marks match its audio."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.encode import (ChapterAudio, Tags, build_m4b, chapter_filename,
                            export_chapter_files, ffmpeg_exe, probe_output, read_chapters,
                            read_tags, sanitize_filename)
from engines.errors import BadInput, Cancelled

SR = 22050
FIRST_S, SECOND_S = 1.6, 2.3


def _tone(seconds: float, freq: float, amp: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def chapters(tmp_path) -> list[ChapterAudio]:
    """A loud chapter then a very quiet one (at another sample rate), so the
    boundary can be found in the decoded audio."""
    first, second = tmp_path / "c1.wav", tmp_path / "c2.wav"
    sf.write(first, _tone(FIRST_S, 440, 0.4), SR, subtype="PCM_16")
    sf.write(second, _tone(SECOND_S, 330, 0.004, 24000), 24000, subtype="PCM_16")
    return [ChapterAudio("Chapter 1: Arrival", first), ChapterAudio("Chapter 2/Departure", second)]


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _decode(path: Path, sr: int = 44100) -> np.ndarray:
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
                          "-ar", str(sr), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4")


def _boundary_s(audio: np.ndarray, sr: int = 44100) -> float:
    """Where the loud first chapter ends in decoded audio (10 ms frames)."""
    n = sr // 100
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    loud = np.sqrt(np.mean(frames ** 2, axis=1)) > 0.05
    return (np.flatnonzero(loud)[-1] + 1) * n / sr


def test_m4b_has_chapter_marks_at_the_audio_boundaries(chapters, tmp_path):
    out = tmp_path / "book.m4b"
    seen = []
    written = build_m4b(chapters, out, Tags("The Test = Book", author="Ann Author"),
                        cover=(_png(), "image/png"), progress=lambda f, m: seen.append(f))
    marks = read_chapters(out)
    assert [m[0] for m in marks] == ["Chapter 1: Arrival", "Chapter 2/Departure"]
    assert marks[0][1] == pytest.approx(0.0, abs=0.05)
    assert marks[0][2] == pytest.approx(FIRST_S, abs=0.05)
    assert marks[1][1] == pytest.approx(FIRST_S, abs=0.05)
    assert marks[1][2] == pytest.approx(FIRST_S + SECOND_S, abs=0.05)
    assert [m[0] for m in written] == [m[0] for m in marks]
    # the mark sits where the audio really changes chapter
    assert _boundary_s(_decode(out)) == pytest.approx(marks[1][1], abs=0.05)
    info = probe_output(out)
    assert info.codec == "aac" and info.has_cover
    assert info.duration_s == pytest.approx(FIRST_S + SECOND_S, abs=0.1)
    tags = read_tags(out)
    assert tags["title"] == "The Test = Book" and tags["artist"] == "Ann Author"
    assert seen and seen[-1] == 1.0
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


def _mp3_frames(data: bytes) -> list[tuple[int, int]]:
    """(bit rate kbps, sample rate) of every MPEG-1 Layer III frame after the ID3 tag."""
    rates = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    pos = 0
    if data[:3] == b"ID3":
        size = data[6:10]
        pos = 10 + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])
    frames = []
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] & 0xFE == 0xFA:
        bitrate, sr_index = rates[data[pos + 2] >> 4], (data[pos + 2] >> 2) & 3
        sample_rate, padding = (44100, 48000, 32000)[sr_index], (data[pos + 2] >> 1) & 1
        frames.append((bitrate, sample_rate))
        pos += 144 * bitrate * 1000 // sample_rate + padding
    return frames


def test_mp3_chapter_files_are_192k_cbr_44k_tagged_and_sortable(chapters, tmp_path):
    paths = export_chapter_files(chapters, tmp_path / "mp3", "mp3", Tags("Book", author="Ann"))
    assert [p.name for p in paths] == ["01 - Chapter 1 - Arrival.mp3",
                                       "02 - Chapter 2-Departure.mp3"]
    data = paths[0].read_bytes()
    frames = _mp3_frames(data)
    assert len(frames) > 50 and set(frames) == {(192, 44100)}  # every frame: constant rate
    assert b"Info" in data[:2000] and b"Xing" not in data[:2000]  # LAME's CBR header
    info = probe_output(paths[1])
    assert (info.codec, info.sample_rate, info.bitrate_kbps) == ("mp3", 44100, 192)
    assert info.duration_s == pytest.approx(SECOND_S, abs=0.1)
    assert (info.tags["title"], info.tags["artist"], info.tags["album"], info.tags["track"]) == \
        ("Chapter 2/Departure", "Ann", "Book", "2/2")


@pytest.mark.parametrize("fmt,codec", [("wav", "pcm_s16le"), ("flac", "flac")])
def test_lossless_chapter_files(chapters, tmp_path, fmt, codec):
    paths = export_chapter_files(chapters[:1], tmp_path, fmt, Tags("Book", author="Ann"))
    info = probe_output(paths[0])
    assert (info.codec, info.sample_rate, paths[0].suffix) == (codec, 44100, f".{fmt}")
    assert info.tags.get("title") == "Chapter 1: Arrival"


def test_names_sort_in_chapter_order_and_are_safe():
    names = [chapter_filename(n, 120, f"Part {n}", "mp3") for n in (2, 10, 100)]
    assert names == sorted(names) and names[0] == "002 - Part 2.mp3"
    twelve = [chapter_filename(n, 12, "x", "mp3") for n in range(1, 13)]
    assert sorted(twelve) == twelve
    unsafe = sanitize_filename('../../etc/pass:wd? "a" <b> | c\\d\x00e')
    assert not any(ch in unsafe for ch in '/\\:?"<>|\x00') and not unsafe.startswith(".")
    assert chapter_filename(3, 9, "???", "wav") == "03 - Chapter 3.wav"


def test_cancel_stops_the_m4b_and_leaves_no_file(chapters, tmp_path):
    out = tmp_path / "book.m4b"
    with pytest.raises(Cancelled):
        build_m4b(chapters, out, Tags("Book"), should_cancel=lambda: True)
    assert list(tmp_path.glob("*.m4b")) == [] and list(tmp_path.glob(".*part*")) == []


def test_missing_or_bad_inputs_raise_bad_input(tmp_path):
    with pytest.raises(BadInput):
        build_m4b([ChapterAudio("x", tmp_path / "nope.wav")], tmp_path / "b.m4b", Tags("B"))
    with pytest.raises(BadInput):
        build_m4b([], tmp_path / "b.m4b", Tags("B"))
    junk = tmp_path / "junk.m4b"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(BadInput):
        read_chapters(junk)
