#!/usr/bin/env python
"""Synthesize an unlabeled speech pretraining corpus (1 s, 16 kHz mono FLAC clips) with espeak-ng.

Meant for SSAST / AudioMAE-style pretraining before fine-tuning keyword spotting on ``kws-synth``. The
clips are made like kws-synth (espeak-ng voices and variants, random offset, white background noise,
random peak level) but never contain the ten keywords as words; a share of words sounds close to them.
Real audio (animal sounds, one CMU ARCTIC sentence) from the shared data folder is mixed in when present.

Needs the ``espeak-ng`` binary (``benchmarks/install_system_packages.sh``). Output lies outside the repo:

    python benchmarks/audio_corpus.py --output /tmp/mmsdk-audio-corpus --clips 3000 --seed 0
    python benchmarks/audio_corpus.py --output /tmp/mmsdk-audio-corpus --check
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from rich.progress import Progress

log = logging.getLogger("audio_corpus")
SR = 16000
REPO = Path(__file__).resolve().parents[1]
OUTPUT, SHARED = Path("~/.cache/mmsdk/audio-corpus"), REPO.parent / "shared/data/audio"
KEYWORDS = frozenset(str.split("yes no up down left right on off stop go"))
BANNED = KEYWORDS | set(str.split("yeses nos noes ups upped upping downs downed downing lefts rights righted righting"))
BANNED |= set(str.split("offs stops stopped stopping goes going gone went"))
# Words that sound like a keyword without being one (exact homophones such as know/no and write/right are left out).
NEAR = str.split("""yet yell yellow less guess mess dress bless chess now snow show slow note nose toe though cup
pup cut cop hop pop pub town gown brown crown clown round sound dawn drown lift loft theft chef deaf light night
fight white bright ride bite own an in one don john of cough often scoff top shop drop step stock spot chop stomp goat
goal gold grow coat dough low ago""")
COMMON = str.split("""time year people way day man thing woman life child world school family student group country
problem hand part place case week company system program question work number point home water room mother area money
story fact month book eye job word business side kind head house friend father power hour game line end member law car
city name team minute idea body back parent face level office door health person art history party result change
morning reason girl boy moment air teacher music market sense plan college death class heart voice wife police mind
price son view road arm value building action season paper space ground form event matter center site table court
street image phone picture piece land doctor wall news test movie love tree hair window truth song bird dog cat horse
fish apple bread milk tea coffee sugar salt river lake sea rain wind sun moon star summer winter spring garden flower
king queen box bag bed chair glass paper pencil clock ticket train ship plane bus bridge island forest mountain
village market kitchen be have do say get make see think take come want look use find give tell ask seem feel try call
need become leave put mean keep let begin help talk turn start show hear play run move like live believe hold bring
happen stand lose pay meet include continue learn lead understand watch follow create speak read allow add spend open
walk win offer remember consider appear buy wait serve die send expect build stay fall cut reach kill remain suggest
raise pass sell require decide pull good new first last long great little other old big high different small large
next early young important few public bad same able late hard major better best free real sure happy simple clear
strong warm cold dark green blue red black heavy quiet quick easy soft sweet the a and to of in for with at by from as
but or if about into over after than then also very just only still even because while where when what which who how
why there here this that these those all some many most every each more much again never always often today tomorrow
together maybe perhaps please thanks hello morning evening seven eight nine ten twenty hundred thousand""")
WORDS = sorted(set(COMMON + NEAR))
FOREIGN_VOICES = ("de", "fr-fr", "es", "it", "nl")
CLASSIC = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "croak", "klatt", "whisper")
ARCTIC_TEXT = "and you always want to see it in the superlative degree"


def has_keyword(text: str) -> bool:
    """True when ``text`` contains one of the keywords (or an inflection of one) as a word."""
    return any(tok in BANNED for tok in re.findall(r"[a-z]+", text.lower()))


def assert_no_keywords(texts: list[str]) -> None:
    """Raise ``ValueError`` when any text contains a keyword as a word."""
    bad = [t for t in texts if has_keyword(t)]
    if bad:
        raise ValueError(f"{len(bad)} texts contain a keyword, e.g. {bad[:3]}")


assert_no_keywords(WORDS)


@dataclass(frozen=True)
class Job:
    """Everything random about one synthetic clip, drawn up front so the corpus only depends on the seed."""

    index: int
    voice: str
    speed: int
    pitch: int
    text: str
    place: float
    gain: float
    noise: float


def espeak(voice: str, text: str, wav: Path, speed: int = 175, pitch: int = 50) -> np.ndarray | None:
    """Synthesize ``text`` to ``wav`` and return it at 16 kHz, or None when espeak-ng fails."""
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
    if subprocess.run(cmd, capture_output=True).returncode != 0 or not wav.exists():
        return None
    x, sr = sf.read(wav, dtype="float32")
    return to_16k(x, sr)


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Mix down to mono and resample to 16 kHz with torchaudio."""
    x = x.mean(axis=1) if x.ndim > 1 else x
    if sr == SR:
        return x.astype(np.float32)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), sr, SR).numpy()


