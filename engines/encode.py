"""Encoding finished narration: per-chapter files and an M4B with chapter marks.

Everything goes through the static ffmpeg binary that ships in
``imageio-ffmpeg``. There is no ffprobe beside it, so :func:`probe_output` reads
``ffmpeg -i`` and :func:`read_chapters` reads ffmpeg's FFMETADATA dump.

Long books never sit in memory: chapter WAVs are read block by block and piped
into one ffmpeg process for the M4B, and chapter marks come from the exact
number of samples written. Every long call takes ``progress`` and
``should_cancel``; cancelling kills ffmpeg and leaves no partial file.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engines.audio import ffmpeg_exe
from engines.errors import (BadInput, CancelFn, Cancelled, ProgressFn, StudioError,
                            check_cancel, never_cancel, no_progress)

#: Per-chapter formats; the M4B is built by :func:`build_m4b`.
CHAPTER_FORMATS = ("mp3", "wav", "flac")
#: ACX: MP3 at 192 kbps constant bit rate, 44.1 kHz.
MP3_BITRATE_KBPS = 192
OUTPUT_SAMPLE_RATE = 44100
#: AAC bit rate of the M4B (mono speech; 64 kbps is the usual audiobook rate).
M4B_BITRATE_KBPS = 64
#: Seconds of audio read and piped per block when building an M4B.
PIPE_BLOCK_S = 10.0
#: How often (s) a running ffmpeg is checked for cancel.
POLL_S = 0.2
#: Longest file-name stem kept from a chapter title (characters).
MAX_TITLE_CHARS = 80
_COVER_EXT = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png"}
_CODEC_ARGS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", f"{MP3_BITRATE_KBPS}k", "-id3v2_version", "3",
            "-write_id3v1", "1", "-f", "mp3"],
    "wav": ["-c:a", "pcm_s16le", "-f", "wav"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}


@dataclass
class Tags:
    """Metadata written into exported files."""

    title: str
    """Book title (the album of chapter files, the title of the M4B)."""
    author: str = ""
    """Author, written as artist and album artist."""
    narrator: str = ""
    """Narrator or voice name, written as composer (the audiobook convention)."""
    year: str = ""
    """Publication year."""
    genre: str = "Audiobook"
    """Genre tag."""
    comment: str = ""
    """Free text, e.g. a note that the narration is synthetic."""

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Tags":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def ffmpeg_fields(self) -> dict[str, str]:
        """The tags as ffmpeg metadata keys, empty ones left out."""
        fields_ = {"title": self.title, "album": self.title, "artist": self.author,
                   "album_artist": self.author, "composer": self.narrator, "date": self.year,
                   "genre": self.genre, "comment": self.comment}
        return {k: v for k, v in fields_.items() if v}


@dataclass(frozen=True)
class ChapterAudio:
    """One finished chapter on disk, ready to encode."""

    title: str
    """Chapter title for tags and chapter marks."""
    path: Path
    """A WAV (or FLAC) file of the mastered chapter."""


@dataclass
class OutputInfo:
    """What ffmpeg reports about an exported file."""

    duration_s: float
    """Length (s) from the container."""
    sample_rate: int
    """Sample rate of the audio stream (Hz)."""
    channels: int
    """Channel count of the audio stream."""
    codec: str
    """ffmpeg's codec name: mp3, aac, flac, pcm_s16le..."""
    bitrate_kbps: int
    """Bit rate of the audio stream (kb/s), 0 when not reported."""
    has_cover: bool = False
    """True when a cover picture is attached."""
    tags: dict[str, str] = field(default_factory=dict)
    """Global tags, lower-case keys."""


# --------------------------------------------------------------------------- names


