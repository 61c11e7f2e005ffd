"""The declared feature schema (config/features.yaml): its model, its loader, and the check of a built schema.

Declared once: the transforms build to it, every write is checked against it, and the
pandas reference (tests/oracles/features_reference.py) reads the same file. Spark types are
named by their Spark SQL names; pyspark is imported inside functions.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

SparkTypeName = Literal["int", "bigint", "double", "string", "boolean", "date", "timestamp"]
Role = Literal["info", "categorical", "numeric", "indicator"]
# The kind of each declared type: a cast within a kind settles a width, one across kinds is an error.
TYPE_FAMILY = {"int": "number", "bigint": "number", "double": "number", "string": "string", "boolean": "boolean",
               "date": "date", "timestamp": "timestamp"}


class FeatureSchemaError(ValueError):
    """A frame does not match the declared feature schema; the message names each column."""


class FeatureColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: SparkTypeName
    role: Role
    key: bool = False
    doc: str = Field(min_length=1)


class FeatureSchema(BaseModel):
    """config/features.yaml: the columns of a features partition, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    columns: tuple[FeatureColumn, ...] = Field(min_length=1)
    sha256: str = ""  # of the file it was loaded from: an edit without a version bump still shows

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: tuple[FeatureColumn, ...]) -> tuple[FeatureColumn, ...]:
        names = [c.name for c in columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicated column names: {duplicated}")
        return columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    def by_role(self, *roles: str) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.role in roles)

    @property
    def model_inputs(self) -> tuple[str, ...]:
        return self.by_role("categorical", "numeric", "indicator")

    def spark_schema(self) -> "StructType":
        from pyspark.sql import types as T

        return T.StructType([T.StructField(c.name, spark_type(c.type), nullable=True) for c in self.columns])


def spark_type(name: str) -> "DataType":
    """The Spark type of a declared type name."""
    from pyspark.sql import types as T

    return {"int": T.IntegerType(), "bigint": T.LongType(), "double": T.DoubleType(), "string": T.StringType(),
            "boolean": T.BooleanType(), "date": T.DateType(), "timestamp": T.TimestampType()}[name]


def type_family(data_type: "DataType") -> str:
    """The TYPE_FAMILY kind of a Spark type; a type no declared one maps to keeps its own name."""
    from pyspark.sql import types as T

    family = {T.IntegerType: "number", T.LongType: "number", T.DoubleType: "number", T.StringType: "string",
              T.BooleanType: "boolean", T.DateType: "date", T.TimestampType: "timestamp"}
    return family.get(type(data_type), data_type.simpleString())


@lru_cache(maxsize=4)
def load_feature_schema(path: Path | None = None) -> FeatureSchema:
    """The declared feature schema (default: `features.schema_file` of the settings)."""
    if path is None:
        from jobs.settings import get_settings

        path = get_settings().features.schema_path
    data = Path(path).read_bytes()
    try:
        tree = yaml.safe_load(data)
        return FeatureSchema.model_validate({**(tree or {}), "sha256": hashlib.sha256(data).hexdigest()})
    except (yaml.YAMLError, ValidationError) as exc:
        raise FeatureSchemaError(f"{path}: not a valid feature schema:\n{exc}") from None


def check_schema(schema: "StructType", declared: FeatureSchema, what: str = "features") -> None:
    """Raise FeatureSchemaError unless `schema` has exactly the declared columns, order and types."""
    built = [(f.name, f.dataType.simpleString()) for f in schema.fields]
    wanted = [(c.name, spark_type(c.type).simpleString()) for c in declared.columns]
    if built == wanted:
        return
    built_types, wanted_types = dict(built), dict(wanted)
    problems = [f"  missing column {n} ({t})" for n, t in wanted if n not in built_types]
    problems += [f"  undeclared column {n} ({t})" for n, t in built if n not in wanted_types]
    problems += [f"  column {n}: declared {t}, got {built_types[n]}"
                 for n, t in wanted if n in built_types and built_types[n] != t]
    if not problems:
        problems = [f"  column order differs: declared {[n for n, _ in wanted]}, got {[n for n, _ in built]}"]
    raise FeatureSchemaError(
        f"{what} do not match the declared feature schema (version {declared.version}):\n" + "\n".join(problems)
    )