def _digest(x: np.ndarray | None) -> str | None:
    return None if x is None or np.abs(x).max() < 1e-3 else hashlib.md5(x.tobytes()).hexdigest()


def probe_voices(tmp: Path) -> tuple[list[str], list[str], list[str]]:
    """English voices, extra non-English voices and variants that really work here (MBROLA ones usually do not)."""
    listing = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    candidates = dict.fromkeys(r[1] for r in rows if len(r) >= 5 and r[1] != "variant" and not r[4].startswith("mb/"))
    seen: set[str] = set()

    def works(voice: str) -> bool:
        digest = _digest(espeak(voice, "hello there", tmp / "probe.wav"))
        ok = digest is not None and digest not in seen
        seen.add(digest or "")
        return ok

    english = [v for v in candidates if works(v)]
    foreign = [v for v in FOREIGN_VOICES if works(v)]
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [m.group(1) for m in re.finditer(r"!v/(.+?)(?:\s{2,}|\s*$)", listing, re.M) if " " not in m.group(1)]
    names = [v for v in CLASSIC if v in names] + names  # probe these first: duplicates (caleb = klatt) keep their name
    variants = [v for v in dict.fromkeys(names) if works(f"en-us+{v}")]  # an unknown variant falls back silently
    return english, foreign, variants


def place(x: np.ndarray, n: int, frac: float) -> np.ndarray:
    """Trim silence, then put the utterance at a relative offset ``frac`` in ``n`` samples (or crop it there)."""
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1]
    if len(x) >= n:
        start = int(frac * (len(x) - n))
        return x[start : start + n].copy()
    out = np.zeros(n, np.float32)
    start = int(frac * (n - len(x)))
    out[start : start + len(x)] = x
    return out


