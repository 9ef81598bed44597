"""The same training spec as a SageMaker training job: the path past one machine (amazon provider)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.models.tasks import headline
from airflow_mlops.operators.deploy import DeployModelOperator
from airflow_mlops.operators.train import TrainingArgumentsMixin
from airflow_mlops.xcom import DeploymentResult

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Where the spec and the relocated training set sit inside the container (SageMaker's channel folders).
SPEC_IN_CONTAINER = "/opt/ml/input/data/spec/spec.json"


class SageMakerLightningTrainOperator(TrainingArgumentsMixin, SageMakerTrainingOperator):
    """Run a training spec as an Amazon SageMaker training job, through the amazon provider.

    The task checks the spec here (classes, hyperparameters, the training set: nothing is staged
    or started for a bad one), stages the spec and a relocated copy of the training set (the
    manifest and its split files) under ``s3_prefix/<job>/``, and starts a job whose container runs
    ``python -m airflow_mlops.training <spec> --sagemaker``: the same driver as on one machine,
    taking its hosts from SageMaker's ``resourceconfig.json`` (one node per instance, ``devices``
    processes per instance, torchrun's c10d rendezvous on the first host, nccl on GPUs).
    ``CheckpointConfig`` points at a folder per DAG run and task, so a retry (a new job) resumes
    from the last checkpoint. Waiting is the provider's: polling, or ``deferrable=True`` to free the
    worker slot while the job runs (``SageMakerTrigger`` in the triggerer).

    :param training_set: URI of the training set manifest (``file://`` or ``s3://``; templated).
    :param s3_prefix: ``s3://bucket/prefix`` for staged inputs, model artifacts and checkpoints (templated).
    :param image_uri: a training image with this package, torch and Lightning installed.
    :param role_arn: the IAM role the job runs as.
    :param instance_type, instance_count: the job's machines; ``devices``: GPUs (processes) per instance.
    :param model, data, hyperparameters, batch_size, accelerator, precision, max_epochs, seed: as in
        ``LightningTrainOperator``.
    :param mlflow_conn_id: the ``mlflow`` connection of a tracking server the job can reach; a
        local store is refused (None, the default: no MLflow). Its credentials are not sent to the job: the job
        reaches a server that trusts its network or role.
    :param max_runtime_s, volume_size_gb: the job's stopping condition and disk.
    :param kwargs: the provider's ``SageMakerTrainingOperator`` arguments (``aws_conn_id``,
        ``deferrable``, ``check_interval``, ``print_log``, ...).

    XCom: the runtime's ``result.json`` (metrics, samples/s, MLflow run id) with ``model_uri`` set to
    the job's ``model.tar.gz`` and ``sagemaker``: the job name, status and billable seconds.
    """

    template_fields: Sequence[str] = ("training_set", "s3_prefix", "hyperparameters")

    def __init__(
        self,
        *,
        training_set: str,
        s3_prefix: str,
        image_uri: str,
        role_arn: str,
        instance_type: str = "ml.g5.12xlarge",
        instance_count: int = 1,
        devices: int = 1,
        model: str,
        data: str = "airflow_mlops.training.tabular:TabularDataModule",
        hyperparameters: Mapping[str, Any] | None = None,
        batch_size: int = 4096,
        accelerator: str = "gpu",
        precision: str = "bf16-mixed",
        max_epochs: int = 3,
        seed: int = 42,
        mlflow_conn_id: str | None = None,
        mlflow_experiment: str | None = None,
        max_runtime_s: int = 24 * 3600,
        volume_size_gb: int = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(config={}, **kwargs)
        for name, value in (("instance_count", instance_count), ("devices", devices)):
            if not isinstance(value, int) or value < 1:
                raise MLOpsConfigError(f"{name} must be a positive integer, got {value!r}")
        self.training_set = training_set
        self.s3_prefix = s3_prefix
        self.image_uri = image_uri
        self.role_arn = role_arn
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.devices = devices
        self.model = model
        self.data = data
        self.hyperparameters = hyperparameters
        self.batch_size = batch_size
        self.accelerator = accelerator
        self.precision = precision
        self.max_epochs = max_epochs
        self.seed = seed
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_experiment = mlflow_experiment
        self.max_runtime_s = max_runtime_s
        self.volume_size_gb = volume_size_gb

    def execute(self, context: Context) -> dict:
        self.config = self.prepare_job(context)
        return self.training_result(super().execute(context)["Training"])

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict:
        return self.training_result(super().execute_complete(context, event)["Training"])

    def prepare_job(self, context: Context) -> dict[str, Any]:
        """Check the spec, stage the inputs in S3 and return the ``CreateTrainingJob`` request."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.training.spec import SpecError

        if not self.s3_prefix.startswith("s3://"):
            raise AirflowFailException(f"s3_prefix must be an s3:// URI, got {self.s3_prefix!r}")
        if self.mlflow_conn_id and not self.mlflow_hook.tracking_uri.startswith(("http://", "https://")):
            raise AirflowFailException(
                f"mlflow_conn_id {self.mlflow_conn_id!r}: {self.mlflow_hook.tracking_uri!r} is local to this "
                "machine; a SageMaker job needs a tracking server (host, port and scheme in the connection)"
            )
        ti = context.get("ti")
        where = f"{context['dag'].dag_id}/{context['run_id']}/{self.task_id}/{getattr(ti, 'map_index', -1)}"
        key = hashlib.sha256(where.encode()).hexdigest()[:12]
        job_name = f"{context['dag'].dag_id}-{key}-{getattr(ti, 'try_number', 1)}".replace("_", "-")[
            -63:
        ].lstrip("-")
        prefix = self.s3_prefix.rstrip("/")
        spec = self.training_spec(
            context,
            training_set="/opt/ml/input/data/training/manifest.json",
            output_dir="/opt/ml/model",
            checkpoint_dir="/opt/ml/checkpoints",
            devices=self.devices,
            num_nodes=self.instance_count,
            tags={"sagemaker_job": job_name},
        )
        s3 = S3Hook(aws_conn_id=self.aws_conn_id)
        with tempfile.TemporaryDirectory(prefix="sagemaker-training-set-") as folder:
            files = self._relocated_training_set(Path(folder))
            try:  # the classes and hyperparameters, on the local copy: a bad spec stages and starts nothing
                dataclasses.replace(spec, training_set=str(Path(folder) / "manifest.json")).validate()
            except SpecError as err:
                raise AirflowFailException(str(err)) from err
            bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
            base = f"{key_prefix}/{job_name}".lstrip("/")
            for name in files:
                s3.load_file(str(Path(folder) / name), f"{base}/training/{name}", bucket, replace=True)
            s3.load_string(spec.to_json(), f"{base}/spec/spec.json", bucket, replace=True)
        self.log.info("Staged the spec and %d training-set files under %s/%s", len(files), prefix, job_name)

        def channel(name: str) -> dict[str, Any]:
            return {
                "ChannelName": name,
                "InputMode": "File",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"{prefix}/{job_name}/{name}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }

        checkpoint_key = hashlib.sha256(where.encode()).hexdigest()[:16]
        return {
            "TrainingJobName": job_name,
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ["python", "-m", "airflow_mlops.training"],
                "ContainerArguments": [SPEC_IN_CONTAINER, "--sagemaker"],
            },
            "RoleArn": self.role_arn,
            "InputDataConfig": [channel("spec"), channel("training")],
            "OutputDataConfig": {"S3OutputPath": f"{prefix}/output"},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": self.volume_size_gb,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_s},
            "CheckpointConfig": {
                "S3Uri": f"{prefix}/checkpoints/{checkpoint_key}",
                "LocalPath": "/opt/ml/checkpoints",
            },
            "Environment": {"PYTHONUNBUFFERED": "1"},
            "Tags": [{"Key": k, "Value": v[:256]} for k, v in spec.tags.items()],
        }

    def _relocated_training_set(self, folder: Path) -> list[str]:
        """Copy the manifest and its split files into ``folder``, the manifest naming them relatively."""
        from airflow.sdk import ObjectStoragePath
        from airflow.sdk.exceptions import AirflowFailException

        def read(uri: str) -> bytes:
            conn_id = self.aws_conn_id if uri.startswith("s3://") else None
            path = ObjectStoragePath(uri if "://" in uri else Path(uri).resolve().as_uri(), conn_id=conn_id)
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise AirflowFailException(f"training_set: {uri!r} does not exist") from None

        manifest = json.loads(read(self.training_set))
        names = ["manifest.json"]
        for split, record in manifest.get("splits", {}).items():
            name = f"{split}.parquet"
            (folder / name).write_bytes(read(record["uri"]))
            record["uri"] = name
            names.append(name)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return names

    def training_result(self, description: Mapping[str, Any]) -> dict[str, Any]:
        """``result.json`` from the job's ``model.tar.gz``, with the job's name, status and model URI."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.exceptions import AirflowFailException

        artifact = description["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, _, key = artifact.removeprefix("s3://").partition("/")
        raw = S3Hook(aws_conn_id=self.aws_conn_id).get_key(key, bucket).get()["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("./") == "result.json"), None)
            if member is None or (handle := archive.extractfile(member)) is None:
                raise AirflowFailException(
                    f"SageMaker job {description['TrainingJobName']}: {artifact} has no "
                    "result.json (did the runtime finish?)"
                )
            result: dict[str, Any] = json.loads(handle.read())
        result["model_uri"] = artifact
        result["sagemaker"] = {
            "job_name": description["TrainingJobName"],
            "status": description["TrainingJobStatus"],
            "billable_seconds": description.get("BillableTimeInSeconds"),
        }
        self.log.info(
            "SageMaker job %s: %s, model %s",
            description["TrainingJobName"],
            headline(result["metrics"], result.get("task", "binary")),
            artifact,
        )
        return result


class SageMakerDeployModelOperator(MlflowOperatorMixin, DeployModelOperator):
    """``DeployModelOperator`` with an Amazon SageMaker endpoint as the target, through the amazon
    provider's ``SageMakerHook``: the path past one server.

    Each model version becomes a SageMaker model (its folder packed as ``model.tar.gz`` under
    ``s3_prefix/<name>/<version>/``, the container ``image_uri`` running ``airflow-mlops
    serve-sagemaker``). Each deployment is a new endpoint configuration: ``single`` and ``replace``
    are one production variant; ``canary`` and ``ab`` are production variants with weights (SageMaker
    splits the traffic); ``shadow`` adds a shadow variant that gets a copy of every request. Bandits
    and composites need our own server and are refused before anything is created. The endpoint is
    created, or updated to the new configuration (SageMaker switches without downtime; a failed
    update leaves the old configuration serving).

    :param s3_prefix: ``s3://bucket/prefix`` for the model archives.
    :param image_uri: the inference image (this package installed; entry point ``airflow-mlops serve-sagemaker``).
    :param role_arn: the execution role SageMaker assumes.
    :param instance_type, instance_count: per production variant.
    :param mlflow_conn_id: the ``mlflow`` connection of the registry.
    :param aws_conn_id: the AWS connection.
    :param check_interval: seconds between endpoint status checks while it updates.

    Other arguments as ``DeployModelOperator``. XCom: ``{"endpoint", "mode", "deployment"}`` where
    ``deployment`` holds the variants, the policy, the endpoint configuration name and its
    ``ProductionVariants`` / ``ShadowProductionVariants``.
    """

    template_fields: Sequence[str] = (*DeployModelOperator.template_fields, "s3_prefix")

    def __init__(
        self,
        *,
        s3_prefix: str,
        image_uri: str,
        role_arn: str,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        aws_conn_id: str | None = "aws_default",
        check_interval: int = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if instance_count < 1:
            raise MLOpsConfigError(f"instance_count must be a positive integer, got {instance_count!r}")
        self.s3_prefix, self.image_uri, self.role_arn = s3_prefix, image_uri, role_arn
        self.mlflow_conn_id = mlflow_conn_id
        self.instance_type, self.instance_count = instance_type, instance_count
        self.aws_conn_id, self.check_interval = aws_conn_id, check_interval

    def execute(self, context: Context) -> DeploymentResult:
        from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

        from airflow_mlops.serving.policies import Policy

        hook = SageMakerHook(aws_conn_id=self.aws_conn_id)
        current = self._current(hook)
        mode, variants, policy = self.plan(current)
        kind = policy.get("kind")
        Policy.from_dict(policy, list(variants))  # a policy that cannot work fails before anything is created
        if kind not in ("single", "canary", "ab", "shadow"):
            raise MLOpsConfigError(
                f"policy {kind!r} needs the airflow-mlops model server; a SageMaker endpoint "
                "takes single, canary, ab or shadow"
            )
        if not self.s3_prefix.startswith("s3://"):
            raise MLOpsConfigError(f"s3_prefix must be an s3:// URI, got {self.s3_prefix!r}")
        pinned = {variant: self._pin(spec) for variant, spec in variants.items()}
        models = {variant: self._ensure_model(hook, spec) for variant, spec in pinned.items()}
        weights = self._weights(policy, list(pinned))
        production = [self._variant(v, models[v], weights[v]) for v in pinned if v != policy.get("shadow")]
        config_name = f"{self.endpoint}-{hashlib.sha256(json.dumps([pinned, policy], sort_keys=True).encode()).hexdigest()[:12]}"
        config: dict[str, Any] = {
            "EndpointConfigName": config_name,
            "ProductionVariants": production,
            "Tags": [{"Key": "mlops:policy", "Value": json.dumps(policy)}],
        }
        if kind == "shadow":
            config["ShadowProductionVariants"] = [
                self._variant(policy["shadow"], models[policy["shadow"]], 1.0)
            ]
        try:
            hook.describe_endpoint_config(config_name)  # the same deployment again: reuse its configuration
        except hook.get_conn().exceptions.ClientError:
            hook.create_endpoint_config(config)
        request = {"EndpointName": self.endpoint, "EndpointConfigName": config_name}
        if current is None:
            hook.create_endpoint(request, wait_for_completion=True, check_interval=self.check_interval)
        elif current["config"] != config_name:
            hook.update_endpoint(request, wait_for_completion=True, check_interval=self.check_interval)
        self.log.info(
            "SageMaker endpoint %s (%s): %s over %s",
            self.endpoint,
            mode,
            kind,
            ", ".join(f"{v}={s['name']} v{s['version']} ({models[v]})" for v, s in pinned.items()),
        )
        return {
            "endpoint": self.endpoint,
            "mode": mode,
            "deployment": {
                "variants": pinned,
                "policy": policy,
                "config": config_name,
                "ProductionVariants": production,
                "ShadowProductionVariants": config.get("ShadowProductionVariants", []),
            },
        }

    def _current(self, hook: Any) -> dict[str, Any] | None:
        """The endpoint's deployment in our terms (variants -> name and version), or None."""
        client = hook.get_conn()
        try:
            endpoint = client.describe_endpoint(EndpointName=self.endpoint)
        except client.exceptions.ClientError:
            return None
        config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        variants = {}
        for variant in config["ProductionVariants"]:
            environment = client.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"][
                "Environment"
            ]
            variants[variant["VariantName"]] = {
                "name": environment["MLOPS_MODEL_NAME"],
                "version": environment["MLOPS_MODEL_VERSION"],
            }
        tags = {
            t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=config["EndpointConfigArn"])["Tags"]
        }
        return {
            "variants": variants,
            "policy": json.loads(tags.get("mlops:policy", '{"kind": "single"}')),
            "config": endpoint["EndpointConfigName"],
        }

    def _pin(self, spec: Mapping[str, str]) -> dict[str, str]:
        from airflow_mlops.registry.versions import registered_version

        if spec.get("version"):
            return {"name": spec["name"], "version": str(spec["version"])}
        pinned = registered_version(f"models:/{spec['name']}@{spec['alias']}", self.mlflow_store_uri)
        assert pinned is not None
        return {"name": pinned[0], "version": pinned[1]}

    def _ensure_model(self, hook: Any, spec: Mapping[str, str]) -> str:
        """The SageMaker model of a registry version, created once (archive in S3, then the model)."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from airflow_mlops.registry.versions import model_folder

        name = f"{spec['name']}-v{spec['version']}".replace("_", "-")[-63:].lstrip("-")
        client = hook.get_conn()
        try:
            client.describe_model(ModelName=name)
            return name
        except client.exceptions.ClientError:
            pass
        bucket, _, prefix = self.s3_prefix.removeprefix("s3://").partition("/")
        key = "/".join(p for p in (prefix.rstrip("/"), spec["name"], spec["version"], "model.tar.gz") if p)
        with tempfile.TemporaryDirectory(prefix="sagemaker-model-") as download:
            folder = model_folder(
                f"models:/{spec['name']}/{spec['version']}", self.mlflow_store_uri, dst=Path(download)
            )
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w:gz") as tar:
                for file in ("config.json", "model.pt"):
                    tar.add(folder / file, arcname=file)
        S3Hook(aws_conn_id=self.aws_conn_id).load_bytes(archive.getvalue(), key, bucket, replace=True)
        hook.create_model(
            {
                "ModelName": name,
                "ExecutionRoleArn": self.role_arn,
                "PrimaryContainer": {
                    "Image": self.image_uri,
                    "ModelDataUrl": f"s3://{bucket}/{key}",
                    "Environment": {"MLOPS_MODEL_NAME": spec["name"], "MLOPS_MODEL_VERSION": spec["version"]},
                },
            }
        )
        return name

    @staticmethod
    def _weights(policy: Mapping[str, Any], variants: list[str]) -> dict[str, float]:
        if policy["kind"] == "canary":
            return {
                policy["primary"]: 1.0 - float(policy["weight"]),
                policy["candidate"]: float(policy["weight"]),
            }
        if policy["kind"] == "ab":
            weights = policy.get("weights") or {v: 1.0 for v in variants}
            return {v: float(weights[v]) for v in variants}
        return dict.fromkeys(variants, 1.0)

    def _variant(self, name: str, model: str, weight: float) -> dict[str, Any]:
        return {
            "VariantName": name,
            "ModelName": model,
            "InitialVariantWeight": weight,
            "InstanceType": self.instance_type,
            "InitialInstanceCount": self.instance_count,
        }
