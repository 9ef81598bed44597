"""Models as the server holds them: a registry version loaded safely, checked against its signature.

No Airflow import. A version is downloaded once from the MLflow registry into the server's cache
(``<cache>/<name>/<version>``) and loaded with ``evaluation.scoring.load_scorer``: a model package
of this suite (weights with ``weights_only=True``, preprocessing from ``config.json``) or any
MLflow pyfunc model with a signature. Rows arriving over HTTP are checked against the model's
**signature** before anything runs: a missing field, or a value that is not of the column's type,
is a ``RowError`` naming the row, the field and the reason (the server answers 422). Fields the
signature does not name are ignored by the model and not logged, except those the deployment
names in ``log_fields`` (ids a performance monitor joins labels by), see ``ServedModel.logged``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlops.exceptions import DeploymentError, RowError

log = logging.getLogger(__name__)

#: A registered model's name as the server accepts it: it becomes a folder of the model cache.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: A registry version (MLflow numbers them from 1) and an alias.
VERSION = re.compile(r"[1-9][0-9]{0,8}")
ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


def check_reference(where: str, name: Any, version: Any = None, alias: Any = None) -> None:
    """A ``DeploymentError`` naming ``where`` (``variant 'main'``), the field, the rule and the value
    unless the model reference fits the patterns (so no name or version can reach the filesystem
    as a path)."""
    checks = [("name", name, MODEL_NAME, "letters, digits, '.', '_' or '-', starting with a letter or digit")]
    if version is not None:
        checks.append(("version", version, VERSION, "a registry version number (1, 2, ...)"))
    if alias is not None:
        checks.append(("alias", alias, ALIAS, "letters, digits, '_' or '-'"))
    for field, value, pattern, rule in checks:
        if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
            raise DeploymentError(f"{where}: model {field} must be {rule}, got {shown(value)!r}")


#: What a JSON value must be for each MLflow column type, and how a 422 says it.
_NUMBER = "must be a finite number or null"
_INTEGER = "must be an integer or null"
_STRING = "must be a string or null"
_BOOLEAN = "must be true, false or null"
#: The largest magnitude each MLflow numeric type holds (a larger value is a 422, not an overflow).
NUMBER_LIMITS: dict[str, float | int] = {
    "double": 1.7976931348623157e308,
    "float": 3.4028234663852886e38,
    "long": 2**63 - 1,
    "integer": 2**31 - 1,
}
#: The longest string a row's field may hold.
MAX_VALUE_CHARS = 4096
#: A field outside the signature that a deployment asks the request log to keep (``log_fields``):
#: its name, how many a deployment may name, and the longest string it may hold.
LOG_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_LOG_FIELDS = 16
MAX_LOGGED_CHARS = 128


def check_log_fields(fields: Any) -> list[str]:
    """A deployment's ``log_fields`` as a list, or a ``DeploymentError`` naming the rule broken."""
    if not isinstance(fields, (list, tuple)) or len(fields) > MAX_LOG_FIELDS:
        raise DeploymentError(
            f"log_fields must be a list of at most {MAX_LOG_FIELDS} field names, got {shown(fields)!r}"
        )
    for field in fields:
        if not isinstance(field, str) or not LOG_FIELD.fullmatch(field):
            raise DeploymentError(
                f"log_fields: {shown(field)!r} is not a field name (a letter or '_', then letters, digits, '_', '.' or '-')"
            )
    if len(set(fields)) != len(fields):
        raise DeploymentError(f"log_fields names a field twice: {list(fields)}")
    return list(fields)