def finish(x: np.ndarray, gain: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Peak-normalize to ``gain`` and add white noise of standard deviation ``noise`` (as kws-synth does)."""
    x = x / max(float(np.abs(x).max()), 1e-6) * gain + rng.normal(0.0, noise, len(x))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def draw_level(rng: np.random.Generator) -> tuple[float, float]:
    """Peak level and noise level matched to kws-synth (peaks ~0.16-0.76, noise std ~0.0005-0.02, independent)."""
    return float(rng.uniform(0.15, 0.65)), float(rng.uniform(0.0005, 0.02))


def plan(n: int, english: list[str], foreign: list[str], variants: list[str], rng: np.random.Generator) -> list[Job]:
    """Draw voice, variant, speed, pitch, text, offset and levels for ``n`` synthetic clips."""
    classic = [v for v in CLASSIC if not v or v in variants]
    jobs = []
    for i in range(n):
        base = str(rng.choice(foreign)) if foreign and rng.random() < 0.15 else str(rng.choice(english))
        variant = str(rng.choice(classic)) if rng.random() < 0.5 else str(rng.choice(["", *variants]))
        count = 1 if rng.random() < 0.4 else int(rng.integers(2, 6))
        text = " ".join(str(rng.choice(NEAR if rng.random() < 0.25 else WORDS)) for _ in range(count))
        voice = f"{base}+{variant}" if variant else base
        speed, pitch = int(rng.integers(120, 241)), int(rng.integers(20, 81))
        jobs.append(Job(i, voice, speed, pitch, text, rng.random(), *draw_level(rng)))
    assert_no_keywords([j.text for j in jobs])
    return jobs


def real_clips(shared: Path, n: int, rng: np.random.Generator) -> list[tuple[str, str, str, str, np.ndarray]]:
    """1 s windows (hop 0.5 s for animals, 0.25 s for speech, jittered) of the real shared audio, silence dropped."""
    files = [(p, "animal", p.stem, "", 0.5) for p in sorted((shared / "animals").glob("*.mp3"))]
    if (shared / "arctic_a0007.wav").exists():
        files.append((shared / "arctic_a0007.wav", "arctic", "cmu-arctic-awb", ARCTIC_TEXT, 0.25))
    out = []
    for path, source, voice, text, hop in files:
        x = to_16k(*sf.read(path, dtype="float32"))
        if len(x) < n:
            x = place(x, n, rng.random())
        starts = np.arange(0, len(x) - n + 1, int(hop * SR))
        wins = [x[s : s + n] for s in np.minimum(starts + rng.integers(0, SR // 10, len(starts)), len(x) - n)]
        loudest = max(float(np.sqrt(np.mean(w**2))) for w in wins)
        wins = [w for w in wins if np.sqrt(np.mean(w**2)) > 0.1 * loudest]
        for k, w in enumerate(wins):
            out.append((f"real/{source}_{voice}_{k:02d}.flac", source, voice, text, finish(w, *draw_level(rng), rng)))
    return out


def build(args: argparse.Namespace) -> None:
    """Write the corpus and its manifest, then log a summary."""
    t0, out, n = time.time(), args.output, round(args.seconds * SR)
    if out.exists() and any(out.iterdir()):
        if not args.force or not (out / "manifest.csv").exists():
            raise SystemExit(f"{out} is not empty (use --force to replace an existing corpus)")
        shutil.rmtree(out)
    for sub in ("speech", "real"):
        (out / sub).mkdir(parents=True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    real = real_clips(args.shared, n, rng)[: args.clips] if args.shared.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        english, foreign, variants = probe_voices(tmp)
        log.info("voices: English %s, others %s, %d variants", english, foreign, len(variants))
        jobs = plan(args.clips - len(real), english, foreign, variants, rng)

        def run(job: Job) -> float:
            x = espeak(job.voice, job.text, tmp / f"{job.index}.wav", job.speed, job.pitch)
            if x is None or _digest(x) is None:
                raise RuntimeError(f"espeak-ng produced no audio for {job}")
            (tmp / f"{job.index}.wav").unlink()
            y = finish(place(x, n, job.place), job.gain, job.noise, np.random.default_rng([args.seed, job.index]))
            sf.write(out / f"speech/{job.index:06d}.flac", y, SR, subtype="PCM_16")
            return len(x) / SR

        with ThreadPoolExecutor(args.jobs) as pool, Progress() as bar:
            task = bar.add_task("espeak-ng", total=len(jobs))
            lengths = []
            for length in pool.map(run, jobs):
                lengths.append(length)
                bar.advance(task)
    rows = [(f"speech/{j.index:06d}.flac", "espeak", j.voice, j.text) for j in jobs]
    texts, lengths = [j.text for j in jobs], float(np.median(lengths or [0.0]))
    for path, source, voice, text, y in real:
        sf.write(out / path, y, SR, subtype="PCM_16")
        rows.append((path, source, voice, text))
    with open(out / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "source", "voice", "text"), *rows])
    log.info("sources: %s", dict(Counter(r[1] for r in rows)))
    log.info("%d words, %d distinct texts, raw espeak output median %.2f s", len(WORDS), len(set(texts)), lengths)
    log.info("wrote %d clips (%.1f min) to %s in %.1f s", len(rows), len(rows) * n / SR / 60, out, time.time() - t0)


def level_stats(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """RMS and peak of each clip."""
    xs = [sf.read(p, dtype="float32")[0] for p in paths]
    return np.array([np.sqrt(np.mean(x**2)) for x in xs]), np.array([np.abs(x).max() for x in xs])


def check(args: argparse.Namespace) -> int:
    """Validate an existing corpus: counts, format, length, keywords, silence, clipping; compare levels to kws-synth."""
    out, n, problems = args.output, round(args.seconds * SR), []
    if not (out / "manifest.csv").exists():
        raise SystemExit(f"no corpus in {out} (manifest.csv missing)")
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    on_disk, listed = {p.relative_to(out).as_posix() for p in out.rglob("*.flac")}, {r["path"] for r in rows}
    problems += [f"missing: {p}" for p in sorted(listed - on_disk)] + [
        f"unlisted: {p}" for p in sorted(on_disk - listed)
    ]
    rows = [r for r in rows if r["path"] in on_disk]
    if args.clips is not None and len(rows) != args.clips:
        problems.append(f"expected {args.clips} clips, found {len(rows)} usable")
    problems += [f"keyword in {r['path']}: {r['text']!r}" for r in rows if has_keyword(r["text"])]
    for r in rows:
        info = sf.info(out / r["path"])
        if (info.samplerate, info.channels, info.frames) != (SR, 1, n):
            problems.append(f"{r['path']}: {info.samplerate} Hz, {info.channels} ch, {info.frames} frames")
    rms, peak = level_stats([out / r["path"] for r in rows])
    problems += [f"silent: {r['path']}" for r, v in zip(rows, rms) if v < 2e-3]
    problems += [f"clipped: {r['path']}" for r, v in zip(rows, peak) if v >= 0.999]
    log.info("sources: %s", dict(Counter(r["source"] for r in rows)))
    pct = (5, 50, 95)
    log.info("corpus RMS p5/p50/p95 %s, peak %s", *(np.percentile(v, pct).round(4) for v in (rms, peak)))
    kws = sorted((args.shared / "kws-synth").rglob("*.flac"))
    if kws:
        k_rms, k_peak = level_stats(kws)
        log.info("kws-synth RMS p5/p50/p95 %s, peak %s", *(np.percentile(v, pct).round(4) for v in (k_rms, k_peak)))
    for p in problems[:20]:
        log.error(p)
    log.info("check %s: %d clips, %d problems", "failed" if problems else "passed", len(rows), len(problems))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then build or check the corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--output", type=Path, default=OUTPUT, help="corpus folder, outside the repo (default: %(default)s)")
    add("--clips", type=int, help="total clips (default 3000); with --check: the expected count")
    add("--seconds", type=float, default=1.0, help="clip length (default 1 s)")
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--jobs", type=int, default=min(8, os.cpu_count() or 2), help="espeak-ng threads (default: cores, at most 8)")
    add("--shared", type=Path, default=SHARED, help="real audio to mix in, if there (default: %(default)s)")
    add("--force", action="store_true", help="replace an existing corpus in --output")
    add("--check", action="store_true", help="validate an existing corpus instead of building one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.output = args.output.expanduser().resolve()
    if args.output.is_relative_to(REPO):
        parser.error(f"--output {args.output} is inside the repository {REPO}; write the corpus elsewhere")
    if args.check:
        return check(args)
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng not found; install it with benchmarks/install_system_packages.sh")
    args.clips = 3000 if args.clips is None else args.clips
    build(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
