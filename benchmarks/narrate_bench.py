"""Narration benchmark: the whole job on a book-length text vs Piper's own runtime.

    .venv/bin/python benchmarks/narrate_bench.py [--words 3000] [--back-check]

Generates an English book of ``--words`` words in chapters, then, in the same run:

1. Piper's runtime (``piper-tts``) synthesizes the same text with the same bundled
   voice (load time reported apart from synthesis time);
2. the studio's narration job does everything: text processing, synthesis,
   mastering, MP3 chapter files and the M4B (it loads the voice itself, as the
   job's process must).

Prints the real-time factor of each, the ratio (goal: job <= 1.5 x Piper's
synthesis), and the WER of the first narrated chapter as heard by Whisper tiny.en.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Words per generated chapter.
CHAPTER_WORDS = 600
GOAL_RATIO = 1.5

_SUBJECTS = ["The old fisherman", "A young teacher", "The tired doctor", "Her brother",
             "The quiet girl", "My neighbour", "The farmer", "A tall stranger", "The captain",
             "Our guide"]
_VERBS = ["carried", "painted", "found", "opened", "watched", "cleaned", "sold", "repaired",
          "followed", "described"]
_OBJECTS = ["a heavy basket", "the wooden door", "an old map", "the small boat", "a red kite",
            "the broken clock", "a letter from home", "the garden gate", "a loaf of bread",
            "the long road"]
_PLACES = ["near the harbour", "before the storm", "in the morning", "after dinner",
           "behind the church", "at the market", "under the bridge", "on the hill",
           "by the river", "during the winter"]
_TAILS = ["and nobody noticed.", "while the children laughed.", "because it was late.",
          "as the bells rang.", "without a word.", "and then went home."]


def make_book(words: int, seed: int = 7) -> str:
    """A plain-text book of about ``words`` words with 'Chapter N' headings."""
    rng = random.Random(seed)
    chapters, count = [], 0
    while count < words:
        paragraphs, chapter_words = [], 0
        while chapter_words < min(CHAPTER_WORDS, words - count):
            sentences = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
                         f"{rng.choice(_PLACES)} {rng.choice(_TAILS)}" for _ in range(rng.randint(2, 4))]
            paragraph = " ".join(sentences)
            paragraphs.append(paragraph)
            chapter_words += len(paragraph.split())
        chapters.append(f"Chapter {len(chapters) + 1}\n\n" + "\n\n".join(paragraphs))
        count += chapter_words
    return "The Benchmark Book\n\n" + "\n\n".join(chapters) + "\n"


def piper_runtime(onnx: Path, chapter_texts: list[str]) -> tuple[float, float, float]:
    """(load s, synthesis s, audio s) with piper-tts's own PiperVoice."""
    from piper import PiperVoice

    t0 = time.perf_counter()
    voice = PiperVoice.load(str(onnx))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = 0
    for text in chapter_texts:
        for chunk in voice.synthesize(text):
            samples += len(chunk.audio_int16_array)
    return load_s, time.perf_counter() - t0, samples / voice.config.sample_rate


def studio_job(book_path: Path, back_check: bool):
    """Run the narration job in this process; returns (seconds, job, store, ws, book)."""
    from projects import books, jobs, narrate
    from projects.projects import create_project
    from projects.store import Store
    from projects.workspace import Workspace

    ws = Workspace.open(Path(tempfile.mkdtemp(prefix="narrate-bench-")))
    store = Store(ws.db_path)
    project = create_project(store, ws, "Bench")
    t0 = time.perf_counter()
    book = books.import_book(store, ws, project, book_path)
    job = narrate.start_narration(store, ws, book.id, narrate.NarrationSettings(back_check=back_check))
    job = jobs.run_job(store, ws, job.id)
    return time.perf_counter() - t0, job, store, ws, book


def first_chapter_wer(store, ws, book) -> float:
    """WER of the first narrated chapter as Whisper tiny.en hears it."""
    import soundfile as sf

    from engines.text import normalize
    from projects import books, narrate

    chapter = books.list_chapters(store, book.id)[0]
    audio, sr = sf.read(ws.resolve(chapter.audio_path), dtype="float32")
    heard = normalize(narrate.BackChecker("en-us").heard(audio, sr), "en-us")
    return narrate.word_error_rate(normalize(chapter.text, "en-us"), heard)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--words", type=int, default=3000, help="book length (default 3000)")
    parser.add_argument("--back-check", action="store_true", help="also transcribe every sentence")
    args = parser.parse_args()

    from projects.voices import bundled_voice

    text = make_book(args.words)
    folder = Path(tempfile.mkdtemp(prefix="narrate-bench-book-"))
    book_path = folder / "benchmark.txt"
    book_path.write_text(text)
    chapter_texts = [c.split("\n\n", 1)[1] for c in text.split("Chapter ")[1:]]
    print(f"Book: {len(text.split())} words in {len(chapter_texts)} chapters")

    load_s, piper_s, piper_audio = piper_runtime(bundled_voice().onnx_path, chapter_texts)
    print(f"Piper runtime : load {load_s:6.1f} s, synthesis {piper_s:7.1f} s for "
          f"{piper_audio / 60:5.1f} min of audio (RTF {piper_s / piper_audio:.3f})")

    job_s, job, store, ws, book = studio_job(book_path, args.back_check)
    if job.status != "done":
        print(f"job {job.status}: {job.error}")
        return 1
    r = job.result
    audio_s = sum(c["duration_s"] for c in r["reports"])
    print(f"Studio job    : {job_s:7.1f} s in all (import, voice load, text, synthesis, mastering, "
          f"MP3 + M4B) for {audio_s / 60:5.1f} min of mastered audio (RTF {job_s / audio_s:.3f}); "
          f"synthesis alone RTF {r['rtf']:.3f}; back-check {'on' if args.back_check else 'off'}")
    ratio = job_s / piper_s
    print(f"Ratio job / Piper synthesis: {ratio:.2f} (goal <= {GOAL_RATIO}) -> "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}; with Piper's load: "
          f"{job_s / (piper_s + load_s):.2f}")
    print(f"ACX: {sum(not c['problems'] for c in r['reports'])}/{len(r['reports'])} chapters meet the norms")
    print(f"WER of chapter 1 by Whisper tiny.en: {first_chapter_wer(store, ws, book) * 100:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
