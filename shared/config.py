"""The hotline configuration (``deploy/config/hotline.yaml``): lines, organisations, queues.

Validated at start-up: a service refuses to start on a bad file and names the key. Adding
an organisation, region, queue or language is a change to the YAML only.
"""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.cases_config import CasesConfig, check_references

# The authserv-id a mailbox trusts (RFC 8601 2.5): in practice the receiving server's host name.
AUTHSERV_ID = r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,252})?$"


class _Strict(BaseModel):
    # Unknown keys are typos in an operator's file: refuse them rather than ignore them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organisation(_Strict):
    name: str


class Hours(_Strict):
    """When consultants are on duty: every day from ``open`` to ``close`` local time,
    except on ``holidays`` (closed all day)."""

    timezone: str = "Europe/Minsk"
    open: time = time(8, 0)
    close: time = time(20, 0)
    holidays: list[date] = Field(default_factory=list, description="dates with no duty at all")

    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        if not self.open < self.close:
            raise ValueError("open must be before close")
        return self


class Topic(_Strict):
    title: dict[str, str] = Field(default_factory=dict, description="name by language")
    skill: str | None = Field(default=None, description="skill a conversation on it needs")
    crisis: bool = Field(default=False, description="urgent: answered first")


class Queue(_Strict):
    line: str
    organisations: list[str] = Field(min_length=1, description="who may see and take its threads")
    skill: str
    title: dict[str, str] = Field(default_factory=dict)


class Retention(_Strict):
    """How long a line keeps what people wrote (services/store/retention.py); a field left
    out takes the store's setting (``STORE_RETENTION_DAYS``, ``STORE_RETENTION_UNCLOSED_DAYS``)."""

    days: int | None = Field(
        default=None, ge=1, description="free text is deleted this many days after its thread closed"
    )
    unclosed_days: int | None = Field(
        default=None,
        ge=1,
        description="a thread never closed loses its free text after this many days without a message",
    )


class Line(_Strict):
    name: str
    retention: Retention = Retention()
    hours: Hours = Hours()
    email: str | None = Field(default=None, description="the line's public address")
    default_queue: str = Field(description="where a conversation goes when nothing else decides")
    region_queues: dict[str, str] = Field(
        default_factory=dict, description="region -> queue (the partner NGO serving it)"
    )
    skill_queues: dict[str, str] = Field(
        default_factory=dict, description="skill -> queue, for topics that need a specialist"
    )
    topics: dict[str, Topic] = Field(default_factory=dict)
    auto_answer_period_hours: float = Field(
        default=24,
        gt=0,
        description="a mail that starts a thread gets an automatic answer only when its sender got none "
        "for such a mail from this line in this many hours (RFC 3834 2; docs/email.md, Robots and loops)",
    )


class AutoAnswers(_Strict):
    """Texts the gateway sends by itself, by language. ``{opens}`` in the out-of-hours text
    is replaced by the next opening time."""

    acknowledgement: dict[str, str] = Field(min_length=1)
    out_of_hours: dict[str, str] = Field(min_length=1)


class QueuePolicy(_Strict):
    capacity: dict[str, int] = Field(
        default_factory=lambda: {"chat": 3, "telegram": 3, "email": 10},
        description="conversations one consultant may hold at once, per channel",
    )
    claim_timeout_minutes: float = Field(
        default=15, gt=0, description="a claimed thread with no reply goes back after this"
    )
    crisis_escalation_minutes: float = Field(
        default=10, gt=0, description="a crisis waiting this long is bumped and raised"
    )
    client_silent_minutes: float = Field(
        default=15,
        ge=0,
        description="a web chat whose client has not written this long, waiting or held, is marked "
        "as left in the console (conversations/client_left.py); 0 turns the rule off",
    )
    skill_wait_minutes: float = Field(
        default=0,
        ge=0,
        description="a waiting thread whose language or topic needs a consultant who has it is "
        "offered to them alone this long, then to the whole queue (docs/console.md); 0: to everyone "
        "at once (routing by skill and language off)",
    )
    common_languages: list[str] = Field(
        default_factory=list,
        description="languages every consultant speaks (default: the first of languages); a thread "
        "in another language is offered first to consultants who list it",
    )


