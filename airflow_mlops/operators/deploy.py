"""Deploy registry model versions to the model server: replace, canary, or any routing policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.audit import actor
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.lineage import LineageMixin, endpoint_lineage
from airflow_mlops.xcom import DeploymentResult

if TYPE_CHECKING:
    from airflow.sdk import Context


class DeployModelOperator(LineageMixin, BaseOperator):
    """Deploy to an endpoint of the model server (``airflow-mlops serve``) through ``ModelServerHook``.

    Three ways to say what to serve:

    - ``model_name`` and ``version`` alone: the version replaces whatever the endpoint served
      (policy ``single``; the previous deployment is kept for rollback).
    - ``model_name`` and ``alias`` (e.g. ``champion``): the version the alias names now replaces
      whatever the endpoint served, and the endpoint **follows the alias**: when a promotion or a
      rollback in the Airflow UI, the CLI or MLflow moves it, the server switches to the version
      it then names (``airflow-mlops serve --follow-aliases-every``).
    - ``model_name``, ``version`` and ``canary_weight``: progressive rollout. If the endpoint
      already serves a model, the new version becomes the ``candidate`` of a canary that sends it
      ``canary_weight`` of the traffic while the current primary keeps the rest; on a new endpoint
      there is nothing to compare with, so the version is deployed alone (mode ``first``).
    - ``variants`` and ``policy``: any routing policy (``ab``, ``shadow``, ``bandit``, ``chain``,
      ``ensemble``; see ``airflow_mlops.serving.policies``).

    The server downloads and loads the models before it switches, atomically: a deployment that
    fails leaves the old routing serving, and this task fails with the server's reason.

    :param endpoint: the endpoint name, e.g. ``flight_delay`` (templated).
    :param model_name: registered model name (templated).
    :param version: model version, e.g. ``"3"`` (templated).
    :param alias: or a registry alias to serve and follow, e.g. ``champion`` (templated; not with
        ``canary_weight``: a canary compares two fixed versions).
    :param canary_weight: share of traffic for the candidate, in (0, 1).
    :param variants: variant name -> ``{"name", "version"}`` or ``{"name", "alias"}`` (templated).
    :param policy: routing policy for ``variants`` (templated).
    :param feature_service: a Feast feature service: requests then give entity keys and request-time
        fields, and the server completes them from the online store (it needs ``--feature-repo``).
    :param log_fields: fields of a request's rows outside the model's signature that the request log
        keeps (ids such as ``flight_id`` that a performance monitor's ``label_key`` joins labels by);
        the log keeps nothing else a caller sends. Each must be null, a number, a boolean or a string
        of at most 128 characters in every row, else the request gets 422.
    :param model_server_conn_id: connection of the server (type ``mlopsmodelserver``).
    :param reason: why, recorded with the deployment (templated).
    :param require_infra_blessing: deploy only versions ``InfraValidateOperator`` blessed (their
        ``infra_blessing`` tag is ``blessed``); a version this deployment brings to the endpoint
        without it is refused, naming the tag's value, before the server is asked. Versions the
        endpoint already serves (a canary's primary) are not checked again. None (the default):
        ``[mlops] require_infra_blessing``.
    :param mlflow_conn_id: the ``mlflow`` connection of the registry, read for the blessing.

    XCom: ``{"endpoint", "mode" ("replace", "canary", "first" or "policy"), "deployment"}`` where
    ``deployment`` is the server's record (variants pinned to versions, policy, who, when, why).
    OpenLineage: each variant's model version (namespace ``mlflow:<the server's registry>``) as input;
    the endpoint (namespace ``mlops-model-server://<host>:<port>``) as output.
    """

    template_fields: Sequence[str] = (
        "endpoint",
        "model_name",
        "version",
        "alias",
        "variants",
        "policy",
        "reason",
    )
    ui_color = "#fff3e0"

    def __init__(
        self,
        *,
        endpoint: str,
        model_name: str = "",
        version: str = "",
        alias: str = "",
        canary_weight: float | None = None,
        variants: Mapping[str, Mapping[str, str]] | None = None,
        policy: Mapping[str, Any] | None = None,
        feature_service: str | None = None,
        log_fields: Sequence[str] = (),
        model_server_conn_id: str = "mlops_model_server",
        reason: str = "",
        require_infra_blessing: bool | None = None,
        mlflow_conn_id: str = "mlflow_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.require_infra_blessing = require_infra_blessing
        self.mlflow_conn_id: str | None = mlflow_conn_id
        if variants is None and not model_name:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: give model_name and version, or variants and policy"
            )
        if version and alias:
            raise MLOpsConfigError(f"{kwargs.get('task_id')}: give version or alias, not both")
        if alias and canary_weight is not None:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: a canary compares two fixed versions; give version, not alias {alias!r}"
            )
        if canary_weight is not None and not 0 < canary_weight < 1:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: canary_weight must be within (0, 1), got {canary_weight!r}"
            )
        self.endpoint, self.model_name, self.version, self.alias = endpoint, model_name, version, alias
        self.canary_weight, self.variants, self.policy = canary_weight, variants, policy
        self.model_server_conn_id, self.reason, self.feature_service = (
            model_server_conn_id,
            reason,
            feature_service,
        )
        if isinstance(log_fields, str):
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: log_fields must be a list of field names, got {log_fields!r}"
            )
        self.log_fields = list(log_fields)

    def execute(self, context: Context) -> DeploymentResult:
        from airflow_mlops.hooks.model_server import ModelServerHook
        from airflow_mlops.templating import require_rendered

        require_rendered(self, mappings=("variants", "policy"))

        required = self.blessing_required()
        hook = ModelServerHook(self.model_server_conn_id)
        current = (
            hook.deployments().get(self.endpoint) if self.canary_weight is not None or required else None
        )
        mode, variants, policy = self.plan(current)
        if required:
            self.check_blessed(variants, current)
        record = hook.deploy(
            self.endpoint,
            variants,
            policy,
            actor(context, type(self).__name__),
            self.reason or mode,
            self.feature_service,
            self.log_fields,
        )
        self.log.info(
            "Endpoint %s (%s): %s over %s",
            self.endpoint,
            mode,
            policy.get("kind"),
            ", ".join(f"{v}={s['name']} v{s['version']}" for v, s in record["variants"].items()),
        )
        self.record_lineage(lambda: endpoint_lineage(hook, self.endpoint, record))
        return {"endpoint": self.endpoint, "mode": mode, "deployment": record}

    def blessing_required(self) -> bool:
        """``require_infra_blessing``, or ``[mlops] require_infra_blessing`` when it is None."""
        from airflow_mlops import settings

        if self.require_infra_blessing is None:
            return settings.require_infra_blessing()
        return self.require_infra_blessing

    def check_blessed(
        self, variants: Mapping[str, Mapping[str, str]], current: Mapping[str, Any] | None
    ) -> None:
        """Refuse a version this deployment brings to the endpoint that infra validation did not bless."""
        from airflow_mlops.exceptions import DeploymentError
        from airflow_mlops.hooks.mlflow import MlflowHook
        from airflow_mlops.operators.infra import BLESSING_TAG
        from airflow_mlops.registry.governance import alias_version

        if not self.mlflow_conn_id:
            raise DeploymentError(
                f"{self.endpoint}: require_infra_blessing needs an mlflow_conn_id, got none"
            )
        client = MlflowHook(self.mlflow_conn_id).get_conn()
        served = {
            (v["name"], str(v["version"]))
            for v in (current or {}).get("variants", {}).values()
            if "version" in v
        }
        for variant, spec in variants.items():
            version = spec.get("version") or alias_version(client, spec["name"], spec["alias"])
            if version is None or (spec["name"], str(version)) in served:
                continue  # an alias that names nothing fails at the server; a served version was let in before
            tag = client.get_model_version(spec["name"], str(version)).tags.get(BLESSING_TAG)
            if tag != "blessed":
                raise DeploymentError(
                    f"{self.endpoint}: variant {variant!r} ({spec['name']} v{version}) is not blessed by infra "
                    f"validation (its {BLESSING_TAG} tag is {tag!r}; rule: require_infra_blessing): "
                    "run InfraValidateOperator on it first"
                )

    def plan(self, current: Mapping[str, Any] | None) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """``(mode, variants, policy)`` to deploy, given the endpoint's current deployment (or None)."""
        if self.variants is not None:
            return "policy", dict(self.variants), dict(self.policy or {"kind": "single"})
        if self.alias:
            return (
                "replace",
                {"main": {"name": self.model_name, "alias": str(self.alias)}},
                {"kind": "single"},
            )
        if not str(self.version):
            raise MLOpsConfigError(
                f"version of {self.model_name!r} is empty (it is templated: did the upstream task push one?)"
            )
        model = {"name": self.model_name, "version": str(self.version)}
        if self.canary_weight is None:
            return "replace", {"main": model}, {"kind": "single"}
        if current is None:
            return "first", {"main": model}, {"kind": "single"}
        primary = current_primary(current)
        if primary == model:
            return "replace", {"main": model}, {"kind": "single"}
        return (
            "canary",
            {"main": primary, "candidate": model},
            {"kind": "canary", "primary": "main", "candidate": "candidate", "weight": self.canary_weight},
        )


class RollbackDeploymentOperator(LineageMixin, BaseOperator):
    """Serve an endpoint's previous deployment again (the server keeps each endpoint's history).

    :param endpoint: the endpoint (templated).
    :param reason: why (templated), recorded with the deployment.
    :param model_server_conn_id: connection of the server.

    XCom: the deployment record now served.
    OpenLineage: as :class:`DeployModelOperator` (the versions served again in, the endpoint out).
    """

    template_fields: Sequence[str] = ("endpoint", "reason")
    ui_color = "#fde0dc"

    def __init__(
        self, *, endpoint: str, reason: str, model_server_conn_id: str = "mlops_model_server", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint, self.reason, self.model_server_conn_id = endpoint, reason, model_server_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.hooks.model_server import ModelServerHook

        hook = ModelServerHook(self.model_server_conn_id)
        record = hook.rollback(self.endpoint, actor(context, type(self).__name__), self.reason)
        self.record_lineage(lambda: endpoint_lineage(hook, self.endpoint, record))
        self.log.info("Endpoint %s rolled back: %s", self.endpoint, record["variants"])
        return record


def current_primary(current: Mapping[str, Any]) -> dict[str, str]:
    """The ``{"name", "version"}`` an endpoint's deployment serves as its primary (its only variant,
    or a policy's ``primary``)."""
    name = current["policy"].get("primary") or next(iter(current["variants"]))
    return {k: str(current["variants"][name][k]) for k in ("name", "version")}
