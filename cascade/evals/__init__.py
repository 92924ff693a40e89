"""Evaluation and calibration: deciding on evidence whether a task may use the cheap model.

``evaluate`` runs the cheap model, the strong model and the cascade on labelled examples;
``calibrate`` certifies the confidence threshold that keeps a quality target (``exact`` holds
the exact tests); ``samples`` turns observation records or runs into calibration samples;
``edit`` writes a certified threshold into a policy file; ``promote`` writes a policy for a
discovered task from its recorded answers.
"""

from __future__ import annotations

from .calibrate import (
    Calibration,
    Counts,
    Point,
    Sample,
    ValidatorEffect,
    calibrate,
    fixed_sequence,
    p_value,
    quality_at,
)
from .edit import CERTIFIED, certified_validators, write_learned, write_threshold
from .evaluate import (
    EvalReport,
    Example,
    ModeSummary,
    Outcome,
    Progress,
    aevaluate,
    evaluate,
    load_examples,
    run_each,
    run_mode,
    scorer_of,
    with_mode,
)
from .promote import Promotion, infer_validators, promote
from .samples import (
    ObservedSamples,
    confidence_validator,
    observed_samples,
    samples_from_records,
    samples_from_runs,
)

__all__ = [
    "CERTIFIED",
    "Calibration",
    "Counts",
    "EvalReport",
    "Example",
    "ModeSummary",
    "ObservedSamples",
    "Outcome",
    "Point",
    "Progress",
    "Promotion",
    "Sample",
    "ValidatorEffect",
    "aevaluate",
    "calibrate",
    "certified_validators",
    "confidence_validator",
    "evaluate",
    "fixed_sequence",
    "infer_validators",
    "load_examples",
    "observed_samples",
    "p_value",
    "promote",
    "quality_at",
    "run_each",
    "run_mode",
    "samples_from_records",
    "samples_from_runs",
    "scorer_of",
    "with_mode",
    "write_learned",
    "write_threshold",
]