class CaseField(_Strict):
    """One question of the case form: categorical answers only, so statistics can count them.

    Its options are either listed (value id -> label by language) or taken from the
    configuration (``options_from``: the regions, or the topics of the thread's line).
    """

    label: dict[str, str] = Field(min_length=1, description="question by language")
    multiple: bool = Field(default=False, description="a list of options may be chosen")
    options: dict[str, dict[str, str]] = Field(default_factory=dict, description="value -> label by language")
    options_from: Literal["regions", "topics"] | None = None
    lines: list[str] | None = Field(default=None, description="asked only on these lines; default: all")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if bool(self.options) == bool(self.options_from):
            raise ValueError("give either options or options_from")
        return self


class CaseForm(_Strict):
    required: list[str] = Field(
        default_factory=lambda: ["client_role", "gender", "age_group"],
        description="fields a consultant must answer to close a thread (where the field is asked)",
    )
    fields: dict[str, CaseField] = Field(
        default_factory=dict, description="the questionnaire; empty: any answers, only required checked"
    )


# Why a contact ended without a consultation (PRODUCT.md 3.6): spam or a robot, a test, a client
# who said nothing or left, a wrong address, abuse, a duplicate of another contact. Used when the
# configuration names none, so closing without a consultation works on every existing file.
DEFAULT_CLOSE_REASONS: dict[str, dict[str, str]] = {
    "spam": {"ru": "Спам или робот", "be": "Спам або робат", "en": "Spam or robot"},
    "test": {"ru": "Тест", "be": "Тэст", "en": "Test"},
    "silent": {
        "ru": "Молчание или клиент ушёл",
        "be": "Маўчанне або кліент пайшоў",
        "en": "Silent or abandoned",
    },
    "wrong_address": {"ru": "Не по адресу", "be": "Не па адрасе", "en": "Wrong address"},
    "abusive": {"ru": "Оскорбления", "be": "Абразы", "en": "Abusive"},
    "duplicate": {"ru": "Дубликат", "be": "Дублікат", "en": "Duplicate"},
}
# A reason id is stored and counted as it is, like a case-form option id.
_REASON_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class CannedAnswer(_Strict):
    """A ready answer a consultant can insert and edit: a title and a text by language."""

    title: dict[str, str] = Field(min_length=1)
    text: dict[str, str] = Field(min_length=1)


class SmtpAccount(_Strict):
    """The SMTP server and login a mailbox's replies leave through (docs/email.md). The
    password is never in the file: ``password_env`` names the environment variable."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS (587), implicit TLS (465), or none (loopback only)"
    )
    user: str | None = Field(default=None, description="SMTP login; none: the server wants none")
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="environment variable"
    )
    tls_ca_file: str | None = Field(default=None, description="CA bundle (PEM) trusted for this server")

    @model_validator(mode="after")
    def _login(self) -> Self:
        if (self.user is None) != (self.password_env is None):
            raise ValueError("user and password_env go together")
        return self


class MailboxSpec(_Strict):
    """One watched mailbox (docs/email.md). The password is never in the file: it is read
    from the environment variable named by ``password_env``."""

    line: str = Field(description="the line whose inbox this is")
    organisation: str | None = Field(default=None, description="the organisation it belongs to, if one")
    imap_host: str
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_tls: bool = Field(default=True, description="implicit TLS (IMAPS); off only on loopback")
    # A path, not a checked file: every service reads this file, only email_ingest opens it.
    tls_ca_file: str | None = Field(
        default=None,
        description="CA bundle (PEM) trusted for this IMAP server instead of EMAIL_INGEST_TLS_CA_FILE "
        "or the system's",
    )
    user: str
    password_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$", description="environment variable")
    folder: str = "INBOX"
    from_address: str | None = Field(default=None, description="From of replies; default: the line's email")
    from_name: str | None = Field(default=None, description="display name of replies; '' for none")
    reply_subject: str | None = Field(default=None, description="a fixed, neutral subject for replies")
    send_per_minute: int | None = Field(default=None, ge=1, description="reply rate limit of this line")
    trusted_authserv_id: str | None = Field(
        default=None,
        pattern=AUTHSERV_ID,
        description="authserv-id of the server whose Authentication-Results this mailbox trusts "
        "(docs/email.md, Authenticated threading); none: From is taken as it comes",
    )
    reply_to: str | None = Field(
        default=None, description="Reply-To of replies; default: none (replies come to From)"
    )
    signature: str | None = Field(
        default=None, max_length=2000, description="text under each consultant's reply (after '-- ')"
    )
    smtp: SmtpAccount | None = Field(
        default=None,
        description="SMTP server and login of this mailbox's replies; default: EMAIL_INGEST_SMTP_*",
    )


class DirectoryEntry(_Strict):
    """A contact the bot and the widget give without a consultant: texts by language. An
    ``id`` lets a case's external referral name it (conversations/cases.py)."""

    id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,39}$", description="stable id")
    name: dict[str, str] = Field(min_length=1, description="name by language")
    phone: str | None = Field(default=None, max_length=40)
    address: dict[str, str] = Field(default_factory=dict, description="address by language")
    note: dict[str, str] = Field(default_factory=dict, description="hours, who it is for, by language")
    url: str | None = Field(default=None, pattern=r"^https://")


