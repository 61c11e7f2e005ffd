"""Stage 2: a feed's suite run by GX in a fresh ephemeral context (run-time parameters, Data Docs), read back as failures, warnings and bad rows."""
from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jobs.validation.contract import FILE, ROW, WARNING
from jobs.validation.messages import check_label, describe, exception_message
from jobs.validation.results import Failure, References
from jobs.validation.suites import build_suite, import_gx

if TYPE_CHECKING:
    from jobs.settings import Settings

# Data Docs assets not worth copying into the lake for every file (tutorial GIFs, web fonts).
_DOCS_PRUNE = ("static/fonts", "static/images/*.gif")


def codes_present(codes: tuple[str, ...], frame: pd.DataFrame, column: str) -> list[str]:
    """The reference codes that occur in `column`: the same membership answer as the whole table.

    GX re-serializes an expectation's value set many times per run; the planes and airports
    tables would make each validation seconds slower, the codes a file uses keep it fast.
    """
    if column not in frame:
        return list(codes)
    return sorted(set(codes) & {str(v) for v in frame[column].dropna().unique()})


def suite_parameters(feed: str, ds: str, frame: pd.DataFrame, references: References,
                settings: "Settings") -> dict[str, Any]:
    low, high = settings.ingest.row_count_bounds[feed]
    return {
        "flight_dates": [ds],
        "min_rows": low,
        "max_rows": high,
        "carriers": list(references.carriers),
        "airports": codes_present(references.airports, frame, "dest"),
        "origins": list(references.origins),
        "tailnums": codes_present(references.tailnums, frame, "tailnum"),
        "min_tailnum_reference_match": settings.ingest.min_tailnum_reference_match,
    }


def run_gx(feed: str, ds: str, frame: pd.DataFrame, parameters: dict[str, Any], docs_dir: Path | None):
    """Validate `frame` with the feed's suite in a fresh ephemeral GX context; maybe build Data Docs."""
    gx = import_gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites["lake"] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    ))
    batch = (
        context.data_sources.add_pandas("landing")
        .add_dataframe_asset(feed)
        .add_batch_definition_whole_dataframe(f"{feed}.csv")
    )
    suite = context.suites.add(build_suite(feed))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{feed} {ds}", data=batch, suite=suite)
    )
    run_id = RunIdentifier(run_name=ds, run_time=dt.datetime.now(dt.timezone.utc))
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE"},
        run_id=run_id,
    )
    if docs_dir is not None:
        # The context is fresh, so its site holds exactly this suite and this validation.
        context.build_data_docs(site_names=["lake"])
        for pattern in _DOCS_PRUNE:
            for path in docs_dir.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return suite, result, (docs_dir / "index.html" if docs_dir is not None else None)


@dataclass
class Interpretation:
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad: dict[Any, list[str]] = field(default_factory=dict)  # row index -> failed check labels
    checks: int = 0


def interpret(suite, gx_result, frame: pd.DataFrame, missing_columns: set[str]) -> Interpretation:
    originals = {e.id: e.configuration.kwargs for e in suite.expectations}
    out = Interpretation()
    # GX returns results in its own order; report them in the suite's order.
    order = {e.id: n for n, e in enumerate(suite.expectations)}
    results = sorted(gx_result.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    for item in results:
        config = item.expectation_config
        type_, kwargs, meta = config.type, dict(config.kwargs), dict(config.meta or {})
        level, reason = meta.get("level", FILE), meta.get("reason", "")
        label = check_label(type_, kwargs)
        severity = str(getattr(config.severity, "value", config.severity) or "critical")
        out.checks += 1
        error = exception_message(item.exception_info)
        if error is not None:
            columns = [kwargs["column"]] if kwargs.get("column") else list(kwargs.get("column_list") or [])
            absent = [c for c in columns if c in missing_columns]
            if not absent:
                detail = f"could not run: {error}"
            else:
                detail = "column missing" if kwargs.get("column") else f"columns missing [{', '.join(absent)}]"
            if severity == WARNING:
                out.warnings.append(f"{label}: {detail}")
            else:
                out.failures.append(Failure(label, FILE, detail, reason))
            continue
        if item.success:
            continue
        result = item.result or {}
        indices = [i for i in result.get("unexpected_index_list") or []]
        if type_ == "expect_compound_columns_to_be_unique" and indices:
            # GX flags every copy of a repeated key; the first occurrence stays good.
            repeated = frame.duplicated(subset=list(kwargs["column_list"]), keep="first")
            indices = [i for i in indices if repeated.get(i, False)]
        detail = describe(type_, kwargs, originals.get(config.id, {}), result, frame, indices)
        if severity == WARNING:
            out.warnings.append(f"{label}: {detail}")
        elif level == ROW and "unexpected_index_list" in result:
            out.failures.append(Failure(label, ROW, detail, reason, rows=len(indices)))
            for index in indices:
                out.bad.setdefault(index, []).append(label)
        else:
            out.failures.append(Failure(label, FILE, detail, reason))
    return out
