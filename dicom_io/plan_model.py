"""Which TG-43 seed model a plan's sources are: the user's choice, SourceModelID, or a
suggestion from the Source Sequence (PS3.3 C.8.8.15) for plans that carry no model ID.

Some systems (e.g. Oncentra Prostate) write SourceManufacturer, SourceIsotopeName and
ActiveSourceLength but no SourceModelID.  :func:`choose_seed_model` then names the shipped
models that fit (:func:`brachycryo.dose_kernels.seed_model.suggest_seed_models`) in the
error that asks for ``--model``; ``--model auto`` takes the suggestion when it is unique
and says which model it chose and why — never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from brachycryo.core.errors import ConfigError
from brachycryo.dicom_io.rtplan import BrachyPlan
from brachycryo.dose_kernels.seed_model import SeedModelSuggestion, suggest_seed_models

__all__ = ["AUTO", "SeedModelChoice", "choose_seed_model", "suggest_for_plan"]

#: The ``--model`` value asking for the suggested model.
AUTO = "auto"


@dataclass(frozen=True)
class SeedModelChoice:
    """The seed model to compute with and how it was chosen (for the user's log)."""

    name: str
    origin: str


def suggest_for_plan(plan: BrachyPlan) -> SeedModelSuggestion:
    """The suggestion for a plan's sources; unique only if every source points to one model."""
    used = {s.source_number for s in plan.seeds} or {src.number for src in plan.sources}
    found = [
        suggest_seed_models(src.manufacturer, src.isotope, src.active_length_mm)
        for src in plan.sources
        if src.number in used
    ]
    if not found:
        return suggest_seed_models()
    first = found[0]
    agree = all(f.unique and f.best == first.best for f in found)
    if len(found) == 1 or agree:
        return first
    names = tuple(dict.fromkeys(n for f in found for n in f.candidates))
    return SeedModelSuggestion(names, False, "the plan's sources point to different models")


def _plan_model_ids(plan: BrachyPlan) -> list[str]:
    used = {s.source_number for s in plan.seeds}
    return sorted({src.model for src in plan.sources if src.model and src.number in used})


def choose_seed_model(plan: BrachyPlan, requested: str | None) -> SeedModelChoice:
    """The model for ``plan``: ``requested`` (a name or folder), else the plan's single
    SourceModelID, else — only when ``requested`` is ``"auto"`` — a unique suggestion.

    Raises :class:`ConfigError` (key ``--model``) naming the plan and the suggested models
    when the plan names no model (or several) and none was given.
    """
    if requested and requested.lower() != AUTO:
        return SeedModelChoice(requested, "option")
    ids = _plan_model_ids(plan)
    if len(ids) == 1:
        return SeedModelChoice(ids[0], "the plan's SourceModelID")
    if len(ids) > 1:
        raise ConfigError(
            f"{plan.path}: sources name several seed models {ids}; this engine uses one "
            "model per plan: give --model",
            key="--model",
        )
    hint = suggest_for_plan(plan)
    if requested and hint.best is not None:
        return SeedModelChoice(hint.best, f"--model auto chose {hint.best} ({hint.reason})")
    if hint.best is not None:
        advice = (
            f"it is probably {hint.best} ({hint.reason}): give --model {hint.best!r} "
            f"(or --model auto to take this suggestion)"
        )
    elif hint.candidates:
        advice = (
            f"no unique match ({hint.reason}); candidates: {', '.join(hint.candidates[:6])}: "
            "give --model"
        )
    else:
        advice = f"no shipped model fits ({hint.reason}): give --model"
    what = "--model auto cannot choose" if requested else "names no seed model"
    raise ConfigError(f"{plan.path} {what} (no SourceModelID); {advice}", key="--model")
