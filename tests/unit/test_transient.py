"""Transient (a dependency away or busy: retry in place) told from permanent (the message)."""

from __future__ import annotations

import pytest
from aio_pika.exceptions import AMQPConnectionError, ChannelInvalidStateError, DeliveryError
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    EncryptionError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteError,
)

from shared.broker import BrokerUnavailable, is_transient
from shared.mongo import is_transient_database_error, refuses_one_document

# What the local stand-in (FerretDB on SQLite) answers while another write holds the file.
SQLITE_BUSY = "database is locked (5) (SQLITE_BUSY)"


@pytest.mark.parametrize(
    "exc",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no servers"),
        OperationFailure(SQLITE_BUSY, 1),
        WriteError(f"sqlite: {SQLITE_BUSY}", 1),
        OperationFailure("not primary", 10107),
        OperationFailure("stepped down", 189),
        OperationFailure("interrupted", 11600),
        OperationFailure("labelled", 2, {"errorLabels": ["RetryableWriteError"]}),
        BulkWriteError({"writeErrors": [{"index": 0, "code": 1, "errmsg": SQLITE_BUSY}]}),
        EncryptionError(ServerSelectionTimeoutError("the key vault is away")),
    ],
)
def test_a_database_away_or_busy_is_transient(exc: BaseException) -> None:
    assert is_transient_database_error(exc)
    assert is_transient(exc)
    assert not refuses_one_document(exc)


@pytest.mark.parametrize(
    ("exc", "refused"),
    [
        (WriteError("document failed validation", 121), True),
        (DocumentTooLarge("BSON document too large"), True),
        (EncryptionError(ValueError("not all keys requested were satisfied")), True),
        (OperationFailure("not authorized", 13), False),  # every request would meet it
        (BulkWriteError({"writeErrors": [{"index": 0, "code": 2, "errmsg": "bad value"}]}), False),
        (ValueError("a parser bug"), False),
    ],
)
def test_a_refusal_of_one_document_is_told_from_one_of_every_request(
    exc: BaseException, refused: bool
) -> None:
    assert refuses_one_document(exc) is refused


@pytest.mark.parametrize(
    "exc",
    [
        DuplicateKeyError("E11000 duplicate key", 11000),
        OperationFailure("BadValue", 2),
        WriteError("document failed validation", 121),
        BulkWriteError(
            {
                "writeErrors": [
                    {"index": 0, "code": 1, "errmsg": SQLITE_BUSY},
                    {"index": 1, "code": 2, "errmsg": "bad value"},
                ]
            }
        ),
        BulkWriteError({"writeErrors": []}),
        ValueError("a parser bug"),
        UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed"),
    ],
)
def test_a_failure_of_the_request_itself_is_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [BrokerUnavailable("channel closed"), AMQPConnectionError("refused"), ChannelInvalidStateError()],
)
def test_the_broker_away_is_transient_for_a_handler(exc: BaseException) -> None:
    assert is_transient(exc) and not is_transient_database_error(exc)


def test_an_unroutable_publish_is_not_transient() -> None:
    assert not is_transient(DeliveryError(None, None))  # type: ignore[arg-type]