def sanitize_filename(text: str, max_chars: int = MAX_TITLE_CHARS) -> str:
    """A title made safe as a file name on every OS: no separators, no control characters."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = text.replace(":", " -")
    text = re.sub(r"[/\\|]", "-", text)
    text = re.sub(r"[*?\"<>]", "", text)
    text = re.sub(r"\s+", " ", text).strip(" .-")
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0].strip(" .-") or text[:max_chars]
    return text


def chapter_filename(number: int, total: int, title: str, ext: str) -> str:
    """'01 - Title.mp3': zero-padded so names sort in chapter order."""
    width = max(2, len(str(total)))
    stem = sanitize_filename(title) or f"Chapter {number}"
    return f"{number:0{width}d} - {stem}.{ext.lstrip('.')}"


# --------------------------------------------------------------------------- ffmpeg


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no message"


def _wait(proc: subprocess.Popen, should_cancel: CancelFn) -> None:
    """Wait for ffmpeg, killing it if the user cancels."""
    while proc.poll() is None:
        if should_cancel():
            proc.kill()
            proc.wait()
            raise Cancelled()
        time.sleep(POLL_S)


def run_ffmpeg(args: list[str], should_cancel: CancelFn = never_cancel) -> None:
    """Run ffmpeg with ``args``; raise StudioError with its last message on failure."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args],
                                stdout=subprocess.DEVNULL, stderr=err)
        _wait(proc, should_cancel)
        if proc.returncode != 0:
            err.seek(0)
            raise StudioError(f"ffmpeg failed: {_last_line(err.read().decode('utf-8', 'replace'))}")


def _temp_beside(out_path: Path) -> Path:
    return out_path.with_name(f".{out_path.stem}.part{out_path.suffix}")


def _replace_or_clean(tmp: Path, out_path: Path, ok: bool) -> None:
    if ok:
        os.replace(tmp, out_path)
    elif tmp.exists():
        tmp.unlink()


def _metadata_args(fields_: dict[str, str]) -> list[str]:
    return [arg for key, value in fields_.items() for arg in ("-metadata", f"{key}={value}")]


def _cover_file(cover: bytes, mime: str, folder: str) -> str:
    ext = _COVER_EXT.get(mime.lower())
    if ext is None:
        raise BadInput(f"Cover images must be JPEG or PNG, not {mime}.")
    path = os.path.join(folder, f"cover.{ext}")
    with open(path, "wb") as fh:
        fh.write(cover)
    return path


def _cover_args(cover_path: str | None, input_index: int) -> tuple[list[str], list[str]]:
    """(input args, mapping args) that attach a cover picture."""
    if not cover_path:
        return [], ["-map", "0:a"]
    return ["-i", cover_path], ["-map", "0:a", "-map", f"{input_index}:v", "-c:v", "copy",
                                "-disposition:v:0", "attached_pic"]


# --------------------------------------------------------------------------- chapter files


def encode_chapter(source: Path, out_path: Path, fmt: str, tags: dict[str, str],
                   cover: tuple[bytes, str] | None = None,
                   should_cancel: CancelFn = never_cancel) -> Path:
    """Encode one chapter file (mp3 192k CBR / wav / flac at 44.1 kHz mono) with tags."""
    if fmt not in CHAPTER_FORMATS:
        raise BadInput(f"Unknown chapter format '{fmt}'; use one of {', '.join(CHAPTER_FORMATS)}.")
    if not Path(source).is_file():
        raise BadInput(f"Chapter audio is missing: {source}")
    out_path = Path(out_path)
    tmp = _temp_beside(out_path)
    ok = False
    with tempfile.TemporaryDirectory() as folder:
        cover_path = _cover_file(*cover, folder) if cover and fmt != "wav" else None
        cover_in, maps = _cover_args(cover_path, 1)
        try:
            run_ffmpeg(["-i", str(source), *cover_in, *maps, "-ar", str(OUTPUT_SAMPLE_RATE),
                        "-ac", "1", *_metadata_args(tags), *_CODEC_ARGS[fmt], str(tmp)],
                       should_cancel)
            ok = True
        finally:
            _replace_or_clean(tmp, out_path, ok)
    return out_path


