"""InfluxDB reading store: the production store (DESIGN.md, Storage).

Writes go through influxdb-client's v2 write API with `SYNCHRONOUS` write options, one HTTP request
per chunk of at most 5,000 points, and our own bounded retries. Never the client's default batching
mode: a batch that fails there is logged, handed to `error_callback` and dropped, and `flush()` is a
no-op (reliability.md §3, influxdb-client `write_api.py` L388-391, L536-558). Clinical readings must
not vanish, so `write_batch` returns only after InfluxDB answered 204 for every chunk, and raises a
typed error otherwise; ingest then does not ack and the gateway resends.

Reads are InfluxQL on the v1-compatible `/query` endpoint, which InfluxDB 1.8+, 2.x (with a DBRP
mapping: `ensure_dbrp_mapping`) and 3.x all serve (reliability.md §3).

Modules: `points` (the line protocol of one reading, pure), `influxql` (quoting, pure), `connection`
(`InfluxConfig`; writes, queries and their retries over HTTP), `provisioning` (database, retention
policy, bucket and DBRP mapping set-up) and `store` (`InfluxReadingStore`, the `ReadingStore`).

Point design (docs/storage-schema.md has the full schema):
- measurement = the reading kind (`blood_pressure`, `glucose`); the only tag is `patient_id`.
  InfluxDB replaces a point with the same measurement, tag set and timestamp ("InfluxDB creates a
  union of the old and new field sets", reliability.md §3), so a rewrite of a reading must produce
  exactly the same measurement, tags and timestamp. Tags that could change between retransmissions
  (validity, units) are fields, so they can never split a reading into two series.
- `reading_id` is NOT a tag: one series per reading would make the series index grow with every
  measurement (unbounded cardinality, the classic InfluxDB 1.x/2.x memory problem).
- timestamp = measured_at truncated to the whole second, plus a nanosecond offset in [0, 1e9)
  derived from the reading_id's hash. Two different readings of one patient and kind in the same
  second (two meters, or a meter whose clock has second resolution) therefore land on different
  timestamps unless their ids collide modulo 1e9 (chance 1e-9 per pair), instead of silently
  overwriting each other. The exact measured_at is kept in the integer field `measured_at_us`, and
  queries widen their time window to whole seconds and filter on that field.

"Newly stored vs duplicate": InfluxDB does not say whether a write replaced a point. With
`check_duplicates` (the default) the store asks first, in one multi-statement InfluxQL request per
batch, which of the batch's reading_ids already exist in the affected (patient, kind, seconds)
windows, writes only the absent ones, and reports the present ones as duplicates. This is exact for
one writer. With concurrent writers of the same reading (two ingest replicas receiving a
redelivery at once), both may report it as new: the data stays correct (the second write replaces
the identical point) and only the "new" counter over-counts. If a write attempt failed after InfluxDB
had in fact stored some points, the caller's retry reports those as duplicates: again only the
counter is off, never the data.
"""
