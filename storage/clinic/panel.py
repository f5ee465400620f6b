"""The doctors' panel query.

The panel is one SQL statement over the clinic database: the caller's patients (their care teams,
or the whole clinic for an administrator), each with its stored figures (storage.clinic.summaries),
its open alerts (counted here, from `alerts`, so they are never stale) and its gateway, filtered,
sorted and paged by the database, with the total. Nothing here computes a clinical figure."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from storage.clinic.fleet import GatewayState
from storage.clinic.models import (
    Alert,
    CareTeamMember,
    Clinic,
    Gateway,
    GatewayStatusRecord,
    MeterBinding,
    Patient,
    PatientSummaryRow,
    UserRole,
)
from storage.clinic.models import PatientTargets as TargetsRow
from storage.clinic.summaries import SUMMARY_COLUMNS, as_utc
from vitals.payload import AlertSeverity, AlertState

ACTIVE_ALERT_STATES: Final = (
    AlertState.OPEN,
    AlertState.ACKNOWLEDGED,
    AlertState.SNOOZED,
    AlertState.ESCALATED,
)
# Not yet handled by anyone: neither acknowledged nor snoozed.
UNHANDLED_ALERT_STATES: Final = (AlertState.OPEN, AlertState.ESCALATED)
SEVERITY_RANK: Final[Mapping[AlertSeverity, int]] = {
    AlertSeverity.INFO: 1,
    AlertSeverity.WARNING: 2,
    AlertSeverity.URGENT: 3,
}
SEVERITY_OF_RANK: Final = {rank: severity for severity, rank in SEVERITY_RANK.items()}

GATEWAY_STATE_RANK: Final[Mapping[GatewayState, int]] = {
    GatewayState.ONLINE: 0,
    GatewayState.UNKNOWN: 1,
    GatewayState.OFFLINE: 2,
}
STATE_OF_RANK: Final = {rank: state for state, rank in GATEWAY_STATE_RANK.items()}


class PanelSort(enum.StrEnum):
    URGENCY = "urgency"
    NAME = "name"
    LAST_SEEN = "last_seen"
    BP_MEAN = "bp_mean"
    GLUCOSE_LATEST = "glucose_latest"
    TIME_IN_RANGE = "time_in_range"
    DAYS_WITH_DATA = "days_with_data"
    GATEWAY = "gateway"


class SortOrder(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


class AlertStateFilter(enum.StrEnum):
    ANY = "any"
    ACTIVE = "active"  # at least one open, acknowledged, snoozed or escalated alert
    NONE = "none"  # no such alert
    NEEDS_SIGNOFF = "needs_signoff"  # an urgent alert resolved unseen, not yet signed off


@dataclass(frozen=True, slots=True)
class PanelQuery:
    sort: PanelSort = PanelSort.URGENCY
    order: SortOrder | None = None  # None: descending, except name (ascending)
    name_contains: str | None = None
    alert_state: AlertStateFilter = AlertStateFilter.ANY
    no_data_days: int | None = None  # only patients without any reading for this many days
    gateway_silent_after: timedelta = timedelta(minutes=5)  # then offline (storage.clinic.fleet)
    offset: int = 0
    limit: int = 100

    @property
    def descending(self) -> bool:
        if self.order is None:
            return self.sort is not PanelSort.NAME
        return self.order is SortOrder.DESC


@dataclass(frozen=True, slots=True)
class PanelAlerts:
    highest_severity: AlertSeverity | None
    counts: dict[AlertSeverity, int]
    active: int
    oldest_unhandled_at: datetime | None
    needs_signoff: int


@dataclass(frozen=True, slots=True)
class PanelEntry:
    """One patient's panel row as stored: `summary` holds the `patient_summaries` columns (None when
    the patient has no row yet); the gateway is the patient's (through an active meter binding) heard
    from most recently."""

    patient_id: str
    given_name: str
    family_name: str
    timezone: str
    alerts: PanelAlerts
    summary: dict[str, Any] | None
    gateway_id: str | None
    gateway_last_seen_at: datetime | None
    gateway_state: GatewayState | None


@dataclass(frozen=True, slots=True)
class PanelPage:
    total: int
    entries: list[PanelEntry]


def visible_patients(user_id: str, clinic_id: str, roles: frozenset[UserRole]) -> Select[str]:
    """Ids of the active patients a user may see: their care teams', or the clinic's for an
    administrator (api/deps.py applies the same rule to each patient read)."""
    query = select(Patient.patient_id).where(Patient.clinic_id == clinic_id, Patient.active.is_(True))
    if UserRole.CLINIC_ADMIN not in roles:
        query = query.where(
            Patient.patient_id.in_(select(CareTeamMember.patient_id).where(CareTeamMember.user_id == user_id))
        )
    return query


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _gateway_state_rank(now: datetime, silent_after: timedelta) -> ColumnElement[int]:
    """storage.clinic.fleet.gateway_state as SQL: never reported; offline (a last will, a final
    status, or silent for `silent_after`); online."""
    return case(
        (GatewayStatusRecord.gateway_id.is_(None), literal(GATEWAY_STATE_RANK[GatewayState.UNKNOWN])),
        (
            or_(
                GatewayStatusRecord.online.is_(False),
                Gateway.last_seen_at.is_(None),
                Gateway.last_seen_at < now - silent_after,
            ),
            literal(GATEWAY_STATE_RANK[GatewayState.OFFLINE]),
        ),
        else_=literal(GATEWAY_STATE_RANK[GatewayState.ONLINE]),
    )


def _patient_gateways(
    clinic_id: str, now: datetime, silent_after: timedelta, patient_ids: Sequence[str] | None = None
) -> Any:
    """Each patient's gateways through active meter bindings, numbered from the one heard from last
    (of `patient_ids` only, if given)."""
    conditions: list[ColumnElement[bool]] = [
        MeterBinding.active.is_(True),
        Gateway.active.is_(True),
        Gateway.clinic_id == clinic_id,
    ]
    if patient_ids is not None:
        conditions.append(MeterBinding.patient_id.in_(list(patient_ids)))
    return (
        select(
            MeterBinding.patient_id.label("patient_id"),
            Gateway.gateway_id.label("gateway_id"),
            Gateway.last_seen_at.label("last_seen_at"),
            _gateway_state_rank(now, silent_after).label("state_rank"),
            func.row_number()
            .over(
                partition_by=MeterBinding.patient_id,
                order_by=(Gateway.last_seen_at.desc().nulls_last(), Gateway.gateway_id),
            )
            .label("n"),
        )
        .join(Gateway, Gateway.gateway_id == MeterBinding.gateway_id)
        .outerjoin(GatewayStatusRecord, GatewayStatusRecord.gateway_id == Gateway.gateway_id)
        .where(*conditions)
        .subquery()
    )


@dataclass(frozen=True, slots=True)
class PatientGateway:
    gateway_id: str
    state: GatewayState
    last_seen_at: datetime | None


def patient_gateway(
    session: Session, *, patient_id: str, clinic_id: str, now: datetime, silent_after: timedelta
) -> PatientGateway | None:
    """The patient's gateway as the panel shows it (`PanelEntry`), or None without one."""
    gateways = _patient_gateways(clinic_id, now, silent_after, [patient_id])
    row = session.execute(
        select(gateways.c.gateway_id, gateways.c.last_seen_at, gateways.c.state_rank).where(
            gateways.c.patient_id == patient_id, gateways.c.n == 1
        )
    ).first()
    if row is None:
        return None
    return PatientGateway(row.gateway_id, STATE_OF_RANK[int(row.state_rank)], row.last_seen_at)


