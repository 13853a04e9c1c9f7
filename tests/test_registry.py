"""Tracking-failure classification: an outage is told apart from a rejected request."""

from __future__ import annotations

import sqlite3

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from fakeface.registry import is_tracking_failure, tracking_failure_line


def _wrapped(cause: BaseException) -> Exception:
    try:
        raise cause
    except BaseException as inner:
        try:
            raise RuntimeError("while logging metrics") from inner
        except RuntimeError as outer:
            return outer


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (
            MlflowException(
                "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed"
                " with exception HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries"
            ),
            True,
        ),
        (MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE), True),
        (requests.ConnectionError("connection refused"), True),
        (sqlite3.OperationalError("disk I/O error"), True),
        (_wrapped(requests.ConnectionError("reset")), True),
        (MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE), False),
        (MlflowException("Registered Model with name=x already exists"), False),
        (ValueError("a bug of ours"), False),
    ],
)
def test_outages_are_told_from_rejected_requests(exc: BaseException, outage: bool) -> None:
    assert is_tracking_failure(exc) is outage


def test_failure_line_is_one_line_with_the_store_and_what_to_do() -> None:
    line = tracking_failure_line("http://h:5000", MlflowException("API request to x failed\nmore"))
    assert "\n" not in line and "http://h:5000" in line and "rerun" in line