def export_chapter_files(chapters: list[ChapterAudio], out_dir: Path, fmt: str, book: Tags,
                         cover: tuple[bytes, str] | None = None,
                         progress: ProgressFn = no_progress,
                         should_cancel: CancelFn = never_cancel) -> list[Path]:
    """Write '01 - Title.ext' files for every chapter, tagged with title, author and track."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(chapters)
    paths = []
    for n, chapter in enumerate(chapters, start=1):
        check_cancel(should_cancel)
        progress((n - 1) / total, f"Encoding chapter {n} of {total}")
        tags = {**book.ffmpeg_fields(), "title": chapter.title, "track": f"{n}/{total}"}
        path = out_dir / chapter_filename(n, total, chapter.title, fmt)
        paths.append(encode_chapter(chapter.path, path, fmt, tags, cover, should_cancel))
    progress(1.0, f"Encoded {total} chapters")
    return paths


# --------------------------------------------------------------------------- m4b


def _escape_meta(value: str) -> str:
    """FFMETADATA escaping: '=', ';', '#', '\\' and newlines take a backslash."""
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


def ffmetadata(fields_: dict[str, str], marks: list[tuple[str, float, float]]) -> str:
    """An FFMETADATA1 document with global tags and chapters (times in seconds)."""
    lines = [";FFMETADATA1"] + [f"{k}={_escape_meta(v)}" for k, v in fields_.items()]
    for title, start, end in marks:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(start * 1000)}",
                  f"END={round(end * 1000)}", f"title={_escape_meta(title)}"]
    return "\n".join(lines) + "\n"


def _chapter_blocks(path: Path, rate: int, should_cancel: CancelFn):
    """Yield int16 mono blocks of a chapter file at ``rate``, resampling when needed."""
    import soxr

    with _open_audio(path) as handle:
        stream = soxr.ResampleStream(handle.samplerate, rate, 1, dtype="float32") \
            if handle.samplerate != rate else None
        block = int(PIPE_BLOCK_S * handle.samplerate)
        for data in handle.blocks(blocksize=block, dtype="float32", always_2d=True):
            check_cancel(should_cancel)
            mono = data.mean(axis=1)
            if stream is not None:
                mono = stream.resample_chunk(mono)
            yield _to_int16(mono)
        if stream is not None:
            yield _to_int16(stream.resample_chunk(np.zeros(0, np.float32), last=True))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2")


def _open_audio(path: Path):
    import soundfile as sf

    try:
        return sf.SoundFile(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError for bad files
        raise BadInput(f"Chapter audio is missing or unreadable: {path}") from err


def chapter_marks(chapters: list[ChapterAudio]) -> list[tuple[str, float, float]]:
    """(title, start_s, end_s) of each chapter laid end to end, from the files' headers."""
    marks, t = [], 0.0
    for chapter in chapters:
        with _open_audio(chapter.path) as handle:
            duration = handle.frames / handle.samplerate
        marks.append((chapter.title, t, t + duration))
        t += duration
    return marks


def _feed(proc: subprocess.Popen, chapters: list[ChapterAudio], rate: int,
          progress: ProgressFn, should_cancel: CancelFn) -> None:
    """Stream every chapter into ffmpeg's stdin."""
    for n, chapter in enumerate(chapters, start=1):
        progress((n - 1) / len(chapters), f"Adding chapter {n} of {len(chapters)} to the M4B")
        for block in _chapter_blocks(chapter.path, rate, should_cancel):
            proc.stdin.write(block.tobytes())


def build_m4b(chapters: list[ChapterAudio], out_path: Path, book: Tags,
              cover: tuple[bytes, str] | None = None, bitrate_kbps: int = M4B_BITRATE_KBPS,
              progress: ProgressFn = no_progress,
              should_cancel: CancelFn = never_cancel) -> list[tuple[str, float, float]]:
    """One M4B (AAC) of all chapters with chapter marks, tags and cover art.

    ``cover`` is (image bytes, mime). Returns the chapter marks written as
    (title, start_s, end_s).
    """
    if not chapters:
        raise BadInput("There are no chapters to put in the audiobook.")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    marks = chapter_marks(chapters)
    with _open_audio(chapters[0].path) as first:
        rate = first.samplerate
    tmp = _temp_beside(out_path)
    ok = False
    with tempfile.TemporaryDirectory() as folder:
        meta = os.path.join(folder, "chapters.txt")
        with open(meta, "w", encoding="utf-8") as fh:
            fh.write(ffmetadata({**book.ffmpeg_fields(), "media_type": "2"}, marks))
        cover_in, maps = _cover_args(_cover_file(*cover, folder) if cover else None, 2)
        args = ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", "-i", meta,
                *cover_in, *maps, "-map_metadata", "1", "-map_chapters", "1",
                "-ar", str(OUTPUT_SAMPLE_RATE), "-c:a", "aac", "-b:a", f"{bitrate_kbps}k",
                "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        try:
            _pipe_to_ffmpeg(args, chapters, rate, folder, progress, should_cancel)
            ok = True
        finally:
            _replace_or_clean(tmp, out_path, ok)
    progress(1.0, "Audiobook written")
    return marks