class Directory(_Strict):
    """Emergency contacts and help by region (PRODUCT.md 3.3): the chatbot answers from it."""

    emergency: list[DirectoryEntry] = Field(default_factory=list)
    regions: dict[str, list[DirectoryEntry]] = Field(
        default_factory=dict, description="region id -> organisations, shelters, crisis centres"
    )
    national: list[DirectoryEntry] = Field(
        default_factory=list, description="shown with every region: helplines serving the whole country"
    )


class HotlineConfig(_Strict):
    case_form: CaseForm = CaseForm()
    close_reasons: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_CLOSE_REASONS.items()},
        min_length=1,
        description="reason id -> label by language, for closing without a consultation",
    )
    canned_answers: dict[str, list[CannedAnswer]] = Field(
        default_factory=dict, description="line -> ready answers consultants may insert"
    )
    directory: Directory = Directory()
    queue_policy: QueuePolicy = QueuePolicy()
    danger_words: dict[str, list[str]] = Field(
        default_factory=dict, description="language -> words that make a message urgent"
    )
    auto_answers: AutoAnswers
    languages: list[str] = Field(min_length=1)
    regions: dict[str, dict[str, str]] = Field(description="region id -> names by language")
    organisations: dict[str, Organisation] = Field(min_length=1)
    lines: dict[str, Line] = Field(min_length=1)
    queues: dict[str, Queue] = Field(min_length=1)
    mailboxes: dict[str, MailboxSpec] = Field(
        default_factory=dict, description="mailboxes email_ingest watches, by name (besides its env one)"
    )
    cases: CasesConfig = Field(
        default_factory=CasesConfig, description="case kinds, referral roles, assistance (docs/cases.md)"
    )

    @model_validator(mode="after")
    def _references(self) -> Self:
        for qname, queue in self.queues.items():
            if queue.line not in self.lines:
                raise ValueError(f"queues.{qname}.line: unknown line {queue.line!r}")
            for org in queue.organisations:
                if org not in self.organisations:
                    raise ValueError(f"queues.{qname}.organisations: unknown organisation {org!r}")
        for lname, line in self.lines.items():
            if line.default_queue not in self.queues:
                raise ValueError(f"lines.{lname}.default_queue: unknown queue {line.default_queue!r}")
            for region, qname in line.region_queues.items():
                if region not in self.regions:
                    raise ValueError(f"lines.{lname}.region_queues: unknown region {region!r}")
                if qname not in self.queues:
                    raise ValueError(f"lines.{lname}.region_queues.{region}: unknown queue {qname!r}")
            for skill, qname in line.skill_queues.items():
                if qname not in self.queues:
                    raise ValueError(f"lines.{lname}.skill_queues.{skill}: unknown queue {qname!r}")
            for tname, topic in line.topics.items():
                if topic.skill and topic.skill not in line.skill_queues:
                    raise ValueError(f"lines.{lname}.topics.{tname}.skill: no queue for {topic.skill!r}")
        for kind in ("acknowledgement", "out_of_hours"):
            texts = getattr(self.auto_answers, kind)
            missing = [lang for lang in self.languages if lang not in texts]
            if missing:
                raise ValueError(f"auto_answers.{kind}: no text for {', '.join(missing)}")
        for region in self.directory.regions:
            if region not in self.regions:
                raise ValueError(f"directory.regions: unknown region {region!r}")
        entries = [("emergency", e) for e in self.directory.emergency]
        entries += [("national", e) for e in self.directory.national]
        entries += [(f"regions.{r}", e) for r, es in self.directory.regions.items() for e in es]
        for where, entry in entries:
            missing = [lang for lang in self.languages if lang not in entry.name]
            if missing:
                raise ValueError(
                    f"directory.{where}: {next(iter(entry.name.values()))!r} has no name in {missing}"
                )
        named = [e.id for _, e in entries if e.id is not None]
        if len(named) != len(set(named)):
            raise ValueError(f"directory: ids used twice: {sorted({i for i in named if named.count(i) > 1})}")
        check_references(
            self.cases, languages=self.languages, lines=self.lines, organisations=self.organisations
        )
        for mname, box in self.mailboxes.items():
            if box.line not in self.lines:
                raise ValueError(f"mailboxes.{mname}.line: unknown line {box.line!r}")
            if box.organisation is not None and box.organisation not in self.organisations:
                raise ValueError(f"mailboxes.{mname}.organisation: unknown organisation {box.organisation!r}")
        for fname, cfield in self.case_form.fields.items():
            for lname in cfield.lines or []:
                if lname not in self.lines:
                    raise ValueError(f"case_form.fields.{fname}.lines: unknown line {lname!r}")
        if self.case_form.fields:
            for fname in self.case_form.required:
                if fname not in self.case_form.fields:
                    raise ValueError(f"case_form.required: no field {fname!r}")
        for reason, labels in self.close_reasons.items():
            if not _REASON_ID.match(reason):
                raise ValueError(f"close_reasons: {reason!r} is not an id (lower case letters, digits, _)")
            if not labels:
                raise ValueError(f"close_reasons.{reason}: no label")
        for lname in self.canned_answers:
            if lname not in self.lines:
                raise ValueError(f"canned_answers: unknown line {lname!r}")
        return self

    def case_fields(self, line: str) -> dict[str, dict[str, Any]]:
        """The case form asked on ``line``: per field its label, whether several answers may be
        chosen, whether it is required, and its options (value -> label by language)."""
        if line not in self.lines:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for name, f in self.case_form.fields.items():
            if f.lines is not None and line not in f.lines:
                continue
            if f.options_from == "regions":
                options = self.regions
            elif f.options_from == "topics":
                options = {t: topic.title for t, topic in self.lines[line].topics.items()}
            else:
                options = f.options
            out[name] = {
                "label": f.label,
                "multiple": f.multiple,
                "required": name in self.case_form.required,
                "options": options,
            }
        return out

    def check_case(self, line: str, case: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
        """Validate a case form for a thread of ``line``: (the answers to keep, missing fields,
        invalid fields). Kept answers are option ids: a string, or a list for a field with
        ``multiple`` (statistics count them as they are)."""
        fields = self.case_fields(line)
        if not self.case_form.fields:  # no questionnaire configured: only the required check
            missing = [f for f in self.case_form.required if case.get(f) in (None, "", [])]
            return case, missing, []
        kept: dict[str, Any] = {}
        invalid = sorted(k for k in case if k not in fields)
        for name, spec in fields.items():
            value = case.get(name)
            if value in (None, "", []):
                continue
            options = spec["options"]
            if spec["multiple"]:
                values = value if isinstance(value, list) else None
                if values is None or not all(isinstance(v, str) and v in options for v in values):
                    invalid.append(name)
                    continue
                kept[name] = sorted(set(values))
            elif isinstance(value, str) and value in options:
                kept[name] = value
            else:
                invalid.append(name)
        missing = [n for n, spec in fields.items() if spec["required"] and n not in kept and n not in invalid]
        return kept, missing, sorted(set(invalid))

    def directory_entry(self, entry_id: str) -> DirectoryEntry | None:
        """The directory entry with ``entry_id`` (a case's external referral names one)."""
        entries = [*self.directory.emergency, *self.directory.national]
        entries += [e for es in self.directory.regions.values() for e in es]
        return next((e for e in entries if e.id == entry_id), None)

    def own_queue(self, organisation: str, line: str, skill: str | None = None) -> str | None:
        """``organisation``'s own queue on ``line`` (one no other organisation shares), the one
        of ``skill`` first; None when it has none there."""
        own = [n for n, q in self.queues.items() if q.line == line and q.organisations == [organisation]]
        own.sort(key=lambda n: self.queues[n].skill != skill)
        return own[0] if own else None

    def queues_visible_to(self, organisation: str | None, lines: list[str]) -> list[str]:
        """Queue names a member of ``organisation`` working on ``lines`` may see.

        ``organisation`` None means every organisation (a supervisor of whole lines).
        """
        return [
            name
            for name, q in self.queues.items()
            if q.line in lines and (organisation is None or organisation in q.organisations)
        ]


class ConfigError(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: YAML 1.2 requires keys
    to be unique, and PyYAML would silently keep the last one (a topic, a queue or a label
    written twice would lose the first without a word)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: Path) -> HotlineConfig:
    """Read and validate the YAML file; raise ConfigError naming the file and the bad key."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return HotlineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