def check_logged(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """A ``RowError`` (422) for a row whose declared log field holds anything but null, a finite
    number, a boolean or a string of at most ``MAX_LOGGED_CHARS`` characters."""
    for i, row in enumerate(rows):
        for field in fields:
            value = row.get(field) if isinstance(row, Mapping) else None
            if value is None or isinstance(value, bool):
                continue
            if (isinstance(value, (int, float)) and check_value("double", value) is None) or (
                isinstance(value, str) and len(value) <= MAX_LOGGED_CHARS
            ):
                continue
            raise RowError(
                ["body", "rows", i, field],
                f"a field the request log keeps must be null, a finite number, a boolean or a string of at "
                f"most {MAX_LOGGED_CHARS} characters",
                value,
            )


def check_value(kind: str, value: Any) -> str | None:
    """None when ``value`` (from JSON) fits an input column of MLflow type ``kind``, else the rule it
    breaks: NaN, Infinity, a number beyond the type's range (``1e999``, a 400-digit integer) and a
    string over ``MAX_VALUE_CHARS`` characters are refused here, before any model runs."""
    if value is None:
        return None
    limit = NUMBER_LIMITS.get(kind)
    if limit is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _NUMBER
        if isinstance(value, float) and not math.isfinite(value):
            return _NUMBER
        if kind in ("long", "integer") and isinstance(value, float) and not value.is_integer():
            return _INTEGER
        if abs(value) > limit:  # exact for Python ints of any size: no float conversion
            return f"must lie within +-{limit:.7g} (MLflow type {kind})"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else _BOOLEAN
    if not isinstance(value, str):
        return _STRING
    if len(value) > MAX_VALUE_CHARS:
        return f"must be at most {MAX_VALUE_CHARS} characters, got {len(value)}"
    return None


def shown(value: Any, limit: int = 120) -> Any:
    """A value as an error message may echo it: numbers, booleans and short strings as they are,
    anything longer cut to ``limit`` characters of its text (a 1 MB field is not copied back)."""
    if value is None or isinstance(value, bool) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, float):  # NaN and infinities are not JSON: their text
        return str(value)
    text = value if isinstance(value, str) else repr(value)
    if isinstance(value, int) and len(text) <= limit:
        return value
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


