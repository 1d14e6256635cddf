"""Dataset build, measured: a multi-speaker recording made at run time goes through the
whole ``dataset_build`` job on CPU, exactly as the studio runs it.

The recording: four distinct voices (tests/speech.py: Piper, Piper shifted up and
down, espeak-ng) take turns reading known sentences, every voice reads every
sentence once (48 turns, about 3.5 minutes). ``--minutes`` repeats that script,
each repeat with fresh white noise, to make a long input; the WAV is written
turn by turn, so making it costs no memory.

Printed: real-time factor (compute seconds / audio seconds) per stage and in
total, peak memory (resident set size, sampled during the build, and the
process's ru_maxrss), word error rate of the clip transcripts against the
script, and adjusted Rand index and purity of the speakers found against the
true speakers (each clip counted with the turn it overlaps most).

    python benchmarks/dataset_bench.py [--minutes 60] [--threshold 0.7] [--noise-db -50]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("VOICE_STUDIO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import speech  # noqa: E402

RATE = speech.RATE
GAP_S = 0.8
LEAD_S = 0.5
RSS_POLL_S = 0.2
STAGES = ("analyse", "decode", "vad", "load_models", "asr", "segment", "quality", "embed",
          "cluster")


def script() -> list[tuple[int, str]]:
    """Every speaker reads every sentence once; the speaker changes at every turn."""
    return [((i + k) % speech.SPEAKERS, text) for k in range(speech.SPEAKERS)
            for i, text in enumerate(speech.SENTENCES)]


def write_recording(path: Path, minutes: float, noise_db: float | None) -> tuple[list, float]:
    """Write the conversation (repeated to ``minutes``) turn by turn; returns (truth, seconds)."""
    import soundfile as sf

    turns, truth, cursor, repeat = script(), [], 0.0, 0
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
        out.write(np.zeros(int(LEAD_S * RATE), np.float32))
        cursor = LEAD_S
        while repeat == 0 or cursor < minutes * 60:
            for speaker_id, text in turns:
                voice, _ = speech.speak(text, speaker_id)
                piece = np.concatenate([voice, np.zeros(int(GAP_S * RATE), np.float32)])
                if noise_db is not None and repeat > 0:
                    piece = piece + rng.standard_normal(len(piece)).astype(np.float32) \
                        * np.float32(10 ** (noise_db / 20))
                out.write(piece)
                truth.append(speech.Turn(cursor, cursor + len(voice) / RATE, speaker_id, text))
                cursor += len(piece) / RATE
            repeat += 1
    return truth, cursor


class RssSampler(threading.Thread):
    """Highest resident set size seen while running (from /proc/self/status)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(RSS_POLL_S):
            self.peak_kb = max(self.peak_kb, current_rss_kb())


def current_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_build(path: Path, threshold: float):
    """The studio's own job, in this process; returns (job, store, project_id, seconds)."""
    from projects import dataset, jobs
    from projects.projects import create_project
    from projects.store import Store
    from projects.workspace import Workspace

    ws = Workspace.open(path.parent / "workspace")
    store = Store(ws.db_path)
    project = create_project(store, ws, "Bench")
    config = dataset.BuildConfig(cluster_criteria=threshold, device="cpu")
    job, _ = dataset.start_build(store, ws, project.name, [(path, None)], config)
    started, cpu0 = time.perf_counter(), cpu_seconds()
    final = jobs.run_job(store, ws, job.id)
    if final.status != "done":
        sys.exit(f"build {final.status}: {final.error}")
    return final, store, project.id, time.perf_counter() - started, cpu_seconds() - cpu0


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def score(store, project_id: int, truth: list) -> dict:
    """WER of clip transcripts against the script, ARI and purity of the speakers."""
    from sklearn.metrics import adjusted_rand_score

    clips = store.all("SELECT start_s, end_s, text, speaker_id FROM clips WHERE project_id = ? "
                      "ORDER BY start_s", [project_id])
    starts = np.array([t.start_s for t in truth])
    ends = np.array([t.end_s for t in truth])
    owner = [int(np.argmax(np.minimum(c["end_s"], ends) - np.maximum(c["start_s"], starts)))
             for c in clips]
    true = [truth[i].speaker for i in owner]
    found = [c["speaker_id"] or -1 for c in clips]
    wer = speech.wer(" ".join(t.text for t in truth), " ".join(c["text"] for c in clips))
    purity = sum(max(np.bincount([t for t, f in zip(true, found) if f == label]))
                 for label in set(found)) / max(1, len(found))
    return {"clips": len(clips), "wer": wer, "ari": adjusted_rand_score(true, found),
            "purity": purity, "speakers_found": len(set(found)),
            "speakers_true": len(set(true))}


def report(final, seconds: float, cpu: float, audio_s: float, quality: dict,
           rss_peak_kb: int) -> None:
    stage = final.result["stage_seconds"]
    print(f"\naudio: {audio_s / 60:.1f} min, {quality['speakers_true']} speakers; "
          f"build wall time {seconds:.1f} s, CPU time {cpu:.1f} s on {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f}: other work on the machine inflates wall time)")
    print(f"{'stage':<12}{'seconds':>9}{'RTF':>9}")
    for name in STAGES:
        if name in stage:
            print(f"{name:<12}{stage[name]:>9.2f}{stage[name] / audio_s:>9.4f}")
    other = seconds - sum(stage.values())
    print(f"{'other':<12}{other:>9.2f}{other / audio_s:>9.4f}   (database, files, imports)")
    print(f"{'total':<12}{seconds:>9.2f}{seconds / audio_s:>9.4f}   (target <= 0.3)")
    print(f"peak RSS during build: {rss_peak_kb / 1024:.0f} MB; process ru_maxrss: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"clips: {quality['clips']}; speakers found: {quality['speakers_found']}")
    print(f"WER: {quality['wer'] * 100:.1f} %   (target <= 10 %)")
    print(f"ARI: {quality['ari']:.3f}   (target >= 0.9); purity: {quality['purity']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="repeat the script (with noise) to at least this long")
    parser.add_argument("--threshold", type=float, default=0.70, help="cluster_criteria")
    parser.add_argument("--noise-db", type=float, default=-50.0,
                        help="white noise (dBFS RMS) added to the repeats")
    parser.add_argument("--keep", action="store_true", help="keep the recording and workspace")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dataset-bench-audio-"))
    path = folder / "conversation.wav"
    t0 = time.perf_counter()
    truth, audio_s = write_recording(path, args.minutes, args.noise_db)
    print(f"made {audio_s / 60:.1f} min of speech in {time.perf_counter() - t0:.1f} s "
          f"({len(truth)} turns); RSS now {current_rss_kb() / 1024:.0f} MB")
    speech._speak_cached.cache_clear()
    sampler = RssSampler()
    sampler.start()
    final, store, project_id, seconds, cpu = run_build(path, args.threshold)
    sampler.stop.set()
    report(final, seconds, cpu, audio_s, score(store, project_id, truth), sampler.peak_kb)
    if args.keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
