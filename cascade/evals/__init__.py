"""Evaluation and calibration: deciding on evidence whether a task may use the cheap model.

``evaluate`` runs the cheap model, the strong model and the cascade on labelled examples;
``scoring`` says how answers are scored (references, ``code`` tests, a judge);
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
from .code import CodeLimits, CodeRun, extract_code, run_tests
from .edit import CERTIFIED, certified_validators, number_text, write_learned, write_threshold
from .evaluate import EvalReport, Example, ModeSummary, Outcome, aevaluate, evaluate, load_examples
from .promote import Promotion, infer_validators, promote
from .runs import Progress, run_each, run_mode, with_mode
from .samples import (
    ObservedSamples,
    confidence_validator,
    observed_samples,
    samples_from_records,
    samples_from_runs,
)
from .scoring import Scoring, scorer_of, scoring_of

__all__ = [
    "CERTIFIED",
    "Calibration",
    "CodeLimits",
    "CodeRun",
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
    "Scoring",
    "ValidatorEffect",
    "aevaluate",
    "calibrate",
    "certified_validators",
    "confidence_validator",
    "evaluate",
    "extract_code",
    "fixed_sequence",
    "infer_validators",
    "load_examples",
    "number_text",
    "observed_samples",
    "p_value",
    "promote",
    "quality_at",
    "run_each",
    "run_mode",
    "run_tests",
    "samples_from_records",
    "samples_from_runs",
    "scorer_of",
    "scoring_of",
    "with_mode",
    "write_learned",
    "write_threshold",
]