def _alert_stats(clinic_id: str, patient_ids: Sequence[str] | None = None) -> Any:
    """Per patient: highest active severity (rank), active alerts by severity, the oldest unhandled
    alert's opening time and the urgent alerts waiting for a sign-off."""
    rank = case(
        *((Alert.severity == severity, literal(r)) for severity, r in SEVERITY_RANK.items()), else_=literal(0)
    )
    conditions: list[ColumnElement[bool]] = [
        Alert.clinic_id == clinic_id,
        or_(Alert.state.in_(ACTIVE_ALERT_STATES), and_(Alert.needs_signoff, Alert.signed_off_at.is_(None))),
    ]
    if patient_ids is not None:
        conditions.append(Alert.patient_id.in_(list(patient_ids)))
    return (
        select(
            Alert.patient_id.label("patient_id"),
            func.max(case((Alert.state.in_(ACTIVE_ALERT_STATES), rank), else_=0)).label("rank"),
            *(
                func.sum(
                    case((and_(Alert.state.in_(ACTIVE_ALERT_STATES), Alert.severity == s), 1), else_=0)
                ).label(f"n_{s.value}")
                for s in AlertSeverity
            ),
            func.sum(case((Alert.state.in_(ACTIVE_ALERT_STATES), 1), else_=0)).label("active"),
            func.min(case((Alert.state.in_(UNHANDLED_ALERT_STATES), Alert.opened_at))).label("oldest"),
            func.sum(case((and_(Alert.needs_signoff, Alert.signed_off_at.is_(None)), 1), else_=0)).label(
                "signoff"
            ),
        )
        .where(*conditions)
        .group_by(Alert.patient_id)
        .subquery()
    )