def _pipe_to_ffmpeg(args: list[str], chapters: list[ChapterAudio], rate: int, folder: str,
                    progress: ProgressFn, should_cancel: CancelFn) -> None:
    """Run ffmpeg with the chapters' PCM on its stdin; kill it on cancel or error."""
    log_path = os.path.join(folder, "ffmpeg.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _feed(proc, chapters, rate, progress, should_cancel)
            proc.stdin.close()
            _wait(proc, should_cancel)
        except BrokenPipeError:
            proc.wait()  # ffmpeg quit early; its log says why (reported below)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        with open(log_path, "rb") as fh:
            raise StudioError(f"ffmpeg failed: {_last_line(fh.read().decode('utf-8', 'replace'))}")


# --------------------------------------------------------------------------- reading back


def _unescape_meta(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_ffmetadata(text: str) -> tuple[dict[str, str], list[tuple[str, float, float]]]:
    """FFMETADATA text -> (global tags, chapters as (title, start_s, end_s))."""
    tags: dict[str, str] = {}
    chapters: list[dict[str, str]] = []
    section: dict[str, str] | None = tags
    for line in text.splitlines():
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("["):
            section = {} if line.strip() == "[CHAPTER]" else None
            if section is not None:
                chapters.append(section)
            continue
        match = re.match(r"((?:[^=\\]|\\.)*)=(.*)$", line)
        if match and section is not None:
            key, value = match.groups()
            section[_unescape_meta(key).lower()] = _unescape_meta(value)
    marks = []
    for ch in chapters:
        num, den = (int(v) for v in ch.get("timebase", "1/1000").split("/"))
        scale = num / den
        marks.append((ch.get("title", ""), int(ch.get("start", 0)) * scale,
                      int(ch.get("end", 0)) * scale))
    return tags, marks


def _dump_metadata(path: Path) -> str:
    if not Path(path).is_file():
        raise BadInput(f"No such file: {path}")
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path),
                           "-f", "ffmetadata", "-"], capture_output=True)
    if proc.returncode != 0:
        raise BadInput(f"{Path(path).name} is not a readable audio file.")
    return proc.stdout.decode("utf-8", "replace")


def read_chapters(path: Path) -> list[tuple[str, float, float]]:
    """Chapter marks of an M4B (or any file ffmpeg reads): [(title, start_s, end_s)]."""
    return parse_ffmetadata(_dump_metadata(path))[1]


def read_tags(path: Path) -> dict[str, str]:
    """Global tags of a file (lower-case keys: title, artist, album, ...)."""
    return parse_ffmetadata(_dump_metadata(path))[0]


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_AUDIO = re.compile(r"Stream #\S+.*?Audio:\s*(\w+)[^,]*,\s*(\d+)\s*Hz,\s*([^,]+)(?:,[^,]*)?"
                    r"(?:,\s*(\d+)\s*kb/s)?")


def probe_output(path: Path) -> OutputInfo:
    """Duration, sample rate, channels, codec and bit rate, parsed from ``ffmpeg -i``."""
    if not Path(path).is_file():
        raise BadInput(f"No such file: {path}")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True)
    text = proc.stderr.decode("utf-8", "replace")
    duration, audio = _DURATION.search(text), _AUDIO.search(text)
    if not (duration and audio):
        raise BadInput(f"{Path(path).name} is not a readable audio file.")
    hours, minutes, seconds = duration.groups()
    layout = audio.group(3).strip()
    channels = {"mono": 1, "stereo": 2}.get(layout, int(re.match(r"\d+", layout).group())
                                             if re.match(r"\d+", layout) else 0)
    return OutputInfo(duration_s=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
                     sample_rate=int(audio.group(2)), channels=channels, codec=audio.group(1),
                     bitrate_kbps=int(audio.group(4) or 0), has_cover="(attached pic)" in text,
                     tags=read_tags(path))