@dataclass
class ServedModel:
    """One loaded registry version: ``frame(rows)`` checks the rows against its signature,
    ``predict`` returns the task's predictions, ``answers`` them as JSON objects (see ``models.package``)."""

    name: str
    version: str
    folder: Path
    scorer: Any  # an evaluation.scoring.Predictor

    @classmethod
    def load(
        cls,
        name: str,
        version: str,
        tracking_uri: str | None,
        cache: Path,
        trusted_modules: Sequence[str] = (),
    ) -> ServedModel:
        """Version ``version`` of registered model ``name``, from the cache or else downloaded from
        the registry into it, and loaded only after two checks: the package's SHA-256 equals the
        one recorded at registration (the version's ``package_sha256`` tag; the cache entry keeps
        it and is checked again on every load), and no module it names is imported unless carried
        in that package or in ``trusted_modules`` (``evaluation.scoring.load_scorer``). A download
        lands in a staging folder that is renamed into place whole: a half-finished download is
        never read as a model, and a restart loads from the cache without asking the registry."""
        from airflow_mlops.evaluation.scoring import load_scorer

        check_reference("model server", name, str(version))
        target = cache / name / str(version)
        folder = cached_folder(target)
        if folder is None:
            folder = download(name, str(version), tracking_uri, target)
        return cls(name, str(version), folder, load_scorer(folder, trusted_modules=tuple(trusted_modules)))

    @property
    def task(self) -> str:
        return str(self.scorer.task)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The signature's input columns: ``{"name", "type", "required"}``."""
        return list(self.scorer.signature["inputs"])

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(column["name"] for column in self.inputs)

    @property
    def input_example(self) -> list[dict[str, Any]]:
        """The few rows the package keeps as its input example (a model package's ``config.json``,
        an MLflow model's logged example); empty when it has none."""
        example = getattr(self.scorer, "input_example", None)
        if example is None:
            example = getattr(self.scorer, "config", {}).get("input_example", [])
        return [dict(row) for row in example]

    def describe(self) -> dict[str, Any]:
        """The version, its task and its signature's inputs, with the input example."""
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "inputs": self.inputs,
            "input_example": self.input_example,
        }

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The rows as a DataFrame of the model's features, after checking every field against the
        signature (every input is a field of the row; null where the value is missing)."""
        self.check(rows)
        return self.checked_frame(rows)

    def checked_frame(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """:meth:`frame` of rows :meth:`check` has passed."""
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=list(self.features))

    def score_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predictions for rows :meth:`check` has passed (a dynamic batch of several requests); a
        model package of this suite scores them without a DataFrame (``Scorer.score_records``)."""
        score_records = getattr(self.scorer, "score_records", None)
        if score_records is not None:
            return np.asarray(score_records(rows))
        return self.predict(self.checked_frame(rows))

    def check(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """A ``RowError`` naming the row, the field and the rule for the first field the signature
        refuses (every input is a field of the row; null where the value is missing)."""
        inputs = [(column["name"], column["type"]) for column in self.inputs]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RowError(
                    ["body", "rows", i], f"a row must be an object of features, got {type(row).__name__}", row
                )
            for column, kind in inputs:
                if column not in row:
                    raise RowError(["body", "rows", i, column], "field required")
                broken = check_value(kind, row[column])
                if broken:
                    raise RowError(["body", "rows", i, column], broken, row[column])

    def logged(self, row: Mapping[str, Any], fields: Sequence[str] = ()) -> dict[str, Any]:
        """The fields of a checked row the request log keeps: the signature's, and the ``fields``
        its deployment declared (``log_fields``: ids such as ``flight_id`` that a performance
        monitor's ``label_key`` joins labels by; null where a row lacks one). Nothing else a
        caller sends is logged."""
        kept = {name: row.get(name) for name in self.features}
        for name in fields:
            kept.setdefault(name, row.get(name))
        return kept

    def predict(self, frame: Any) -> np.ndarray:
        return np.asarray(self.scorer(frame))

    def answers(self, predictions: np.ndarray) -> list[dict[str, Any]]:
        """The predictions as the API returns them, one object per row."""
        from airflow_mlops.models.package import prediction_records

        return prediction_records(self.task, predictions, self.scorer.classes)


def cached_folder(target: Path) -> Path | None:
    """The model folder a completed download left in ``target`` whose files still have the digest
    recorded with them, or None (nothing cached, or a cache entry changed since: downloaded again)."""
    from airflow_mlops.models.package import package_digest
    from airflow_mlops.registry.versions import model_folder

    marker = target / "cached.json"
    if not marker.is_file():
        return None
    entry = json.loads(marker.read_text())
    try:
        folder = model_folder(str(target / entry["folder"]))
    except FileNotFoundError:
        return None
    if not entry.get("sha256") or package_digest(folder) != entry["sha256"]:
        log.warning("model cache entry %s changed since its download: downloading it again", target)
        return None
    return folder


def download(name: str, version: str, tracking_uri: str | None, target: Path) -> Path:
    """Download a registry version into ``target`` (see ``ServedModel.load``); its model folder.
    ``DeploymentError`` when the registry records no digest for the version or the downloaded
    files do not have it; the staging folder is removed and nothing is loaded."""
    from airflow_mlops.models.package import DIGEST_TAG, package_digest
    from airflow_mlops.registry.versions import model_folder, registry_client

    recorded = registry_client(tracking_uri).get_model_version(name, version).tags.get(DIGEST_TAG)
    if not recorded:
        raise DeploymentError(
            f"model {name} version {version}: the registry records no {DIGEST_TAG} for it, so the server "
            "cannot tell its files from changed ones; register it with RegisterModelOperator, or record "
            f"the digest of the version as registered with `airflow-mlops record-digest --model {name} "
            f"--version {version}`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-download-"))
    try:
        folder = model_folder(f"models:/{name}/{version}", tracking_uri, dst=staging)
        digest = package_digest(folder)
        if digest != recorded:
            raise DeploymentError(
                f"model {name} version {version}: the downloaded package's SHA-256 is {digest[:16]}..., "
                f"the registry recorded {str(recorded)[:16]}... at registration: its files changed since, "
                "nothing is loaded"
            )
        relative = folder.relative_to(staging)
        (staging / "cached.json").write_text(
            json.dumps({"name": name, "version": version, "folder": str(relative), "sha256": digest})
        )
        shutil.rmtree(target, ignore_errors=True)  # an incomplete cache entry of an older server
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / relative


def json_rows(frame: Any, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready objects for a predict request (NaN and NA become null,
    timestamps ISO 8601 strings)."""
    import pandas as pd

    selected = frame[list(columns)] if columns is not None else frame
    records = selected.astype(object).where(pd.notna(selected), None).to_dict(orient="records")
    return [{k: _plain(v) for k, v in row.items()} for row in records]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