def panel_page(
    session: Session,
    *,
    user_id: str,
    clinic_id: str,
    roles: frozenset[UserRole],
    query: PanelQuery,
    now: datetime,
) -> PanelPage:
    """The caller's patients, filtered, sorted and paged (module doc).

    Two statements: the page's patient ids in order with the number of matches, from narrow rows
    (the sort keys only: a database sorts every matching row, and the gateways' ranking is joined
    only to sort by it); then everything shown of those patients."""
    alert_stats = _alert_stats(clinic_id)
    s = PatientSummaryRow.__table__.c
    active = func.coalesce(alert_stats.c.active, 0)
    signoff = func.coalesce(alert_stats.c.signoff, 0)
    conditions: list[ColumnElement[bool]] = [
        Patient.patient_id.in_(visible_patients(user_id, clinic_id, roles).scalar_subquery())
    ]
    if query.name_contains:
        pattern = _like(query.name_contains.strip())
        conditions.append(
            or_(
                Patient.given_name.ilike(pattern, escape="\\"),
                Patient.family_name.ilike(pattern, escape="\\"),
                (Patient.family_name + Patient.given_name).ilike(pattern, escape="\\"),
                (Patient.given_name + " " + Patient.family_name).ilike(pattern, escape="\\"),
                (Patient.family_name + " " + Patient.given_name).ilike(pattern, escape="\\"),
            )
        )
    if query.alert_state is AlertStateFilter.ACTIVE:
        conditions.append(active > 0)
    elif query.alert_state is AlertStateFilter.NONE:
        conditions.append(active == 0)
    elif query.alert_state is AlertStateFilter.NEEDS_SIGNOFF:
        conditions.append(signoff > 0)
    if query.no_data_days is not None:
        cutoff = now - timedelta(days=query.no_data_days)
        conditions.append(or_(s.last_reading_at.is_(None), s.last_reading_at < cutoff))

    matching = (
        select(Patient.patient_id)
        .outerjoin(PatientSummaryRow, s.patient_id == Patient.patient_id)
        .outerjoin(alert_stats, alert_stats.c.patient_id == Patient.patient_id)
        .where(*conditions)
    )
    gateways = None
    if query.sort is PanelSort.GATEWAY:
        gateways = _patient_gateways(clinic_id, now, query.gateway_silent_after)
        ordered = matching.outerjoin(
            gateways, and_(gateways.c.patient_id == Patient.patient_id, gateways.c.n == 1)
        )
    else:
        ordered = matching
    ordered = (
        ordered.order_by(
            *_ordering(
                query,
                alert_stats.c.rank,
                alert_stats.c.oldest,
                None if gateways is None else gateways.c.state_rank,
                None if gateways is None else gateways.c.last_seen_at,
            )
        )
        .offset(query.offset)
        .limit(query.limit)
    )
    ranked = session.execute(ordered.add_columns(func.count().over())).all()
    if not ranked:  # past the last page, or nothing matches: the total on its own
        total = int(session.scalar(select(func.count()).select_from(matching.subquery())) or 0)
        return PanelPage(total, [])
    page_ids = [row[0] for row in ranked]
    total = int(ranked[0][1])

    page_stats = _alert_stats(clinic_id, page_ids)
    page_gateways = _patient_gateways(clinic_id, now, query.gateway_silent_after, page_ids)
    details = (
        select(
            Patient.patient_id,
            Patient.given_name,
            Patient.family_name,
            func.coalesce(TargetsRow.timezone, Clinic.timezone).label("timezone"),
            page_stats.c.rank,
            *(getattr(page_stats.c, f"n_{sev.value}") for sev in AlertSeverity),
            func.coalesce(page_stats.c.active, 0).label("active"),
            page_stats.c.oldest,
            func.coalesce(page_stats.c.signoff, 0).label("signoff"),
            s.patient_id.label("summary_patient_id"),
            *(getattr(s, name) for name in SUMMARY_COLUMNS),
            page_gateways.c.gateway_id,
            page_gateways.c.last_seen_at.label("gateway_last_seen_at"),
            page_gateways.c.state_rank.label("gateway_state_rank"),
        )
        .join(Clinic, Clinic.clinic_id == Patient.clinic_id)
        .outerjoin(TargetsRow, TargetsRow.patient_id == Patient.patient_id)
        .outerjoin(PatientSummaryRow, s.patient_id == Patient.patient_id)
        .outerjoin(page_stats, page_stats.c.patient_id == Patient.patient_id)
        .outerjoin(
            page_gateways, and_(page_gateways.c.patient_id == Patient.patient_id, page_gateways.c.n == 1)
        )
        .where(Patient.patient_id.in_(page_ids))
    )
    by_id = {row.patient_id: _entry(row) for row in session.execute(details)}
    return PanelPage(total, [by_id[pid] for pid in page_ids])


