"""The ``cases`` section of the hotline configuration (PRODUCT.md 3.5, docs/cases.md).

A case is opened when more than a conversation is needed. The section names:

- ``kinds``: what a case can be (crisis abroad, presumed trafficking, high-risk domestic
  violence), on which lines, to which specialist role it is referred first and how many hours
  that role has to take it, and its intake questionnaire;
- ``referral_roles``: the roles of an organisation a case is referred to (a specialist account
  lists the ones it fills);
- ``assistance_kinds``: the services an assistance log records, each saying whether an amount
  applies; ``assistance`` limits an organisation to some of them;
- ``close_reasons``: why a case was closed;
- ``check_seconds``: how often the store looks for late referrals.

Ids (of kinds, roles, services, reasons, intake fields and options) are stored and counted as
they are; labels may change freely. Cross-references to the rest of the file (lines,
organisations, languages, the directory) are checked by :func:`check_references`, called from
:class:`shared.config.HotlineConfig`'s validation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntakeField(_Strict):
    """One question of a case kind's intake.

    ``choice``: option ids (a list where ``multiple``), kept for reports; ``date``: an ISO
    date, kept; ``text``: free text, deleted by retention like message text.
    """

    label: dict[str, str] = Field(min_length=1, description="question by language")
    type: Literal["choice", "date", "text"] = "choice"
    multiple: bool = Field(default=False, description="choice only: a list of options may be chosen")
    options: dict[str, dict[str, str]] = Field(default_factory=dict, description="value -> label by language")
    max_length: int = Field(default=2000, ge=1, le=20000, description="text only: the longest answer")

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == "choice" and not self.options:
            raise ValueError("a choice needs options")
        if self.type != "choice" and (self.options or self.multiple):
            raise ValueError(f"a {self.type} field has no options and is not multiple")
        return self


class Referral(_Strict):
    role: str = Field(description="the referral role a new case of this kind goes to")
    hours: float = Field(gt=0, le=24 * 90, description="hours that role has to take it")


class CaseKind(_Strict):
    title: dict[str, str] = Field(min_length=1, description="name by language")
    lines: list[str] = Field(min_length=1, description="lines on which a case of this kind is opened")
    referral: Referral
    required: list[str] = Field(default_factory=list, description="intake fields that must be answered")
    intake: dict[str, IntakeField] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _required_asked(self) -> Self:
        for name in self.required:
            if name not in self.intake:
                raise ValueError(f"required: no intake field {name!r}")
        return self


class AssistanceKind(_Strict):
    title: dict[str, str] = Field(min_length=1, description="name by language")
    amount: bool = Field(default=False, description="an amount (money spent) is logged with it")


class CasesConfig(_Strict):
    kinds: dict[str, CaseKind] = Field(default_factory=dict)
    referral_roles: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="role id -> name by language"
    )
    assistance_kinds: dict[str, AssistanceKind] = Field(default_factory=dict)
    assistance: dict[str, list[str]] = Field(
        default_factory=dict,
        description="organisation -> the assistance kinds it logs; an organisation not named logs all",
    )
    close_reasons: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="reason id -> label by language, asked when a case is closed"
    )
    check_seconds: float = Field(
        default=60, gt=0, le=3600, description="how often the store looks for referrals past their time"
    )

    def assistance_of(self, organisation: str) -> dict[str, AssistanceKind]:
        """The assistance kinds ``organisation`` logs."""
        offered = self.assistance.get(organisation)
        if offered is None:
            return dict(self.assistance_kinds)
        return {k: self.assistance_kinds[k] for k in offered}

    def kinds_of(self, lines: Iterable[str]) -> dict[str, CaseKind]:
        """The case kinds opened on any of ``lines``."""
        wanted = set(lines)
        return {k: kind for k, kind in self.kinds.items() if wanted & set(kind.lines)}

    def check_intake(self, kind: str, answers: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
        """Validate intake ``answers`` for a case of ``kind``: (answers to keep, missing fields,
        invalid fields). Choices are kept as option ids (sorted lists where multiple), dates as
        ISO dates, texts stripped; empty answers are left out."""
        spec = self.kinds[kind]
        kept: dict[str, Any] = {}
        invalid = sorted(k for k in answers if k not in spec.intake)
        for name, field in spec.intake.items():
            value = answers.get(name)
            if value in (None, "", []):
                continue
            good = _answer(field, value)
            if good is None:
                invalid.append(name)
            else:
                kept[name] = good
        missing = [n for n in spec.required if n not in kept and n not in invalid]
        return kept, missing, sorted(set(invalid))

    def free_text_fields(self, kind: str) -> list[str]:
        """The intake fields of ``kind`` that hold free text (retention deletes them)."""
        spec = self.kinds.get(kind)
        return [n for n, f in spec.intake.items() if f.type == "text"] if spec else []


def _answer(field: IntakeField, value: Any) -> Any:
    """``value`` as stored for ``field``, or None when it is not a valid answer."""
    if field.type == "text":
        if not isinstance(value, str) or not value.strip() or len(value) > field.max_length:
            return None
        return value.strip()
    if field.type == "date":
        try:
            return date.fromisoformat(value).isoformat() if isinstance(value, str) else None
        except ValueError:
            return None
    if field.multiple:
        if not isinstance(value, list) or not all(isinstance(v, str) and v in field.options for v in value):
            return None
        return sorted(set(value))
    return value if isinstance(value, str) and value in field.options else None


def check_references(
    cases: CasesConfig,
    *,
    languages: list[str],
    lines: Iterable[str],
    organisations: Iterable[str],
) -> None:
    """Raise ValueError naming the key of ``cases`` that refers to something the rest of the
    configuration does not have, or is not an id, or has no name in a language."""
    known_lines, known_orgs = set(lines), set(organisations)

    def ids(where: str, names: Iterable[str]) -> None:
        for name in names:
            if not _ID.match(name):
                raise ValueError(f"cases.{where}: {name!r} is not an id (lower case letters, digits, _)")

    def named(where: str, labels: dict[str, str]) -> None:
        missing = [lang for lang in languages if lang not in labels]
        if missing:
            raise ValueError(f"cases.{where}: no name in {', '.join(missing)}")

    ids("kinds", cases.kinds)
    ids("referral_roles", cases.referral_roles)
    ids("assistance_kinds", cases.assistance_kinds)
    ids("close_reasons", cases.close_reasons)
    for role, labels in cases.referral_roles.items():
        named(f"referral_roles.{role}", labels)
    for aid, akind in cases.assistance_kinds.items():
        named(f"assistance_kinds.{aid}.title", akind.title)
    for reason, labels in cases.close_reasons.items():
        named(f"close_reasons.{reason}", labels)
    for kid, kind in cases.kinds.items():
        named(f"kinds.{kid}.title", kind.title)
        ids(f"kinds.{kid}.intake", kind.intake)
        for line in kind.lines:
            if line not in known_lines:
                raise ValueError(f"cases.kinds.{kid}.lines: unknown line {line!r}")
        if kind.referral.role not in cases.referral_roles:
            raise ValueError(f"cases.kinds.{kid}.referral.role: unknown role {kind.referral.role!r}")
    for org, offered in cases.assistance.items():
        if org not in known_orgs:
            raise ValueError(f"cases.assistance: unknown organisation {org!r}")
        for aid in offered:
            if aid not in cases.assistance_kinds:
                raise ValueError(f"cases.assistance.{org}: unknown assistance kind {aid!r}")
    if cases.kinds and not cases.close_reasons:
        raise ValueError("cases.close_reasons: cases are configured, so a case needs reasons to close")
