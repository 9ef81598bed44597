"""Train on Kubernetes: one pod per node of an Indexed Job, torchrun's rendezvous through a headless Service."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_mlops.exceptions import MLOpsConfigError, TrainingError
from airflow_mlops.operators.train import LightningTrainOperator

if TYPE_CHECKING:
    from airflow_mlops.training.spec import TrainingSpec

#: Where each pod finds the spec (a ConfigMap mounted read-only).
SPEC_MOUNT = "/etc/airflow-mlops"
#: The GPU resource name of NVIDIA's device plugin.
GPU_RESOURCE = "nvidia.com/gpu"


class KubernetesLightningTrainOperator(LightningTrainOperator):
    """``LightningTrainOperator`` on a Kubernetes cluster: the training runs in pods, not on the worker.

    The task checks the spec as ``LightningTrainOperator`` does (options, class paths, the training
    set), then creates in ``namespace`` (through the ``kubernetes`` connection of the cncf.kubernetes
    provider) four objects named after the DAG, run and task (:meth:`manifests`):

    - a **Secret** with the object store's credentials (fsspec's ``FSSPEC_S3``, from
      ``storage_conn_id``) and MLflow's (from ``mlflow_conn_id``); the pods take it through
      ``envFrom``, so no credential is in a pod spec, the task log or XCom;
    - a **ConfigMap** holding ``spec.json``, mounted at ``/etc/airflow-mlops``;
    - a **headless Service** over the Job's pods (``clusterIP: None``, addresses published before
      readiness), so pod ``i`` is ``<name>-<i>.<name>`` in DNS;
    - an **Indexed Job** of ``num_nodes`` pods that all run at once. Pod ``i`` runs the training
      driver with ``--node-rank`` from ``JOB_COMPLETION_INDEX`` and torchrun's c10d rendezvous at
      ``<name>-0.<name>:<master_port>``; it asks for ``devices`` GPUs (``nvidia.com/gpu``) with
      ``accelerator="gpu"``, and gets a memory-backed ``/dev/shm`` (NCCL and data loaders need more
      than a container's 64 MB). ``backoffLimit`` is 0: Airflow's retry starts a new Job, which
      resumes from the ``last.ckpt`` in the object store.

    The task waits for the Job, copies the first pod's output into its log, reads ``result.json``
    from ``output_dir`` and deletes the four objects (also when the Job failed or the task was
    killed). Pods share no disk, so ``training_set``, ``output_dir`` and ``checkpoint_root`` must be
    ``s3://`` URIs (refused before anything is created, naming the argument).

    :param image: the image the pods run: the suite installed, with torch for the pods' hardware
        and the project's modules (``docker/Dockerfile``'s image, with a CUDA torch for GPUs).
    :param namespace: the namespace of the objects (default ``default``).
    :param kubernetes_conn_id: the cncf.kubernetes provider's connection (in-cluster or kube config).
    :param code_path: ``PYTHONPATH`` in the pods: where the image keeps the network and data modules
        (default the image's DAG folder).
    :param container_resources: the container's ``requests``/``limits`` besides the GPUs, e.g.
        ``{"requests": {"cpu": "8", "memory": "32Gi"}}``.
    :param node_selector, tolerations, service_account_name: the pods' placement and identity.
    :param poll_interval: seconds between looks at the Job.
    :param kwargs: everything ``LightningTrainOperator`` takes (``num_nodes``, ``devices``,
        ``accelerator``, ``master_port``, ``storage_conn_id``, ...; ``node_rank`` and
        ``master_addr`` are the Job's).

    XCom: the result JSON, as ``LightningTrainOperator``.
    """

    #: The task process needs the provider, not torch: the pods train.
    required_extra: ClassVar[str | None] = "kubernetes"
    template_fields: Sequence[str] = (*LightningTrainOperator.template_fields, "image", "namespace")

    def __init__(
        self,
        *,
        image: str,
        namespace: str = "default",
        kubernetes_conn_id: str = "kubernetes_default",
        code_path: str = "/opt/airflow-mlops/dags",
        container_resources: Mapping[str, Mapping[str, str]] | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Mapping[str, Any]] = (),
        service_account_name: str | None = None,
        poll_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.code_path = code_path
        self.container_resources = {k: dict(v) for k, v in (container_resources or {}).items()}
        self.node_selector = dict(node_selector or {})
        self.tolerations = [dict(t) for t in tolerations]
        self.service_account_name = service_account_name
        self.poll_interval = poll_interval
        self._created: list[tuple[str, str]] = []

    def object_name(self, spec: TrainingSpec) -> str:
        """The objects' name: ``train-<task>-<hash of dag, run, task, map index>`` (a DNS label of at
        most 52 characters, so ``<name>-<index>`` pod host names stay valid)."""
        digest = hashlib.sha256(spec.checkpoint_dir.encode()).hexdigest()[:10]
        task = "".join(c if c.isalnum() else "-" for c in self.task_id.lower()).strip("-")[:30]
        return f"train-{task}-{digest}".replace("--", "-")

    def check_storage(self, spec: TrainingSpec) -> None:
        """Pods share no disk: the training set, the checkpoints and the output must be in S3."""
        from airflow_mlops.storage import S3_SCHEMES

        for what, uri in (
            ("training_set", spec.training_set),
            ("output_dir", spec.output_dir),
            ("checkpoint_root", spec.checkpoint_dir),
        ):
            if not str(uri).startswith(S3_SCHEMES):
                raise MLOpsConfigError(
                    f"{what} {uri!r}: the Kubernetes backend needs an s3:// URI (its pods share no "
                    "disk with the Airflow worker or with each other)"
                )

    def manifests(self, spec: TrainingSpec, secret_env: Mapping[str, str]) -> dict[str, Any]:
        """The Secret, ConfigMap, headless Service and Indexed Job of ``spec`` (``kubernetes``
        client objects); ``secret_env`` only goes into the Secret."""
        from kubernetes.client import models as k8s

        name = self.object_name(spec)
        labels = {"app.kubernetes.io/name": "airflow-mlops-training", "airflow-mlops/job": name}
        metadata = k8s.V1ObjectMeta(name=name, namespace=self.namespace, labels=labels)
        nodes = self.num_nodes
        command = [
            "python",
            "-m",
            "airflow_mlops.training",
            f"{SPEC_MOUNT}/spec.json",
            "--nproc-per-node",
            str(self.devices),
            "--nnodes",
            str(nodes),
            "--node-rank",
            "$(JOB_COMPLETION_INDEX)",  # the Job controller sets it per pod; Kubernetes expands it
            "--rdzv-endpoint",
            f"{name}-0.{name}:{self.master_port}",
            "--rdzv-id",
            name,
        ]
        resources = {kind: dict(values) for kind, values in self.container_resources.items()}
        if self.accelerator == "gpu":
            for kind in ("requests", "limits"):
                resources.setdefault(kind, {})[GPU_RESOURCE] = str(self.devices)
        container = k8s.V1Container(
            name="train",
            image=self.image,
            command=command,
            env=[
                k8s.V1EnvVar(name="PYTHONPATH", value=self.code_path),
                k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            ],
            env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=name))],
            ports=[k8s.V1ContainerPort(container_port=self.master_port, name="rendezvous")],
            resources=k8s.V1ResourceRequirements(**resources) if resources else None,
            volume_mounts=[
                k8s.V1VolumeMount(name="spec", mount_path=SPEC_MOUNT, read_only=True),
                k8s.V1VolumeMount(name="shm", mount_path="/dev/shm"),
            ],
        )
        pod = k8s.V1PodSpec(
            containers=[container],
            restart_policy="Never",
            subdomain=name,  # with the headless Service: <name>-<index>.<name> resolves to pod <index>
            node_selector=self.node_selector or None,
            tolerations=[k8s.V1Toleration(**t) for t in self.tolerations] or None,
            service_account_name=self.service_account_name,
            volumes=[
                k8s.V1Volume(name="spec", config_map=k8s.V1ConfigMapVolumeSource(name=name)),
                k8s.V1Volume(name="shm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory")),
            ],
        )
        job = k8s.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=metadata,
            spec=k8s.V1JobSpec(
                completion_mode="Indexed",
                completions=nodes,
                parallelism=nodes,  # every node at once: the rendezvous waits for all of them
                backoff_limit=0,  # Airflow retries, from the checkpoint
                template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=labels), spec=pod),
            ),
        )
        service = k8s.V1Service(
            api_version="v1",
            kind="Service",
            metadata=metadata,
            spec=k8s.V1ServiceSpec(
                cluster_ip="None",
                selector=labels,
                publish_not_ready_addresses=True,  # the rendezvous starts before any pod is "ready"
                ports=[k8s.V1ServicePort(name="rendezvous", port=self.master_port)],
            ),
        )
        config_map = k8s.V1ConfigMap(
            api_version="v1", kind="ConfigMap", metadata=metadata, data={"spec.json": spec.to_json()}
        )
        secret = k8s.V1Secret(
            api_version="v1", kind="Secret", metadata=metadata, type="Opaque", string_data=dict(secret_env)
        )
        return {"secret": secret, "config_map": config_map, "service": service, "job": job}

    def secret_environment(self, spec: TrainingSpec) -> dict[str, str]:
        """The pods' credentials: the object store's (fsspec) and MLflow's, from the connections."""
        from airflow_mlops.storage import fsspec_environment

        env = fsspec_environment(
            self.storage_conn_id,
            {
                "training_set": spec.training_set,
                "output_dir": spec.output_dir,
                "checkpoint_root": spec.checkpoint_dir,
            },
        )
        if self.mlflow_conn_id:
            env.update(self.mlflow_hook.credentials_env())
        return env

    def train(self, spec: TrainingSpec, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Check ``spec``, run it as an Indexed Job, return ``result.json`` (the objects are removed after)."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.storage import environment
        from airflow_mlops.training.spec import SpecError, storage_path

        try:
            self.check_storage(spec)
            secret_env = {**self.secret_environment(spec), **(env or {})}
            with environment(secret_env):
                spec.check()  # options, class paths and data, as the worker-local backend does
        except (SpecError, MLOpsConfigError) as err:
            raise AirflowFailException(str(err)) from err
        objects = self.manifests(spec, secret_env)
        name = objects["job"].metadata.name
        hook = KubernetesHook(conn_id=self.kubernetes_conn_id)
        try:
            self._create(hook, objects)
            self.log.info(
                "Job %s/%s: %d pod(s) x %d %s device(s), rendezvous %s-0.%s:%d",
                self.namespace,
                name,
                self.num_nodes,
                self.devices,
                self.accelerator,
                name,
                name,
                self.master_port,
            )
            job = hook.wait_until_job_complete(name, self.namespace, job_poll_interval=self.poll_interval)
            self._log_first_pod(hook, name)
            failed = hook.is_job_failed(job)
            if failed:
                raise TrainingError(f"Kubernetes Job {self.namespace}/{name} failed: {failed}")
        finally:
            self._delete(hook)
        with environment(secret_env):
            result: dict[str, Any] = json.loads((storage_path(spec.output_dir) / "result.json").read_text())
        return result

    def _create(self, hook: Any, objects: Mapping[str, Any]) -> None:
        core, namespace = hook.core_v1_client, self.namespace
        core.create_namespaced_secret(namespace, objects["secret"])
        self._created.append(("secret", objects["secret"].metadata.name))
        core.create_namespaced_config_map(namespace, objects["config_map"])
        self._created.append(("config_map", objects["config_map"].metadata.name))
        core.create_namespaced_service(namespace, objects["service"])
        self._created.append(("service", objects["service"].metadata.name))
        hook.batch_v1_client.create_namespaced_job(namespace, objects["job"])
        self._created.append(("job", objects["job"].metadata.name))

    def _delete(self, hook: Any) -> None:
        """Remove what this try created, newest first (the Job with its pods); a failure to delete
        is logged, not raised over the training's own outcome."""
        deleters = {
            "job": lambda n: hook.batch_v1_client.delete_namespaced_job(
                n, self.namespace, propagation_policy="Background"
            ),
            "service": lambda n: hook.core_v1_client.delete_namespaced_service(n, self.namespace),
            "config_map": lambda n: hook.core_v1_client.delete_namespaced_config_map(n, self.namespace),
            "secret": lambda n: hook.core_v1_client.delete_namespaced_secret(n, self.namespace),
        }
        while self._created:
            kind, name = self._created.pop()
            try:
                deleters[kind](name)
            except Exception as err:  # the cluster's own garbage collection is the fallback
                self.log.warning("could not delete %s %s/%s: %s", kind, self.namespace, name, err)

    def _log_first_pod(self, hook: Any, name: str) -> None:
        pods = hook.core_v1_client.list_namespaced_pod(
            self.namespace, label_selector=f"airflow-mlops/job={name}"
        ).items
        first = sorted(pods, key=lambda p: p.metadata.name)[:1]
        for pod in first:
            for chunk in hook.get_pod_logs(pod.metadata.name, namespace=self.namespace).stream():
                for line in chunk.decode(errors="replace").splitlines():
                    self.log.info("%s", line)

    def on_kill(self) -> None:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        if self._created:
            self._delete(KubernetesHook(conn_id=self.kubernetes_conn_id))
