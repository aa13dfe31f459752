"""The OpenAPI 3.1 document of the store's HTTP API, served at ``/api/openapi.json``.

The list of paths comes from the application's router, so the document can never name a
route that does not exist nor miss one that does; what each operation means, who may call
it and what it answers is written here. A route added elsewhere (e.g. statistics) without
an entry here is still listed, described by its handler's docstring; tests/unit/test_openapi.py
fails when one of this module's operations has no route, or a console route has no entry.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _ok(description: str, schema: Schema | None = None) -> Schema:
    out: Schema = {"description": description}
    if schema is not None:
        out.update(_json(schema))
    return out


PROBLEM = {
    "description": "problem details (RFC 9457)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}


def _body(schema: Schema) -> Schema:
    return {"required": True, **_json(schema)}


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


STR: Schema = {"type": "string"}
TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
NULLABLE: Schema = {"type": ["string", "null"]}

COMPONENTS: Schema = {
    "schemas": {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": STR,
                "title": STR,
                "status": {"type": "integer"},
                "detail": STR,
                "missing": {"type": "array", "items": STR},
                "invalid": {"type": "array", "items": STR},
            },
        },
        "Consultant": _obj(
            ["login", "name", "role", "lines"],
            login=STR,
            name=STR,
            role={"enum": ["consultant", "specialist", "supervisor", "admin", "national_admin"]},
            organisation={"type": ["string", "null"]},
            lines={"type": "array", "items": STR},
            specialist_roles={"type": "array", "items": STR, "description": "a specialist's referral roles"},
            status={"enum": ["available", "away", "offline"]},
        ),
        "Queue": _obj(
            ["name", "line", "waiting", "oldest_waiting_since"],
            name=STR,
            line=STR,
            title={"type": "object", "additionalProperties": STR},
            waiting={"type": "integer"},
            oldest_waiting_since=TIME,
        ),
        "Thread": _obj(
            ["id", "channel", "line", "queue", "status", "priority"],
            id=STR,
            channel={"enum": ["email", "chat", "telegram"]},
            line=STR,
            queue=STR,
            status={"enum": ["waiting", "active", "closed"]},
            priority={"type": "integer"},
            assignee={"type": ["string", "null"]},
            subject={"type": ["string", "null"]},
            language={"type": ["string", "null"]},
            region={"type": ["string", "null"]},
            topic={"type": ["string", "null"]},
            waiting_since=TIME,
            sender_unverified={
                "type": "boolean",
                "description": "present (true) when a mail whose sender the trusted mail server did not "
                "verify opened the thread: kept apart from the person its From names (docs/email.md)",
            },
            reserved={
                "type": ["object", "null"],
                "description": "in a list: kept for colleagues with a language or skill the caller lacks "
                "(for: {language, skill}) until `until`; claim refuses it before then",
            },
            case={"type": "object", "description": "case form answers: option ids, lists when multiple"},
            outcome={"enum": ["consultation", "no_consultation"], "description": "how a closed thread ended"},
            no_consultation_reason={"type": "string", "description": "a configured close reason id"},
            consultation=_obj(
                ["n", "started_at"],
                n={"type": "integer", "description": "the thread's current (or last) consultation, from 1"},
                started_at=TIME,
                queues={"type": "array", "items": STR, "description": "the queues it went through"},
                consultants={"type": "array", "items": STR, "description": "who answered in it"},
            ),
            client_id={"type": ["string", "null"], "description": "the person (pseudonymous), where known"},
            client_link=_obj(
                ["previous", "by", "at", "thread"],
                previous={"type": ["string", "null"], "description": "the client an undo gives back"},
                by=STR,
                at=TIME,
                thread={"type": "string", "description": "the thread whose client was taken"},
            ),
            cannot_reply={
                "enum": ["no_sender"],
                "description": "why no reply can be sent: no_sender, the mail gave no usable sender address",
            },
            client_left=_obj(
                ["why", "at"],
                why={
                    "enum": ["not_safe", "quick_exit", "silent"],
                    "description": "not_safe: the client said it is not safe now; no reply until they write",
                },
                at={
                    **TIME,
                    "description": "when the session ended or the client said so; for silent, "
                    "the client's last message",
                },
                marked_at=TIME,
            ),
        ),
        "Message": _obj(
            ["id", "thread_id", "direction", "author", "created_at"],
            id=STR,
            thread_id=STR,
            direction={"enum": ["in", "out", "note"]},
            author={"type": "string", "description": "client | bot | consultant:<login>"},
            text=STR,
            html={"type": ["string", "null"], "description": "sanitised e-mail HTML"},
            sender_auth={
                **_obj(
                    ["verdict"],
                    verdict={
                        "enum": ["verified", "failed", "unknown"],
                        "description": "what the mailbox's trusted mail server said of the sender; "
                        "unknown: no server trusted (null or absent: stored before the check)",
                    },
                    detail={"type": "string", "description": "the deciding results (method=result)"},
                ),
                "type": ["object", "null"],
            },
            quoted={"type": ["string", "null"], "description": "quoted e-mail history"},
            email_problems={
                "type": "array",
                "items": {"enum": ["no_sender", "unreadable_part"]},
                "description": "what could not be read of the mail (no_sender: no address to reply to; "
                "unreadable_part: a part whose bytes did not decode)",
            },
            attachments={"type": "array", "items": {"type": "object"}},
            delivery=_obj(
                [],
                status={"enum": ["queued", "sent", "failed", "held", "cancelled"]},
                at=TIME,
                detail={
                    "type": ["string", "null"],
                    "description": "why it failed, or why the safe-contact plan holds it",
                },
            ),
            created_at=TIME,
        ),
        "ContactPlan": _obj(
            [],
            channels={
                "type": ["array", "null"],
                "items": {"enum": ["email", "chat", "telegram"]},
                "description": "channels a reply may leave by; null: any",
            },
            quiet_hours={
                "type": ["object", "null"],
                "properties": {"from": STR, "to": STR},
                "description": "local times (HH:MM) in the line's time zone; across midnight when from > to",
            },
            write_first={"type": "boolean", "description": "answer only when they write first"},
            sender_name={"type": ["string", "null"], "maxLength": 80, "description": "neutral From name"},
            subject={"type": ["string", "null"], "maxLength": 120, "description": "neutral Subject"},
        ),
        "QuarantinedMail": _obj(
            ["source_id", "reason"],
            source_id={"type": "string", "description": "imap:<mailbox>:<UIDVALIDITY>:<UID>"},
            mailbox=STR,
            line={"type": ["string", "null"]},
            reason={"type": "string", "description": "why it is quarantined (docs/email.md)"},
            size={"type": ["integer", "null"]},
            stored_at=TIME,
            kept={"type": "boolean", "description": "its bytes are kept, so a replay can read it"},
            replay_requested={"type": "boolean", "description": "a replay is asked for, not yet done"},
            last_replay={
                "type": ["object", "null"],
                "properties": {"at": TIME, "outcome": STR},
                "description": "how the last replay asked for in the console ended, if it did not",
            },
        ),
        "ThreadWithMessages": {
            "allOf": [
                _ref("Thread"),
                _obj(["messages"], messages={"type": "array", "items": _ref("Message")}),
            ]
        },
        "Event": _obj(["id", "thread_id", "name", "at"], id=STR, thread_id=STR, name=STR, at=TIME, by=STR),
        "Case": _obj(
            ["id", "reference", "number", "organisation", "line", "kind", "status", "opened_at", "overdue"],
            id=STR,
            reference={"type": "string", "description": "<ORGANISATION>-<number>, e.g. LASTRADA-17"},
            number={"type": "integer", "description": "per organisation, from 1"},
            organisation=STR,
            line=STR,
            kind={"type": "string", "description": "a case kind id of GET /api/cases/settings"},
            status={"enum": ["open", "active", "monitoring", "closed"]},
            close_reason={"type": ["string", "null"], "description": "a case close reason id"},
            opened_at=TIME,
            opened_by=STR,
            referral=_obj(
                ["role", "due_at"],
                role=STR,
                due_at={**TIME, "description": "by when someone of the role must take it"},
                referred_at=TIME,
                referred_by=STR,
                taken_by={"type": ["string", "null"]},
                taken_at=TIME,
                alerted_at={**TIME, "description": "when supervisors were told nobody took it in time"},
            ),
            assignee={"type": ["string", "null"]},
            next_followup_at=TIME,
            overdue={"type": "boolean", "description": "a referral nobody took in time, or a follow-up due"},
            thread_id={"type": ["string", "null"]},
            consultation_id={"type": ["string", "null"], "description": "<thread id>:<n>"},
            client_id={"type": ["string", "null"]},
            updated_at=TIME,
            closed_at=TIME,
        ),
        "CaseWithLog": {
            "allOf": [
                _ref("Case"),
                _obj(
                    ["intake", "services", "external_referrals", "followups", "notes", "history"],
                    intake={"type": "object", "description": "option ids, ISO dates and free text by field"},
                    services={"type": "array", "items": _ref("CaseService")},
                    external_referrals={"type": "array", "items": _ref("CaseExternalReferral")},
                    followups={"type": "array", "items": _ref("CaseFollowUp")},
                    notes={"type": "array", "items": _ref("CaseNote")},
                    history={"type": "array", "items": _ref("CaseEvent")},
                ),
            ]
        },
        "CaseNote": _obj(["id", "at", "by", "text"], id=STR, at=TIME, by=STR, text=NULLABLE),
        "CaseEvent": _obj(["id", "name", "at"], id=STR, name=STR, at=TIME, by=NULLABLE),
        "CaseService": _obj(
            ["id", "kind", "date", "by"],
            id=STR,
            kind={"type": "string", "description": "an assistance kind id"},
            date={"type": "string", "format": "date"},
            by=STR,
            at=TIME,
            amount={"type": ["number", "null"]},
            note={"type": ["string", "null"]},
        ),
        "CaseExternalReferral": _obj(
            ["id", "to", "at", "by"],
            id=STR,
            to={"type": "string", "description": "a directory entry id"},
            at=TIME,
            by=STR,
            result={"type": ["string", "null"]},
            result_at=TIME,
        ),
        "CaseFollowUp": _obj(
            ["id", "due", "by"],
            id=STR,
            due=TIME,
            note={"type": ["string", "null"]},
            by=STR,
            at=TIME,
            done_at=TIME,
            done_by={"type": ["string", "null"]},
            alerted_at=TIME,
        ),
        "EarlierConsultation": _obj(
            ["id", "thread_id", "started_at", "channel", "line", "outcome"],
            id=STR,
            thread_id=STR,
            started_at=TIME,
            closed_at=TIME,
            channel={"enum": ["email", "chat", "telegram", "phone"]},
            line=STR,
            organisation={"type": ["string", "null"], "description": "the organisation it counts for"},
            outcome={"enum": ["consultation", "no_consultation"]},
            reason={"type": ["string", "null"], "description": "a configured close reason id"},
            case={"type": "object", "description": "categorical answers of the case form (option ids)"},
            consultants={"type": "array", "items": STR},
            closed_by={"type": ["string", "null"]},
        ),
    }
}

THREAD_ID = {"name": "id", "in": "path", "required": True, "schema": STR}
# Who may call a route about one case (services/store/cases.py).
CASE_ACCESS = "the owning organisation's specialists and supervisors (others: 404)"

# (method, path) -> (who may call it, operation). "who" is documentation for readers of the
# document (x-access); the access-matrix test checks the behaviour independently.
OPERATIONS: dict[tuple[str, str], tuple[str, Schema]] = {
    ("POST", "/api/session"): ("anyone", {
        "summary": "Log in: sets the HttpOnly session cookie, returns the consultant and a CSRF token",
        "description": "Also sets the device cookie hl_device: failed log-ins are counted per "
        "(login, source) and per source, a source being this browser once it logged in as that "
        "login, else the peer address. Past the free failures each attempt from that source waits, "
        "longer each time (429 with Retry-After, the password unchecked); nobody is locked out.",
        "requestBody": _body(_obj(["login", "password"], login=STR, password=STR)),
        "responses": {
            "200": _ok("logged in; or, with second_factor (code or enrol), past the password only: "
                       "that step next, every other route answers 401 until it is passed",
                       _obj(["csrf_token"], consultant=_ref("Consultant"), csrf_token=STR,
                            second_factor={"enum": ["code", "enrol"]})),
            "400": PROBLEM, "401": PROBLEM, "413": PROBLEM, "415": PROBLEM, "422": PROBLEM,
            "429": {**PROBLEM, "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}},  # noqa: E501
        },
    }),
    ("DELETE", "/api/session"): ("session", {
        "summary": "Log out: the session ends at once, and its live /api/events sockets close (4401)",
        "responses": {"200": _ok("logged out"), "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/me"): ("session", {
        "summary": "The logged-in consultant with their availability, and the session's CSRF token",
        "responses": {"200": _ok("me", _obj(["consultant", "csrf_token"], consultant=_ref("Consultant"), csrf_token=STR)), "401": PROBLEM},  # noqa: E501
    }),
    ("PUT", "/api/me/status"): ("session", {
        "summary": "Set availability; offline gives every held conversation back to its queue",
        "requestBody": _body(_obj(["status"], status={"enum": ["available", "away", "offline"]})),
        "responses": {"200": _ok("set"), "401": PROBLEM, "403": PROBLEM, "422": PROBLEM},
    }),
    ("GET", "/api/config"): ("session", {
        "summary": "Case form, canned answers, close reasons and transfer targets of the consultant's lines",
        "responses": {"200": _ok("console configuration", {"type": "object"}), "401": PROBLEM},
    }),
    ("GET", "/api/queues"): ("session", {
        "summary": "Queues this consultant may see, with waiting count and oldest wait",
        "responses": {"200": _ok("queues", {"type": "array", "items": _ref("Queue")}), "401": PROBLEM},
    }),
    ("GET", "/api/threads"): ("session", {
        "summary": "Threads of visible queues, waiting ones by priority then age",
        "description": "Paged: at most `limit` threads (default and maximum 200) from page `page`; a "
        "`Link: <...>; rel=\"next\"` header names the next page when there is one. Open threads in "
        "the order next hands them out (priority, then longest waiting), closed ones latest closed "
        "first. Ask by status (the console asks for waiting and active): without one, closed threads "
        "share the pages with open ones.",
        "parameters": [
            {"name": "queue", "in": "query", "schema": STR},
            {"name": "status", "in": "query", "schema": {"enum": ["waiting", "active", "closed"]}},
            {"name": "mine", "in": "query", "schema": {"enum": ["1"]}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 200}},  # noqa: E501
            {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},  # noqa: E501
        ],
        "responses": {
            "200": {
                **_ok("threads", {"type": "array", "items": _ref("Thread")}),
                "headers": {"Link": {"description": 'rel="next": the next page, when there is one', "schema": STR}},  # noqa: E501
            },
            "401": PROBLEM, "404": PROBLEM, "422": PROBLEM,
        },
    }),
    ("POST", "/api/queues/{queue}/next"): ("queue", {
        "summary": "Claim the most urgent, longest-waiting thread of the queue",
        "description": "From a shared queue, the thread moves to the claimer's organisation's own queue.",
        "parameters": [{"name": "queue", "in": "path", "required": True, "schema": STR}],
        "responses": {
            "200": _ok("claimed", _ref("Thread")), "204": {"description": "nobody is waiting"},
            "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM,
        },
    }),
    ("POST", "/api/threads/{id}/claim"): ("thread", {
        "summary": "Claim one thread; 409 when someone else holds it",
        "description": "A thread of a queue several organisations share moves to the claimer's "
        "organisation's own queue of the line (answered with its new queue); released, it returns. "
        "409 too while the thread is kept for colleagues with its language or skill (its `reserved`).",
        "responses": {"200": _ok("claimed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}"): ("thread", {
        "summary": "The thread with its messages and notes (the read is recorded)",
        "responses": {"200": _ok("thread", _ref("ThreadWithMessages")), "401": PROBLEM, "404": PROBLEM},
    }),
    ("POST", "/api/threads/{id}/attachments"): ("thread holder", {
        "summary": "Attach a file to the next reply by e-mail: a PDF or an image, cleaned of its metadata",
        "description": "multipart/form-data with one part named file, at most "
        "STORE_MAX_REPLY_ATTACHMENT_BYTES (413 beyond). A PDF's pages are copied into a new document "
        "without its information dictionary, XMP metadata, scripts, actions or annotations; an image is "
        "decoded and encoded again (no EXIF); anything else is refused (415), and a PDF with a password "
        "(422). Stored sealed under the thread's key; name its id in the reply's attachments. E-mail "
        "threads only (422); the thread must be claimed by the caller (409).",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _obj(
            ["file"], file={"type": "string", "format": "binary"})}}},
        "responses": {
            "201": _ok("stored", _obj(["id", "filename", "content_type", "size"], id=STR, filename=STR,
                                       content_type=STR, size={"type": "integer"})),
            "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "413": PROBLEM, "415": PROBLEM,
            "422": PROBLEM,
        },
    }),
    ("GET", "/api/threads/{id}/attachments/{attachment}"): ("thread", {
        "summary": "An attachment of the thread's messages, as a download (the read is recorded)",
        "description": "Content-Disposition: attachment, X-Content-Type-Options: nosniff, no caching. "
        "Images are decoded and encoded again on the server, so EXIF (GPS), XMP and anything hidden "
        "after the pixels are dropped; anything else is application/octet-stream. 404 for an "
        "attachment of another thread, or one larger than the intake keeps.",
        "responses": {"200": {"description": "the file"}, "401": PROBLEM, "404": PROBLEM},
    }),
    ("GET", "/api/threads/{id}/person/export"): ("thread, supervisor or admin", {
        "summary": "A copy of everything held about the thread's person that you may see (subject access)",
        "description": "One JSON file: each of the person's threads (all threads of the thread's client; the "
        "thread alone when it has none) with its messages as written, notes included, its consultations, and "
        "the person's cases. Each thread exported is recorded in its read audit. services/store/erasure.py.",
        "responses": {"200": {"description": "the JSON file"}, "401": PROBLEM, "403": PROBLEM,
                      "404": PROBLEM},
    }),
    ("POST", "/api/threads/{id}/person/erase"): ("thread, supervisor or admin", {
        "summary": "Erase the thread's person: their text, everywhere, backups included; statistics stay",
        "description": "Body {\"confirm\": \"erase\"}. Every thread of the person you may see loses its "
        "text, subject, address and free-text answers, then its data key (what was sealed becomes "
        "unreadable in every backup); their cases lose their free text and key; their client key is "
        "forgotten. 409 while one of those threads or cases is open. docs/privacy.md.",
        "requestBody": _body(_obj(["confirm"], confirm={"type": "string", "enum": ["erase"]})),
        "responses": {"200": {"description": "what was erased (counts)"}, "401": PROBLEM, "403": PROBLEM,
                      "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},
    }),
    ("POST", "/api/threads/{id}/takeover"): ("thread, supervisor or admin", {
        "summary": "Take the conversation over from whoever holds it (or take it while it waits)",
        "description": "The caller becomes its holder at once; the previous holder can no longer reply "
        "and their console is told (ThreadTakenOver, with previous). Recorded in the thread's history. "
        "409 for a closed thread, or one that changed meanwhile. services/store/takeover.py.",
        "responses": {"200": _ok("the thread", _ref("Thread")), "401": PROBLEM, "403": PROBLEM,
                      "404": PROBLEM, "409": PROBLEM},
    }),
    ("GET", "/api/threads/{id}/contact-plan"): ("thread", {
        "summary": "The safe-contact plan the thread's replies follow (the read is recorded)",
        "description": "scope client: the person's plan, for all their threads; scope thread: a thread "
        "whose person is not known (a web chat nobody linked). plan is null when none was recorded. "
        "conversations/contact_plan.py.",
        "responses": {"200": _ok("plan", _obj(["scope", "plan"], scope={"enum": ["client", "thread"]}, plan={"oneOf": [_ref("ContactPlan"), {"type": "null"}]}, set_by=STR, set_at=TIME)), "401": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("PUT", "/api/threads/{id}/contact-plan"): ("thread", {
        "summary": "Record the safe-contact plan: allowed channels, quiet hours, answer only when they "
        "write first, neutral sender name and subject",
        "description": "A reply the plan forbids now is stored with delivery status held and the reason "
        "(channel not allowed, quiet hours until HH:MM, waiting for the client to write first) and sent "
        "when allowed; held replies of the thread are looked at again at once. 422 names invalid fields. "
        "Recorded in the event log (ContactPlanSet, by whom, which parts are set).",
        "requestBody": _body(_ref("ContactPlan")),
        "responses": {"200": _ok("recorded", {"type": "object"}), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/messages/{message}/cancel"): ("thread", {
        "summary": "Cancel a reply the safe-contact plan holds: it is never sent",
        "description": "409 when the reply is not held (sent, released or cancelled meanwhile). Recorded "
        "in the event log (ReplyCancelled, by whom).",
        "responses": {"200": _ok("cancelled", _obj(["id", "delivery"], id=STR, delivery={"type": "object"})), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}/history"): ("thread", {
        "summary": "Every change of the thread with its time (the read is recorded)",
        "responses": {"200": _ok("events", {"type": "array", "items": _ref("Event")}), "401": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/client"): ("thread, and the other thread", {
        "summary": "This thread is the same person as another one: it takes that thread's client",
        "description": "For a chat whose client says who they are. Only someone who may see both "
        "threads may link them: either unseen answers 404. 409 when the other thread's client is not "
        "known. Recorded in the event log (ClientLinked, by whom); undone by DELETE.",
        "requestBody": _body(_obj(["thread"], thread={"type": "string", "description": "the other thread's id"})),  # noqa: E501
        "responses": {"200": _ok("linked", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("DELETE", "/api/threads/{id}/client"): ("thread", {
        "summary": "Undo a link: the thread gets back the client it had (none for a chat)",
        "description": "409 when the thread was not linked by hand. Recorded (ClientUnlinked, by whom).",
        "responses": {"200": _ok("unlinked", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}/earlier"): ("thread", {
        "summary": "The closed consultations of the thread's client, latest first, as far as the "
        "viewer's organisation may see them (the read is recorded)",
        "description": "A member of an organisation sees that organisation's consultations of their "
        "lines; a supervisor of whole lines, every organisation's of them. No free text: the case "
        "form's categorical answers. Empty when the client is not known.",
        "responses": {"200": _ok("consultations", {"type": "array", "items": _ref("EarlierConsultation")}), "401": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/threads/{id}/reads"): ("supervisor", {
        "summary": "Who read the thread and when",
        "responses": {"200": _ok("reads", {"type": "array", "items": {"type": "object"}}), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/messages"): ("thread holder", {
        "summary": "Reply; delivery status follows on the message (queued, sent, failed; held, cancelled)",
        "description": "The Idempotency-Key (8-100 characters) names this reply: sent again with the same "
        "thread and text it answers the stored reply (202, nothing sent twice); with another thread or "
        "another text it is refused with 409 and nothing is stored or sent. While the thread is marked "
        "client_left.why not_safe (the client said it is not safe now) every reply is refused with 409 "
        "until the client writes again, and so is every reply in a thread marked cannot_reply. "
        "A reply the client's safe-contact plan forbids now is accepted "
        "and stored held, with the reason in delivery.detail (GET/PUT .../contact-plan).",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": True, "schema": STR}],
        "requestBody": _body(_obj(["text"], text=STR, attachments={
            "type": "array", "maxItems": 5, "items": STR,
            "description": "ids of files uploaded to this thread (POST .../attachments); e-mail only"})),
        "responses": {
            "202": _ok("accepted", _ref("Message")),
            "400": PROBLEM, "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM,
        },
    }),
    ("POST", "/api/threads/{id}/notes"): ("thread", {
        "summary": "Internal note: shown to consultants, never sent",
        "requestBody": _body(_obj(["text"], text=STR)),
        "responses": {"201": _ok("note", _ref("Message")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/transfer"): ("thread holder or supervisor", {
        "summary": "Move the thread to another queue, with an optional note",
        "requestBody": _body(_obj(["queue"], queue=STR, note=STR)),
        "responses": {"200": _ok("moved", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/release"): ("thread holder or supervisor", {
        "summary": "Give the thread back to its queue",
        "responses": {"200": _ok("released", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/close"): ("thread holder", {
        "summary": "Close as a consultation with the case form, or as a contact without a consultation "
        "with a configured reason; 422 names missing and invalid fields (missing, invalid)",
        "description": "A consultation: {outcome: consultation, case} or {case} alone. Without a "
        "consultation: {outcome: no_consultation, reason} (a close_reasons id of GET /api/config) and "
        "no case; statistics count it apart, by reason, never among consultations.",
        "requestBody": _body({
            "oneOf": [
                _obj(["case"], outcome={"const": "consultation"}, case={"type": "object"}),
                _obj(["outcome", "reason"], outcome={"const": "no_consultation"}, reason=STR),
            ]
        }),
        "responses": {"200": _ok("closed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/threads/{id}/close-left"): ("anyone who sees the thread, if nobody else holds it", {
        "summary": "Close a chat whose client left (client_left: quick exit or silence) in one action: "
        "claimed if waiting, then closed as no consultation with reason silent",
        "description": "409 when the thread is not marked client_left, is closed, is held by someone "
        "else or another consultant acted first (the second of two at once), or when close_reasons "
        "has no silent.",
        "responses": {"200": _ok("closed", _ref("Thread")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/cases/settings"): ("session", {
        "summary": "Case kinds of the user's lines with their intake questionnaires, referral roles, "
        "assistance kinds, case close reasons and the directory entries an external referral may name",
        "responses": {"200": _ok("case settings", {"type": "object"}), "401": PROBLEM},
    }),
    ("POST", "/api/cases"): ("anyone who sees the thread or consultation", {
        "summary": "Open a case from a consultation or a thread, referred at once to the kind's role "
        "with the kind's time; 422 names missing and invalid fields (intake.<field>)",
        "description": "One case of a kind per consultation: opened again, the first is answered (200). "
        "The organisation is the user's (a supervisor of whole lines: the conversation's one "
        "organisation). Whoever may not see cases (a consultant) gets a receipt: id, reference, kind, "
        "status and referral.",
        "requestBody": _body(_obj(
            ["kind"],
            thread={"type": "string", "description": "an open or closed thread: its current consultation"},
            consultation={"type": "string", "description": "<thread id>:<n> of a closed consultation"},
            kind=STR,
            intake={"type": "object", "description": "answers by field id"},
        )),
        "responses": {
            "200": _ok("opened before", _ref("Case")), "201": _ok("opened", _ref("Case")),
            "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "422": PROBLEM,
        },
    }),
    ("GET", "/api/cases"): ("specialist, supervisor (others: an empty list)", {
        "summary": "My cases, overdue first: referred to a role I fill and not taken, or held by me; "
        "a supervisor's: all of the organisation's",
        "parameters": [{"name": "status", "in": "query", "schema": {"enum": ["open", "active", "monitoring", "closed"]}}],  # noqa: E501
        "responses": {"200": _ok("cases", {"type": "array", "items": _ref("Case")}), "401": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/cases/alerts"): ("specialist, supervisor (others: nothing)", {
        "summary": "Among GET /api/cases: referrals nobody took in time, and follow-ups that are due",
        "responses": {"200": _ok("alerts", _obj(
            ["overdue_referrals", "due_followups"],
            overdue_referrals={"type": "array", "items": _ref("Case")},
            due_followups={"type": "array", "items": _obj(["case", "followup"], case=_ref("Case"), followup={"type": "object"})},  # noqa: E501
        )), "401": PROBLEM},
    }),
    ("GET", "/api/cases/{id}"): (CASE_ACCESS, {
        "summary": "The case with its intake, assistance log, external referrals, follow-ups, notes "
        "and history (the read is recorded)",
        "responses": {"200": _ok("case", _ref("CaseWithLog")), "401": PROBLEM, "404": PROBLEM},
    }),
    ("GET", "/api/cases/{id}/reads"): ("supervisor", {
        "summary": "Who read the case and when",
        "responses": {"200": _ok("reads", {"type": "array", "items": {"type": "object"}}), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/refer"): (CASE_ACCESS, {
        "summary": "Refer the case to a role (default time: the kind's); nobody holds it until someone "
        "of the role takes it",
        "requestBody": _body(_obj(["role"], role=STR, due_at=TIME)),
        "responses": {"200": _ok("referred", _ref("Case")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/take"): ("a specialist of the referral's role, or a supervisor", {
        "summary": "Take the referral: the case becomes active and yours; 409 when someone else took it",
        "responses": {"200": _ok("taken", _ref("Case")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/services"): (CASE_ACCESS, {
        "summary": "Log a service given: an assistance kind of the organisation, its date, an amount "
        "where the kind has one",
        "requestBody": _body(_obj(["kind", "date"], kind=STR, date={"type": "string", "format": "date"}, amount={"type": "number", "minimum": 0}, note=STR)),  # noqa: E501
        "responses": {"201": _ok("logged", _ref("CaseService")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/external-referrals"): (CASE_ACCESS, {
        "summary": "Log a referral to a state or non-government service of the directory",
        "requestBody": _body(_obj(["to"], to={"type": "string", "description": "a directory entry id"}, at=TIME, result=STR)),  # noqa: E501
        "responses": {"201": _ok("logged", _ref("CaseExternalReferral")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("PATCH", "/api/cases/{id}/external-referrals/{item}"): (CASE_ACCESS, {
        "summary": "What came of an external referral",
        "requestBody": _body(_obj(["result"], result=STR)),
        "responses": {"200": _ok("recorded", _ref("Case")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/followups"): (CASE_ACCESS, {
        "summary": "Schedule a follow-up: when it is due it shows for the assignee and supervisors",
        "requestBody": _body(_obj(["due"], due=TIME, note=STR)),
        "responses": {"201": _ok("scheduled", _ref("CaseFollowUp")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/followups/{item}/done"): (CASE_ACCESS, {
        "summary": "Mark a follow-up done",
        "responses": {"200": _ok("done", _ref("Case")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/notes"): (CASE_ACCESS, {
        "summary": "A note on the case (free text: deleted by retention like message text)",
        "requestBody": _body(_obj(["text"], text=STR)),
        "responses": {"201": _ok("note", _ref("CaseNote")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/cases/{id}/status"): ("the case's assignee or a supervisor", {
        "summary": "Move the case to active, monitoring or closed (with a case close reason)",
        "requestBody": _body(
            _obj(["status"], status={"enum": ["active", "monitoring", "closed"]}, reason=STR)
        ),
        "responses": {"200": _ok("moved", _ref("Case")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/supervisor"): ("supervisor", {
        "summary": "Every queue of the supervisor's lines: waiting, oldest wait, holders, crises, "
        "and the open conversations whose client said it is not safe now (not_safe)",
        "responses": {"200": _ok("overview", {"type": "object"}), "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/quarantine"): ("supervisor", {
        "summary": "Mails the e-mail intake could not turn into a message, of the supervisor's lines "
        "(a mailbox of another organisation left out): facts and reason, never their content",
        "responses": {"200": _ok("quarantined mails", {"type": "array", "items": _ref("QuarantinedMail")}), "401": PROBLEM, "403": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/quarantine/replay"): ("supervisor", {
        "summary": "Ask the e-mail intake to read a quarantined mail again and, if it now reads, hand "
        "it over with the same source id (at most once in a thread); 404 for a mail not listed",
        "requestBody": _body(_obj(["source_id"], source_id=STR)),
        "responses": {"202": _ok("asked", _ref("QuarantinedMail")), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "422": PROBLEM},  # noqa: E501
    }),
    ("GET", "/api/users"): ("admin", {
        "summary": "Accounts, without password hashes",
        "responses": {"200": _ok("users", {"type": "array", "items": _ref("Consultant")}), "401": PROBLEM, "403": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/users/{login}/disable"): ("admin", {
        "summary": "Disable an account; its sessions end, its live sockets close and its conversations go back to their queues",  # noqa: E501
        "parameters": [{"name": "login", "in": "path", "required": True, "schema": STR}],
        "responses": {"200": _ok("disabled"), "401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM},
    }),
    ("GET", "/api/events"): ("session", {
        "summary": "WebSocket of live queue and thread events for the console",
        "description": "Lives no longer than its session: at log-out or when the account is disabled "
        "it is closed with code 4401 on every replica, before any further event; a session ended "
        "otherwise (expiry, the admin command) closes it within a minute.",
        "responses": {"101": {"description": "switching to WebSocket"}, "401": PROBLEM, "403": PROBLEM},
    }),
    ("GET", "/api/openapi.json"): ("anyone", {
        "summary": "This document",
        "responses": {"200": _ok("OpenAPI 3.1 document", {"type": "object"})},
    }),
}  # fmt: skip

# A shift (services/store/shift.py): the urgent mark and hand-offs to a colleague.
_THREAD_ANSWER = {"401": PROBLEM, "403": PROBLEM, "404": PROBLEM, "409": PROBLEM, "422": PROBLEM}
OPERATIONS.update({
    ("POST", "/api/threads/{id}/urgent"): ("thread", {
        "summary": "Mark an open thread urgent by hand (it goes first, as a crisis does), or unmark it",
        "description": "Taking it off gives the thread the priority it had; a thread urgent by its "
        "content (a crisis) and never marked by hand stays urgent (409).",
        "requestBody": _body(_obj(["urgent"], urgent={"type": "boolean"})),
        "responses": {"200": _ok("the thread", _ref("Thread")), **_THREAD_ANSWER},
    }),
    ("GET", "/api/threads/{id}/colleagues"): ("thread", {
        "summary": "Colleagues the caller may hand this thread to: their organisation, on its line, "
        "with their availability",
        "responses": {"200": _ok("colleagues", {"type": "array", "items": _obj(
            ["login", "name", "status"], login=STR, name=STR, status=STR)}), "401": PROBLEM, "404": PROBLEM},
    }),
    ("POST", "/api/threads/{id}/handoff"): ("thread holder", {
        "summary": "Offer the thread one holds to a named colleague of one's organisation on its line",
        "description": "Any other login (another organisation, without the line, disabled, unknown, "
        "oneself) gets the same 422. One offer at a time (409). Unanswered in STORE_HANDOFF_MINUTES it "
        "lapses: the thread stays with its holder while available, else goes back to its queue.",
        "requestBody": _body(_obj(["to"], to=STR)),
        "responses": {"200": _ok("offered", _ref("Thread")), **_THREAD_ANSWER},
    }),
    ("POST", "/api/threads/{id}/handoff/accept"): ("the colleague it is offered to", {
        "summary": "Take the thread offered to oneself (within one's capacity)",
        "responses": {"200": _ok("now yours", _ref("Thread")), **_THREAD_ANSWER},
    }),
    ("POST", "/api/threads/{id}/handoff/decline"): ("the colleague it is offered to, or its holder", {
        "summary": "Decline the offer (or withdraw it): the thread stays with its holder while available",
        "responses": {"200": _ok("the thread", _ref("Thread")), **_THREAD_ANSWER},
    }),
    ("GET", "/api/handoffs"): ("session", {
        "summary": "Threads offered to the caller whose offers still stand",
        "responses": {"200": _ok("threads", {"type": "array", "items": _ref("Thread")}), "401": PROBLEM},
    }),
})  # fmt: skip

# Finding a record (services/store/search.py): the criteria go in the body, never in the URL.
# The second factor (services/store/totp.py): the code step of a log-in, and enrolment.
_LOGGED_IN = _obj(["consultant", "csrf_token"], consultant=_ref("Consultant"), csrf_token=STR)
_THROTTLED = {
    **PROBLEM,
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}
OPERATIONS.update({
    ("POST", "/api/session/code"): ("session past its password", {
        "summary": "The code step of a log-in: a code from the authenticator app, or a recovery code (each usable once)",  # noqa: E501
        "description": "A code of a step already used, or of an earlier one, is refused (no replay). Wrong "
        "codes count as failed log-ins of the account from this source (429 with Retry-After).",
        "requestBody": _body(_obj([], code=STR, recovery_code=STR)),
        "responses": {"200": _ok("logged in", {**_LOGGED_IN, "properties": {**_LOGGED_IN["properties"], "recovery_codes_left": {"type": "integer"}}}),  # noqa: E501
                      "401": PROBLEM, "403": PROBLEM, "409": PROBLEM, "422": PROBLEM, "429": _THROTTLED},
    }),
    ("GET", "/api/me/totp"): ("session, or past its password", {
        "summary": "Whether the account has a second factor, must have one, and how many recovery codes are left",  # noqa: E501
        "responses": {"200": _ok("state", {"type": "object", "required": ["enrolled", "required", "recovery_codes_left"], "properties": {"enrolled": {"type": "boolean"}, "required": {"type": "boolean"}, "recovery_codes_left": {"type": "integer"}, "pending": {"type": ["string", "null"]}}}), "401": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/me/totp/enrolment"): ("session, or past its password when one is required", {
        "summary": "Start enrolling: a new secret and its otpauth:// URI, shown this once",
        "responses": {"200": _ok("secret", _obj(["secret", "uri"], secret=STR, uri=STR)), "401": PROBLEM, "403": PROBLEM, "409": PROBLEM},  # noqa: E501
    }),
    ("POST", "/api/me/totp/enrolment/confirm"): ("session, or past its password when one is required", {
        "summary": "Finish enrolling with a code of the new secret: answers ten recovery codes, this once",
        "requestBody": _body(_obj(["code"], code=STR)),
        "responses": {"200": _ok("enrolled and logged in", {**_LOGGED_IN, "properties": {**_LOGGED_IN["properties"], "recovery_codes": {"type": "array", "items": STR}}}),  # noqa: E501
                      "401": PROBLEM, "403": PROBLEM, "409": PROBLEM, "422": PROBLEM, "429": _THROTTLED},
    }),
})  # fmt: skip
OPERATIONS[("POST", "/api/search")] = (
    "session: each person finds only what they could open; cases only the owning organisation's "
    "specialists and supervisors",
    {
        "summary": "Find threads, consultations and cases of one's own organisation by number, words, "
        "dates and case-form answers, newest first",
        "description": "number (thread id, <thread>:<n>, or a case number such as LASTRADA-17) is used "
        "alone; otherwise words give threads, dates alone or answers give consultations. truncated: "
        "more may match than were checked. Changes nothing; a POST so that no word reaches a URL.",
        "requestBody": _body(
            _obj(
                [],
                number=STR,
                text={"type": "string", "maxLength": 500},
                **{"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}},
                answers={"type": "object", "additionalProperties": {"type": "array", "items": STR}},
                line=STR,
                limit={"type": "integer", "minimum": 1, "maximum": 50},
            )
        ),
        "responses": {
            "200": _ok(
                "records and cases",
                _obj(
                    ["records", "cases", "truncated"],
                    records={"type": "array", "items": {"type": "object"}},
                    cases={"type": "array", "items": {"type": "object"}},
                    truncated={"type": "boolean"},
                ),
            ),
            "401": PROBLEM,
            "403": PROBLEM,
            "415": PROBLEM,
            "422": PROBLEM,
        },
    },
)
# Case reports (services/store/case_report_routes.py), scoped like /api/stats.
_CASE_REPORT_QUERY = [
    {"name": "year", "in": "query", "schema": {"type": "integer"}},
    {"name": "publish", "in": "query", "schema": {"enum": ["0", "1"]}},
    {"name": "kind", "in": "query", "schema": STR, "description": "case kinds, comma-separated"},
    {"name": "line", "in": "query", "schema": STR},
    {"name": "organisation", "in": "query", "schema": STR},
]
for _report, _what in (
    ("assistance", "people given each kind of service in the year, per organisation"),
    ("cases", "cases opened in the year by kind, status and duration band"),
    ("referrals", "external referrals made in the year by destination (directory id)"),
):
    for _suffix, _type in (("", "application/json"), (".csv", "text/csv")):
        OPERATIONS[("GET", f"/api/case-reports/{_report}{_suffix}")] = (
            "supervisor",
            {
                "summary": f"Case report ({'CSV' if _suffix else 'JSON'}): {_what}",
                "description": "publish=1 suppresses small cells and every count a published total "
                "would give away; exact figures are marked not for publication.",
                "parameters": _CASE_REPORT_QUERY,
                "responses": {
                    "200": {"description": "the report", "content": {_type: {"schema": {"type": "object"}}}},
                    "401": PROBLEM,
                    "403": PROBLEM,
                    "422": PROBLEM,
                },
            },
        )

# Statistics (services/store/reports.py, docs/statistics.md "API"): the same table three ways.
_STATS_QUERY = [
    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
    {"name": "by", "in": "query", "schema": STR, "description": "up to three dimensions, comma-separated"},
    {"name": "period", "in": "query", "schema": {"enum": ["day", "month", "year"]}},
    {"name": "compare", "in": "query", "schema": {"enum": ["0", "1"]}},
    {"name": "publish", "in": "query", "schema": {"enum": ["0", "1"]}},
]
for _suffix, _type, _what in (
    ("", "application/json", "JSON"),
    (".csv", "text/csv", "CSV"),
    (".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "XLSX, labelled in lang"),
):
    _lang = (
        [{"name": "lang", "in": "query", "schema": {"enum": ["ru", "be", "en"]}}]
        if _suffix == ".xlsx"
        else []
    )
    OPERATIONS[("GET", f"/api/stats{_suffix}")] = (
        "supervisor",
        {
            "summary": f"Consultations counted by any dimension ({_what})",
            "description": "Any other query name filters (channel=email,phone). publish=1 suppresses "
            "small cells; exact figures are marked not for publication.",
            "parameters": _STATS_QUERY + _lang,
            "responses": {
                "200": {"description": "the table", "content": {_type: {"schema": {"type": "object"}}}},
                "401": PROBLEM,
                "403": PROBLEM,
                "422": PROBLEM,
            },
        },
    )

# The administration screen (services/store/administration.py): "staff" is an organisation's
# supervisor (their organisation's accounts and canned answers) or an administrator (all).
_LOGIN = [{"name": "login", "in": "path", "required": True, "schema": STR}]
_ANSWER = [{"name": "item", "in": "path", "required": True, "schema": STR}]
_ENTRY_ID = [{"name": "item", "in": "path", "required": True, "schema": STR}]
_TEXTS: Schema = {"type": "object", "additionalProperties": STR, "description": "text by language"}
_ACCOUNT_FIELDS: Schema = {
    "name": STR,
    "role": {"enum": ["consultant", "specialist", "supervisor", "admin", "national_admin"]},
    "organisation": NULLABLE,
    "lines": {"type": "array", "items": STR},
    "skills": {"type": "array", "items": STR, "description": "skills of topics (routing)"},
    "languages": {"type": "array", "items": STR, "description": "languages besides the common ones"},
    "specialist_roles": {"type": "array", "items": STR},
}
_CANNED = _obj(["line", "title", "text"], line=STR, organisation=NULLABLE, title=_TEXTS, text=_TEXTS)
_ENTRY = _obj(
    ["section", "name"],
    id=STR,
    section={"enum": ["emergency", "national", "region"]},
    region=NULLABLE,
    name=_TEXTS,
    phone=NULLABLE,
    address=_TEXTS,
    note=_TEXTS,
    url=NULLABLE,
)
_R = {"401": PROBLEM, "403": PROBLEM}
_RW = {**_R, "404": PROBLEM, "409": PROBLEM, "415": PROBLEM, "422": PROBLEM}
OPERATIONS.update({
    ("PUT", "/api/me/password"): ("session", {
        "summary": "Change one's own password (the current one, then the new one); ends a change "
        "an administrator's reset asked for",
        "requestBody": _body(_obj(["current", "new"], current=STR, new=STR)),
        "responses": {"200": _ok("changed"), **_RW},
    }),
    ("GET", "/api/admin/accounts"): ("staff", {
        "summary": "Accounts the caller manages, without password hashes",
        "responses": {"200": _ok("accounts", {"type": "array", "items": _ref("Consultant")}), **_R},
    }),
    ("POST", "/api/admin/accounts"): ("staff", {
        "summary": "Create an account; its password must be changed at its first log-in",
        "requestBody": _body({"type": "object", "required": ["login", "lines", "password"],
                              "properties": {"login": STR, "password": STR, **_ACCOUNT_FIELDS}}),
        "responses": {"201": _ok("created", _ref("Consultant")), **_RW},
    }),
    ("PATCH", "/api/admin/accounts/{login}"): ("staff", {
        "summary": "Change an account's name, role, organisation, lines, skills, languages",
        "parameters": _LOGIN,
        "requestBody": _body({"type": "object", "properties": _ACCOUNT_FIELDS}),
        "responses": {"200": _ok("changed", _ref("Consultant")), **_RW},
    }),
    ("POST", "/api/admin/accounts/{login}/disable"): ("staff", {
        "summary": "Disable an account: sessions end, sockets close, its threads go back to their queues",
        "parameters": _LOGIN,
        "responses": {"200": _ok("disabled", _ref("Consultant")), **_RW},
    }),
    ("POST", "/api/admin/accounts/{login}/enable"): ("staff", {
        "summary": "Let a disabled account log in again",
        "parameters": _LOGIN,
        "responses": {"200": _ok("enabled", _ref("Consultant")), **_RW},
    }),
    ("POST", "/api/admin/accounts/{login}/password"): ("staff", {
        "summary": "Set a new password, to be changed at the next log-in; the account's sessions end",
        "parameters": _LOGIN,
        "requestBody": _body(_obj(["password"], password=STR)),
        "responses": {"200": _ok("reset"), **_RW},
    }),
    ("GET", "/api/admin/changes"): ("staff", {
        "summary": "The change log of accounts, canned answers and the directory (an organisation's "
        "supervisor: their organisation's); never a password or a text",
        "responses": {"200": _ok("changes", {"type": "array", "items": {"type": "object"}}), **_R},
    }),
    ("GET", "/api/admin/canned"): ("staff", {
        "summary": "Canned answers of the caller's lines, each marked editable or not",
        "responses": {"200": _ok("canned answers", {"type": "array", "items": _CANNED}), **_R},
    }),
    ("POST", "/api/admin/canned"): ("staff", {
        "summary": "Add a canned answer (line-wide: administrators; an organisation's: its supervisor)",
        "requestBody": _body(_CANNED),
        "responses": {"201": _ok("added", _CANNED), **_RW},
    }),
    ("PUT", "/api/admin/canned/{item}"): ("staff", {
        "summary": "Change a canned answer",
        "parameters": _ANSWER,
        "requestBody": _body(_CANNED),
        "responses": {"200": _ok("changed", _CANNED), **_RW},
    }),
    ("DELETE", "/api/admin/canned/{item}"): ("staff", {
        "summary": "Remove a canned answer",
        "parameters": _ANSWER,
        "responses": {"204": {"description": "removed"}, **_RW},
    }),
    ("GET", "/api/admin/directory"): ("staff", {
        "summary": "The help directory the bot and the widget give (editable by administrators)",
        "responses": {"200": _ok("entries", {"type": "array", "items": _ENTRY}), **_R},
    }),
    ("POST", "/api/admin/directory"): ("admin", {
        "summary": "Add a directory entry (a name in every language)",
        "requestBody": _body(_ENTRY),
        "responses": {"201": _ok("added", _ENTRY), **_RW},
    }),
    ("PUT", "/api/admin/directory/{item}"): ("admin", {
        "summary": "Change a directory entry (its id stays: cases name it)",
        "parameters": _ENTRY_ID,
        "requestBody": _body(_ENTRY),
        "responses": {"200": _ok("changed", _ENTRY), **_RW},
    }),
    ("DELETE", "/api/admin/directory/{item}"): ("admin", {
        "summary": "Remove a directory entry",
        "parameters": _ENTRY_ID,
        "responses": {"204": {"description": "removed"}, **_RW},
    }),
})  # fmt: skip

_PARAM = re.compile(r"\{(\w+)\}")


def api_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every ``/api/`` route of ``app``."""
    out = []
    for route in app.router.routes():
        info = route.resource.canonical if route.resource is not None else ""
        if route.method in {"HEAD", "*"} or not info.startswith("/api/"):
            continue
        out.append((route.method, info, route.handler))
    return out


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", _PARAM.sub(r"\1", path).lower()).strip("_")
    return f"{method.lower()}_{words}"


def document(app: web.Application) -> Schema:
    paths: dict[str, dict[str, Schema]] = {}
    for method, path, handler in api_routes(app):
        access, op = OPERATIONS.get((method, path), ("session", None))
        if op is None:  # a route described only by its handler (another module's)
            doc = (handler.__doc__ or path).strip().splitlines()[0]
            op = {"summary": doc, "responses": {"200": _ok("see summary"), "401": PROBLEM}}
        op = {**op, "operationId": _operation_id(method, path), "x-access": access}
        params = list(op.get("parameters", []))
        named = {p["name"] for p in params if p["in"] == "path"}
        for name in _PARAM.findall(path):
            if name not in named:
                params.append({**THREAD_ID, "name": name})
        if params:
            op["parameters"] = params
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hotline-gateway consultant API",
            "version": "1",
            "description": "Session cookie (HttpOnly, SameSite=Strict) from POST /api/session; "
            "header X-CSRF-Token on every state-changing call; errors are RFC 9457 problem details. "
            "A JSON body nested deeper than 32 arrays or objects is refused with 400 on every route. "
            "While the database is away or busy, every route answers 503 with Retry-After (seconds).",
        },
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))
