"""AU and head-pose timelines with realistic dynamics and co-occurrence.

Expressions come as episodes with onset, apex and offset (FACS timing; DISFA/BP4D episodes last ~0.5-4 s),
drawn from emotion prototypes (Ekman & Friesen's EMFACS predictions) and random AU combinations, with blinks
every few seconds. Episodes are sparse so that, as in DISFA, most frames are 0 for any one AU. Head pose
drifts slowly (sums of low-frequency sinusoids). Intensities are quantised to 0.01 so every label file that
stores them round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from facskit.synth.face_model import POSE_LIMITS_DEG, SYNTH_AUS, Identity, sample_identity
from facskit.synth.render import FaceRenderer, Pose
from facskit.synth.scene import Scene, sample_scene

# Expected fraction of frames inside an expression episode: DISFA-like, most frames neutral.
DEFAULT_ACTIVITY = 0.45
FPS = 20.0  # DISFA's frame rate; episode durations below are in seconds at this rate

# Prototype -> (core AUs with relative strength, optional AUs with probability).
PROTOTYPES: dict[str, tuple[dict[int, float], dict[int, float]]] = {
    "happiness": ({6: 0.9, 12: 1.0}, {25: 0.5, 26: 0.15}),
    "surprise": ({1: 1.0, 2: 1.0, 5: 0.8, 26: 0.8}, {25: 0.8}),
    "sadness": ({1: 1.0, 4: 0.7, 15: 0.9}, {17: 0.4}),
    "anger": ({4: 1.0, 5: 0.6, 7: 0.8, 23: 0.8}, {17: 0.3}),
    "disgust": ({9: 1.0, 10: 0.8}, {17: 0.5, 4: 0.3, 25: 0.3}),
    "fear": ({1: 1.0, 2: 0.8, 4: 0.8, 5: 0.9, 20: 0.9, 26: 0.6}, {25: 0.8}),
    "contempt_like": ({14: 1.0}, {12: 0.3}),
    "speech": ({25: 1.0, 26: 0.6}, {10: 0.2, 17: 0.2, 20: 0.2}),
}
PROTOTYPE_WEIGHTS = {
    "happiness": 0.26,
    "surprise": 0.1,
    "sadness": 0.08,
    "anger": 0.07,
    "disgust": 0.07,
    "fear": 0.05,
    "contempt_like": 0.05,
    "speech": 0.12,
    "random": 0.2,
}


def _envelope(frames: int, start: int, onset: int, apex: int, offset: int) -> np.ndarray:
    """Onset-apex-offset profile (0..1) with smooth (cosine) ramps, length ``frames``."""
    t = np.arange(frames, dtype=np.float64) - start
    up = np.clip(t / max(onset, 1), 0, 1)
    down = np.clip((onset + apex + offset - t) / max(offset, 1), 0, 1)
    ramp = np.minimum(up, down)
    return (1 - np.cos(np.pi * ramp)) / 2


def au_timeline(rng: np.random.Generator, frames: int, activity: float = DEFAULT_ACTIVITY) -> np.ndarray:
    """AU intensities (frames, len(SYNTH_AUS)) in 0..5, quantised to 0.01.

    ``activity`` is the expected fraction of frames inside some expression episode; the rest is neutral
    apart from blinks, so most frames are 0 for any one AU.
    """
    codes = {code: i for i, code in enumerate(SYNTH_AUS)}
    out = np.zeros((frames, len(SYNTH_AUS)))
    mean_length = 60.0
    n_episodes = rng.poisson(max(activity * frames / mean_length, 0.6)) + (1 if frames <= 40 else 0)
    names = list(PROTOTYPE_WEIGHTS)
    p = np.array([PROTOTYPE_WEIGHTS[n] for n in names])
    for _ in range(n_episodes):
        name = names[rng.choice(len(names), p=p / p.sum())]
        if name == "random":
            pool = [c for c in SYNTH_AUS if c != 45]
            core = {
                int(c): float(rng.uniform(0.5, 1.0))
                for c in rng.choice(pool, rng.integers(1, 4), replace=False)
            }
            optional: dict[int, float] = {}
        else:
            core, optional = PROTOTYPES[name]
        apex_level = rng.uniform(1.0, 5.0)
        scale = min(1.0, frames / 60.0)
        onset = int(rng.integers(3, 16) * max(scale, 0.3)) + 1
        apex = int(rng.integers(5, 50) * max(scale, 0.3)) + 1
        offset = int(rng.integers(4, 20) * max(scale, 0.3)) + 1
        start = int(rng.integers(-onset, max(frames - onset, 1)))
        env = _envelope(frames, start, onset, apex, offset)
        chosen = dict(core)
        chosen.update({c: rng.uniform(0.4, 0.9) for c, prob in optional.items() if rng.random() < prob})
        for code, weight in chosen.items():
            level = np.clip(apex_level * weight * rng.uniform(0.75, 1.2), 0, 5)
            lag = int(rng.integers(0, 4))
            out[:, codes[code]] = np.maximum(
                out[:, codes[code]], level * np.roll(env, lag) * (np.arange(frames) >= lag)
            )
    # Blinks every 2-6 s, 4-8 frames long, mostly full closure.
    t = int(rng.integers(0, int(3 * FPS)))
    while t < frames:
        length = int(rng.integers(4, 9))
        env = _envelope(frames, t, length // 2, 0, length - length // 2)
        out[:, codes[45]] = np.maximum(out[:, codes[45]], rng.uniform(3.5, 5.0) * env)
        t += int(rng.uniform(2.0, 6.0) * FPS)
    return np.round(np.clip(out, 0, 5), 2)


def pose_timeline(rng: np.random.Generator, frames: int, head_motion: float = 1.0) -> list[Pose]:
    """Slowly varying head pose: a per-sequence mean plus two low-frequency sinusoids per angle (degrees).

    ``head_motion`` scales the motion *within* the sequence (the sinusoids of the angles, translation and
    scale) but not the per-sequence mean pose; 0 gives a still head. It exists to make videos whose
    frame-to-frame change is mostly facial actions (self-supervised TCAE experiments); the random draws
    are the same for every value, so only the amplitudes change.
    """
    if head_motion < 0:
        raise ValueError(f"head_motion must be >= 0, got {head_motion}")
    t = np.arange(frames) / FPS
    values = {}
    for name, limit, sd in (
        ("yaw", POSE_LIMITS_DEG["yaw"], 11.0),
        ("pitch", POSE_LIMITS_DEG["pitch"], 7.0),
        ("roll", POSE_LIMITS_DEG["roll"], 6.0),
    ):
        mean = rng.normal(0, sd)
        wave = sum(
            rng.uniform(0, sd * 0.6) * np.sin(2 * np.pi * t / rng.uniform(3, 12) + rng.uniform(0, 6.3))
            for _ in range(2)
        )
        values[name] = np.clip(mean + head_motion * wave, -limit, limit)
    tx = rng.uniform(-0.05, 0.05) + head_motion * 0.01 * np.sin(2 * np.pi * t / rng.uniform(4, 10))
    ty = rng.uniform(-0.04, 0.04) + head_motion * 0.01 * np.sin(2 * np.pi * t / rng.uniform(4, 10))
    scale = rng.uniform(0.85, 1.12) * (1 + head_motion * 0.02 * np.sin(2 * np.pi * t / rng.uniform(5, 15)))
    return [
        Pose(
            float(values["yaw"][i]),
            float(values["pitch"][i]),
            float(values["roll"][i]),
            float(tx[i]),
            float(ty[i]),
            float(scale[i]),
        )
        for i in range(frames)
    ]


@dataclass(frozen=True)
class SynthFrame:
    """One generated frame with its ground truth (landmarks in output pixels, pose in degrees)."""

    index: int  # 0-based within the sequence
    image: np.ndarray  # (H, W, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float32
    intensities: np.ndarray  # (len(SYNTH_AUS),) float, 0..5
    yaw: float
    pitch: float
    roll: float


def generate_sequence(
    renderer: FaceRenderer,
    identity: Identity,
    scene: Scene,
    frames: int,
    rng: np.random.Generator,
    activity: float = DEFAULT_ACTIVITY,
    head_motion: float = 1.0,
) -> Iterator[SynthFrame]:
    """Yield ``frames`` rendered frames of one identity; everything random is drawn from ``rng``.

    ``head_motion`` scales the head's motion within the sequence (:func:`pose_timeline`; 1 = default).
    """
    intensities = au_timeline(rng, frames, activity)
    poses = pose_timeline(rng, frames, head_motion)
    for i in range(frames):
        image, landmarks = renderer.render(identity, frame_aus(intensities[i]), poses[i], rng, scene)
        yield SynthFrame(i, image, landmarks, intensities[i], poses[i].yaw, poses[i].pitch, poses[i].roll)


def frame_aus(intensities: np.ndarray) -> dict[int, float]:
    """One frame of an :func:`au_timeline` as the renderer takes it: AU code -> intensity, zeros left out."""
    return {code: float(v) for code, v in zip(SYNTH_AUS, intensities, strict=True) if v > 0}


def random_aus(rng: np.random.Generator, timeline_frames: int) -> dict[int, float]:
    """The AUs of one frame drawn at random from a fresh ``timeline_frames``-long :func:`au_timeline`."""
    return frame_aus(au_timeline(rng, timeline_frames)[int(rng.integers(timeline_frames))])


def random_still(
    renderer: FaceRenderer, rng: np.random.Generator, identity_id: int, timeline_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """One still for measuring what sees the faces (dlib's detection rate, landmark error): identity
    ``identity_id`` drawn from ``rng``, :func:`random_aus`, a near-frontal pose (|yaw| <= 20, |pitch| and
    |roll| <= 15 degrees, scale 0.85-1.1) and a random scene; (image, landmarks) as ``renderer.render``."""
    identity = sample_identity(rng, identity_id)
    aus = random_aus(rng, timeline_frames)
    pose = Pose(
        rng.uniform(-20, 20), rng.uniform(-15, 15), rng.uniform(-15, 15), scale=rng.uniform(0.85, 1.1)
    )
    return renderer.render(identity, aus, pose, rng, sample_scene(rng))