def _ordering(
    query: PanelQuery,
    rank: ColumnElement[Any],
    oldest: ColumnElement[Any],
    gateway_state: ColumnElement[Any] | None,
    gateway_seen: ColumnElement[Any] | None,
) -> list[ColumnElement[Any]]:
    s = PatientSummaryRow.__table__.c
    desc = query.descending

    def by(column: ColumnElement[Any], descending: bool = desc) -> ColumnElement[Any]:
        return (column.desc() if descending else column.asc()).nulls_last()

    names = [Patient.family_name.asc(), Patient.given_name.asc(), Patient.patient_id.asc()]
    if query.sort is PanelSort.NAME:
        direction = Patient.family_name.desc() if desc else Patient.family_name.asc()
        given = Patient.given_name.desc() if desc else Patient.given_name.asc()
        return [direction, given, Patient.patient_id.asc()]
    if query.sort is PanelSort.URGENCY:
        # Highest active severity first, then the oldest unhandled alert first (ascending: reversed).
        return [by(func.coalesce(rank, 0)), by(oldest, not desc), *names]
    if query.sort is PanelSort.GATEWAY:
        assert gateway_state is not None and gateway_seen is not None
        # Descending: offline first, then never reported, then online; the longest silent first.
        return [by(gateway_state), by(gateway_seen, not desc), *names]
    column: ColumnElement[Any] = {
        PanelSort.LAST_SEEN: s.last_reading_at,
        PanelSort.BP_MEAN: s.bp_mean_systolic_mmhg,
        PanelSort.GLUCOSE_LATEST: s.glucose_latest_mg_dl,
        PanelSort.TIME_IN_RANGE: s.glucose_time_in_range_percent,
        PanelSort.DAYS_WITH_DATA: s.days_with_data_30,
    }[query.sort]
    extra = [by(s.bp_mean_diastolic_mmhg)] if query.sort is PanelSort.BP_MEAN else []
    return [by(column), *extra, *names]


_SEVERITY_COUNTS: Final = tuple((sev, f"n_{sev.value}") for sev in AlertSeverity)


def _entry(row: Any) -> PanelEntry:
    values = row._asdict()  # one dict: cheaper than an attribute lookup per column on the row
    counts = {sev: int(values[key] or 0) for sev, key in _SEVERITY_COUNTS}
    summary = None
    if values["summary_patient_id"] is not None:
        summary = {name: values[name] for name in SUMMARY_COLUMNS}
    gateway_id = values["gateway_id"]
    return PanelEntry(
        patient_id=values["patient_id"],
        given_name=values["given_name"],
        family_name=values["family_name"],
        timezone=values["timezone"],
        alerts=PanelAlerts(
            highest_severity=SEVERITY_OF_RANK.get(int(values["rank"] or 0)),
            counts=counts,
            active=int(values["active"]),
            oldest_unhandled_at=as_utc(values["oldest"]),
            needs_signoff=int(values["signoff"]),
        ),
        summary=summary,
        gateway_id=gateway_id,
        gateway_last_seen_at=values["gateway_last_seen_at"],
        gateway_state=None if gateway_id is None else STATE_OF_RANK[int(values["gateway_state_rank"])],
    )


__all__ = [
    "ACTIVE_ALERT_STATES",
    "AlertStateFilter",
    "PanelAlerts",
    "PanelEntry",
    "PanelPage",
    "PanelQuery",
    "PanelSort",
    "PatientGateway",
    "SortOrder",
    "panel_page",
    "patient_gateway",
    "visible_patients",
]
