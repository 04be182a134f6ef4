//! The Python module `tidegate._core`: thin bindings over the domain modules. Every call takes
//! a whole request or batch and releases the GIL while it works.

use pyo3::buffer::PyBuffer;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict};
use serde_json::Value;

use crate::batch::{self, Message};
use crate::govern::{self as policy, SourcePolicy};
use crate::pii::{PiiAction, PiiClass, PiiPolicy, PiiScanner};
use crate::plan::{TrackingPlan, ViolationKind};
use std::collections::HashMap;
use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use crate::idempotency;
use crate::ingest::{EventType, IngestError, Limits};
use crate::warehouse;

// Parsing a batch allocates per JSON string and object; mimalloc is several times faster at that
// than glibc malloc. Only the extension uses it: what crosses to Python is copied into Python
// objects, except the column buffers of a batch, which Python borrows (`Buffer`) and Rust frees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes borrowed from Python without a copy: `bytes`, or any object with a contiguous
/// buffer of bytes (`msgspec.Raw`, `memoryview`, `bytearray`). The decode stage passes each
/// envelope's `events` as the `msgspec.Raw` slice of the Kafka message it came in.
enum BytesLike {
    Bytes(PyBackedBytes),
    Buffer(PyBuffer<u8>),
}

impl std::ops::Deref for BytesLike {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            BytesLike::Bytes(b) => b,
            // SAFETY: `extract` kept only C-contiguous buffers; the exporter keeps the memory
            // alive and unchanged until the buffer is released, when `self` is dropped.
            BytesLike::Buffer(b) => unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes()) },
        }
    }
}

impl AsRef<[u8]> for BytesLike {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for BytesLike {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(BytesLike::Bytes(PyBackedBytes::from(bytes.to_owned())));
        }
        let buffer = PyBuffer::<u8>::get(&obj).map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "expected bytes or a bytes-like object, got {}",
                obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        if !buffer.is_c_contiguous() {
            return Err(pyo3::exceptions::PyTypeError::new_err("expected a contiguous bytes-like object"));
        }
        Ok(BytesLike::Buffer(buffer))
    }
}

// Exceptions are defined once, in Python (`tidegate.errors`), so users catch one tree.
pyo3::import_exception!(tidegate.errors, RequestRejected);
pyo3::import_exception!(tidegate.errors, ConfigError);

impl From<IngestError> for PyErr {
    fn from(err: IngestError) -> PyErr {
        RequestRejected::new_err((err.status(), err.code(), err.to_string()))
    }
}

/// Normalise one collector request into per-partition envelopes:
/// a list of `(partition, event_count, payload)`.
#[pyfunction(name = "ingest")]
#[pyo3(signature = (body, endpoint, source, received_at_us, partitions, max_event_bytes, max_request_bytes, max_batch_events))]
#[allow(clippy::too_many_arguments)]
fn ingest_request<'py>(
    py: Python<'py>,
    body: &[u8],
    endpoint: Option<&str>,
    source: &str,
    received_at_us: i64,
    partitions: u32,
    max_event_bytes: usize,
    max_request_bytes: usize,
    max_batch_events: usize,
) -> PyResult<Vec<(u32, usize, Bound<'py, PyBytes>)>> {
    let kind = match endpoint {
        None | Some("batch") => None,
        Some(name) => Some(EventType::parse(name).ok_or_else(|| {
            RequestRejected::new_err((404u16, "unknown_endpoint", format!("no endpoint /v1/{name}")))
        })?),
    };
    let limits = Limits { max_event_bytes, max_request_bytes, max_batch_events };
    let envelopes = py.detach(|| crate::ingest::ingest(body, kind, source, received_at_us, partitions, &limits))?;
    Ok(envelopes
        .into_iter()
        .map(|e| (e.partition, e.events, PyBytes::new(py, &e.payload)))
        .collect())
}

/// Bytes owned by Rust and lent to Python through the (read-only) buffer protocol: a batch's
/// column buffers reach Arrow without being copied into `bytes` first.
#[pyclass(frozen, module = "tidegate._core")]
struct Buffer {
    data: Arc<Vec<u8>>,
}

#[pymethods]
impl Buffer {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let data = &slf.get().data;
        // Fills a one-dimensional, read-only byte view and takes a reference to `slf`, which keeps
        // the bytes alive as long as the view.
        let filled = ffi::PyBuffer_FillInfo(view, slf.as_ptr(), data.as_ptr() as *mut c_void, data.len() as ffi::Py_ssize_t, 1, flags);
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }
}

/// One column's Arrow buffers as handed to Python: `(validity, values, bytes)`.
type ColumnBuffers<'py> = (Option<Bound<'py, Buffer>>, Bound<'py, Buffer>, Option<Bound<'py, Buffer>>);

/// One column's Arrow buffers, shared with the `Buffer`s lent out for them.
type SharedColumn = (Option<Arc<Vec<u8>>>, Arc<Vec<u8>>, Option<Arc<Vec<u8>>>);

/// `(table, [(column, type)], columns, row_count)`.
type TableColumns = (String, Vec<(String, &'static str)>, Vec<SharedColumn>, usize);

/// The result of one batch, as columns and buffers rather than a Python object per event.
#[pyclass(frozen, module = "tidegate._core")]
struct BatchResult {
    #[pyo3(get)]
    events_in: usize,
    #[pyo3(get)]
    accepted: usize,
    #[pyo3(get)]
    duplicates: usize,
    #[pyo3(get)]
    late: usize,
    tables: Vec<TableColumns>,
    discards: Vec<u8>,
    discard_count: usize,
    rejected: Vec<u8>,
    rejected_reasons: Vec<(&'static str, usize)>,
    keys: Vec<u8>,
    /// `[(source, violation_type, action, count)]`
    #[pyo3(get)]
    violation_counts: Vec<(String, &'static str, &'static str, usize)>,
    /// `[(pii_class, action, count)]`
    #[pyo3(get)]
    pii_counts: Vec<(&'static str, &'static str, usize)>,
}

#[pymethods]
impl BatchResult {
    /// `[(table, [(column, type)], [(validity, values, bytes)], row_count)]`: each column as
    /// Arrow buffers (see `warehouse::ArrowColumn`): validity bitmap or None, values (bit-packed
    /// booleans, little-endian i64/f64, datetimes as i64 µs; for type `string_view` 16-byte
    /// Arrow string views, for `string` i64 offsets), and the UTF-8 bytes of a string column or
    /// None. Event tables' rows are in `timestamp` order (nulls last, ties as received).
    #[getter]
    #[allow(clippy::type_complexity)]
    fn tables<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(String, Vec<(String, &'static str)>, Vec<ColumnBuffers<'py>>, usize)>> {
        let lend = |b: &Arc<Vec<u8>>| Bound::new(py, Buffer { data: Arc::clone(b) });
        self.tables
            .iter()
            .map(|(name, cols, arrays, n)| {
                let arrays = arrays
                    .iter()
                    .map(|(validity, values, bytes)| {
                        Ok((validity.as_ref().map(lend).transpose()?, lend(values)?, bytes.as_ref().map(lend).transpose()?))
                    })
                    .collect::<PyResult<_>>()?;
                Ok((name.clone(), cols.clone(), arrays, *n))
            })
            .collect()
    }

    /// Values that could not be stored, as `discards` rows (NDJSON).
    #[getter]
    fn discards<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.discards)
    }

    #[getter]
    fn discard_count(&self) -> usize {
        self.discard_count
    }

    /// Whole events refused, as `discarded_events` rows (NDJSON).
    #[getter]
    fn rejected<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.rejected)
    }

    /// Refused events counted by reason.
    #[getter]
    fn rejected_reasons<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (reason, n) in &self.rejected_reasons {
            d.set_item(reason, n)?;
        }
        Ok(d)
    }

    /// The 16-byte idempotency key of every accepted event, concatenated.
    #[getter]
    fn keys<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.keys)
    }
}

/// Compiled policy: tracking plans per source and the PII scanner with its actions.
/// Built once per config; raises `ConfigError` naming the plan or class at fault.
#[pyclass(frozen, module = "tidegate._core")]
struct Governance {
    inner: policy::Governance,
}

#[pymethods]
impl Governance {
    /// `plans`: `[(plan_id, spec_json)]`; `sources`: `[(source, plan_id, [violation types to drop])]`;
    /// `pii`: `(sensitive_keys, [(class, action)], default_action, hmac_key)` or None;
    /// `lowercase_email_ids`: lower-case identifiers that are email addresses;
    /// `keep_identifiers`: `redact` and `drop_field` leave `userId`, `anonymousId`, `previousId`
    /// and `groupId` alone (the workspace policy, whose ids the identity graph is built from).
    #[new]
    #[pyo3(signature = (plans, sources, pii=None, lowercase_email_ids=true, keep_identifiers=false))]
    fn new(
        plans: Vec<(String, Vec<u8>)>,
        sources: Vec<(String, String, Vec<String>)>,
        pii: Option<(Vec<String>, Vec<(String, String)>, String, Vec<u8>)>,
        lowercase_email_ids: bool,
        keep_identifiers: bool,
    ) -> PyResult<Self> {
        let mut compiled: HashMap<String, Arc<TrackingPlan>> = HashMap::new();
        for (id, spec) in plans {
            let value: Value = serde_json::from_slice(&spec)
                .map_err(|e| ConfigError::new_err(format!("tracking plan {id:?} is not valid JSON: {e}")))?;
            let plan = TrackingPlan::compile(&value)
                .map_err(|e| ConfigError::new_err(format!("tracking plan {id:?}: {e}")))?;
            compiled.insert(id, Arc::new(plan));
        }
        let mut inner = policy::Governance { lowercase_email_ids, ..policy::Governance::default() };
        for (source, plan_id, drop_kinds) in sources {
            let plan = compiled.get(&plan_id).cloned().ok_or_else(|| {
                ConfigError::new_err(format!("source {source:?} names tracking plan {plan_id:?}, which is not defined"))
            })?;
            let mut drop = [false; 6];
            for kind in drop_kinds {
                let i = ViolationKind::ALL.iter().position(|k| k.as_str() == kind).ok_or_else(|| {
                    let valid: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.as_str()).collect();
                    ConfigError::new_err(format!("unknown violation type {kind:?}; expected one of {}", valid.join(", ")))
                })?;
                drop[i] = true;
            }
            inner.sources.insert(source, SourcePolicy { plan, drop });
        }
        if let Some((keys, actions, default, key)) = pii {
            let parse_action = |a: &str| -> PyResult<PiiAction> {
                a.parse::<PiiAction>().map_err(|e| ConfigError::new_err(e.to_string()))
            };
            let mut pairs: Vec<(PiiClass, PiiAction)> = Vec::new();
            for (class, action) in &actions {
                let c = class.parse::<PiiClass>().map_err(|e| ConfigError::new_err(e.to_string()))?;
                pairs.push((c, parse_action(action)?));
            }
            let mut policy = PiiPolicy::new(parse_action(&default)?, &pairs, &key)
                .map_err(|e| ConfigError::new_err(e.to_string()))?;
            policy.keep_identifiers = keep_identifiers;
            inner.pii = Some((PiiScanner::new(&keys), policy));
        }
        Ok(Governance { inner })
    }
}

/// Process a batch of raw-topic messages
/// `[(source, kafka_time_us, events_json, duplicate_flags, late_by_ms)]`: `duplicate_flags` has
/// one byte per event (non-zero = skip as a duplicate), `late_by_ms` one little-endian i64 per
/// event (milliseconds beyond the allowed lateness, 0 = in time); both may be empty.
/// `extra` columns (str or None values) are added to every row.
#[pyfunction]
#[pyo3(signature = (messages, extra=None, governance=None))]
fn process_batch(
    py: Python<'_>,
    messages: Vec<(PyBackedStr, i64, BytesLike, PyBackedBytes, PyBackedBytes)>,
    extra: Option<Vec<(String, Option<String>)>>,
    governance: Option<PyRef<'_, Governance>>,
) -> BatchResult {
    let empty = policy::Governance::default();
    let gov = governance.as_ref().map(|g| &g.inner).unwrap_or(&empty);
    let extra: Vec<(String, sonic_rs::Value)> = extra
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.map_or_else(sonic_rs::Value::new_null, |v| sonic_rs::Value::from(v.as_str()))))
        .collect();
    py.detach(|| {
        let late: Vec<Vec<i64>> = messages
            .iter()
            .map(|(.., late)| i64s_of(late))
            .collect();
        let msgs: Vec<Message<'_>> = messages
            .iter()
            .zip(&late)
            .map(|((source, ts, events, duplicates, _), late_by_ms)| Message {
                source,
                received_at_us: *ts,
                events,
                duplicates,
                late_by_ms,
            })
            .collect();
        let extra_refs: Vec<(&str, sonic_rs::Value)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut out = batch::process(&msgs, &extra_refs, gov);
        let tables = out
            .layout
            .tables_mut()
            .iter_mut()
            .map(|t| {
                // Event tables go out in event-time order (the reconcile stage's promise for
                // events within the allowed lateness); `users` is a state table, not a stream.
                let order = if t.name == "users" { None } else { t.order_by("timestamp") };
                let columns = t.take_arrow_view_columns(order.as_deref());
                let cols = t
                    .columns()
                    .iter()
                    .zip(&columns)
                    .map(|((c, k), a)| (c.clone(), if a.view { "string_view" } else { k.as_str() }))
                    .collect();
                let arrays = columns
                    .into_iter()
                    .map(|a| (a.validity.map(Arc::new), Arc::new(a.values), a.bytes.map(Arc::new)))
                    .collect();
                (t.name.clone(), cols, arrays, t.len())
            })
            .collect();
        let mut reasons: Vec<(&'static str, usize)> = Vec::new();
        for r in &out.rejected {
            match reasons.iter_mut().find(|(k, _)| *k == r.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((r.reason, 1)),
            }
        }
        BatchResult {
            events_in: out.events_in,
            accepted: out.accepted,
            duplicates: out.duplicates,
            late: out.late,
            tables,
            discards: batch::discards_ndjson(&out.layout.discards),
            discard_count: out.layout.discards.len(),
            rejected: batch::rejected_ndjson(&out.rejected),
            rejected_reasons: reasons,
            keys: out.keys.iter().flat_map(|k| k.to_le_bytes()).collect(),
            violation_counts: out.violation_counts,
            pii_counts: out.pii_counts,
        }
    })
}

/// `(keys, event_times)` of every event of one raw-topic message: 16-byte idempotency keys and
/// little-endian i64 event times (µs), each concatenated, for the stateful stages.
#[pyfunction]
fn message_index<'py>(py: Python<'py>, source: &str, events_json: BytesLike, kafka_time_us: i64) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
    let (keys, times) = py.detach(|| batch::message_index(source, &events_json, kafka_time_us));
    let k: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
    let t: Vec<u8> = times.iter().flat_map(|t| t.to_le_bytes()).collect();
    (PyBytes::new(py, &k), PyBytes::new(py, &t))
}

/// `(late_by_ms, watermark)` of one message's event times (little-endian i64 µs, as
/// `message_index` returns them) against the partition's watermark (see `reconcile.rs`):
/// milliseconds beyond the allowed lateness per event as little-endian i64, and the new watermark.
#[pyfunction]
fn lateness<'py>(
    py: Python<'py>,
    times: &[u8],
    kafka_time_us: i64,
    watermark: Option<i64>,
    allowed_us: i64,
    max_future_us: i64,
) -> (Bound<'py, PyBytes>, Option<i64>) {
    let (late, watermark) = crate::reconcile::lateness(&i64s_of(times), kafka_time_us, watermark, allowed_us, max_future_us);
    let late: Vec<u8> = late.iter().flat_map(|v| v.to_le_bytes()).collect();
    (PyBytes::new(py, &late), watermark)
}

/// A string column as Arrow `large_string` buffers: `(validity, offsets, data)`, the validity
/// bitmap `None` when every row holds a value.
type StrBuffers<'py> = (Option<Bound<'py, Buffer>>, Bound<'py, Buffer>, Bound<'py, Buffer>);

fn str_buffers(py: Python<'_>, col: crate::archive::StrColumn) -> PyResult<StrBuffers<'_>> {
    let lend = |data: Vec<u8>| Bound::new(py, Buffer { data: Arc::new(data) });
    let validity = match col.valid.iter().all(|v| *v) {
        true => None,
        false => Some(lend(warehouse::bitmap(col.valid.iter().copied(), col.len()))?),
    };
    let offsets: Vec<u8> = col.offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
    Ok((validity, lend(offsets)?, lend(col.bytes)?))
}

/// The raw archive's rows of a batch of messages (see `archive.py`): `(events, counts,
/// message_ids, received_us)` — each event's text and its `messageId` as Arrow string buffers
/// (see `StrBuffers`), events per message as little-endian u32, and each event's `receivedAt` in
/// µs as little-endian i64 (`i64::MIN` when it has none).
#[pyfunction]
fn archive_rows<'py>(
    py: Python<'py>,
    messages: Vec<BytesLike>,
) -> PyResult<(StrBuffers<'py>, Bound<'py, PyBytes>, StrBuffers<'py>, Bound<'py, PyBytes>)> {
    let rows = py.detach(|| crate::archive::archive_rows(&messages));
    let counts: Vec<u8> = rows.counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    let received: Vec<u8> = rows.received_us.iter().flat_map(|t| t.unwrap_or(i64::MIN).to_le_bytes()).collect();
    Ok((str_buffers(py, rows.events)?, PyBytes::new(py, &counts), str_buffers(py, rows.message_ids)?, PyBytes::new(py, &received)))
}

/// The dedupe index of one partition (see `stages/dedupe.py`).
#[pyclass(module = "tidegate._core")]
struct DedupeIndex {
    inner: crate::dedupe::DedupeIndex,
}

fn keys_of(raw: &[u8]) -> Vec<u128> {
    raw.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))).collect()
}

/// Concatenated little-endian i64s (event times, lateness), as the stateful stages pass them.
fn i64s_of(raw: &[u8]) -> Vec<i64> {
    raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

#[pymethods]
impl DedupeIndex {
    #[new]
    fn new(window_us: i64) -> Self {
        DedupeIndex { inner: crate::dedupe::DedupeIndex::new(window_us) }
    }

    /// `(flags, new_keys)` for concatenated 16-byte keys seen at `now_us`: one flag byte per key
    /// (1 = repeat within the window) and the new keys, concatenated, to persist.
    fn check<'py>(&mut self, py: Python<'py>, keys: &[u8], now_us: i64) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let (flags, new) = self.inner.check(&keys_of(keys), now_us);
        let new: Vec<u8> = new.iter().flat_map(|k| k.to_le_bytes()).collect();
        (PyBytes::new(py, &flags), PyBytes::new(py, &new))
    }

    /// Re-add persisted keys seen at `seen_at_us`.
    fn load(&mut self, keys: &[u8], seen_at_us: i64, now_us: i64) {
        self.inner.load(&keys_of(keys), seen_at_us, now_us);
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// The identity graph (see `stages/identity.py`): nodes are `u:<userId>` / `a:<anonymousId>`.
#[pyclass(module = "tidegate._core")]
struct IdentityGraph {
    inner: crate::identity::IdentityGraph,
}

#[pymethods]
impl IdentityGraph {
    #[new]
    fn new() -> Self {
        IdentityGraph { inner: crate::identity::IdentityGraph::default() }
    }

    /// Join each `left[i]` with `right[i]`; return the nodes whose canonical id changed. The
    /// GIL is released while the graph is walked (the pipeline's other threads run meanwhile).
    fn link(&mut self, py: Python<'_>, left: Vec<String>, right: Vec<String>) -> Vec<String> {
        let inner = &mut self.inner;
        py.detach(|| {
            let mut changed: Vec<String> = Vec::new();
            for (a, b) in left.iter().zip(&right) {
                changed.extend(inner.link(a, b));
            }
            changed.sort_unstable();
            changed.dedup();
            changed
        })
    }

    /// The canonical node of each node (itself when unknown).
    fn resolve(&mut self, py: Python<'_>, nodes: Vec<String>) -> Vec<String> {
        let inner = &mut self.inner;
        py.detach(|| nodes.iter().map(|n| inner.canonical(n)).collect())
    }

    /// `(canonical, news)` of each node: its canonical node, and whether that mapping is news
    /// (the node was unknown, or re-labelled since it was last observed). Unknown nodes are
    /// remembered from now on.
    fn observe(&mut self, py: Python<'_>, nodes: Vec<String>) -> (Vec<String>, Vec<bool>) {
        let inner = &mut self.inner;
        py.detach(|| nodes.iter().map(|n| inner.observe(n)).unzip())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// Keyed HMAC-SHA256 of each value (`hmac-sha256:<hex>`, the PII `hash` action's form), for the
/// `hash` transform; None stays None. Raises ConfigError for a key under 16 bytes.
#[pyfunction]
fn hmac_column(py: Python<'_>, values: Vec<Option<String>>, key: &[u8]) -> PyResult<Vec<Option<String>>> {
    let policy = PiiPolicy::new(PiiAction::Hash, &[], key).map_err(|e| ConfigError::new_err(e.to_string()))?;
    Ok(py.detach(|| values.iter().map(|v| v.as_deref().map(|t| policy.hash(t))).collect()))
}

/// An identifier as the pipeline stores it (`govern::normalized_id`): trimmed, and lower-cased
/// when it is an email address and `lowercase_emails`. For the regulations commands, which must
/// look a user up the way their rows were written.
#[pyfunction]
#[pyo3(signature = (id, lowercase_emails = true))]
fn normalized_id(id: &str, lowercase_emails: bool) -> String {
    crate::govern::normalized_id(id, lowercase_emails).unwrap_or_else(|| id.to_string())
}

/// Warehouse name of a key or event: `snake_case("Order Completed") == "order_completed"`.
#[pyfunction]
fn snake_case(name: &str) -> String {
    warehouse::snake_case(name)
}

/// Table of a track event: `event_table("Pages") == "_pages"`.
#[pyfunction]
fn event_table(name: &str) -> String {
    warehouse::event_table(name)
}

/// Idempotency key (32 hex chars) of one event, as the pipeline computes it.
#[pyfunction]
fn idempotency_key(source: &str, event_json: &[u8]) -> PyResult<String> {
    let event: Value = serde_json::from_slice(event_json)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("event is not valid JSON: {e}")))?;
    Ok(idempotency::to_hex(idempotency::event_key(source, &event)))
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_SENSITIVE_KEYS", crate::pii::DEFAULT_SENSITIVE_KEYS.to_vec())?;
    m.add("SUPPORTED_KEYWORDS", crate::plan::SUPPORTED_KEYWORDS.to_vec())?;
    m.add("RESERVED_TABLES", crate::warehouse::RESERVED_TABLES.to_vec())?;
    m.add_class::<BatchResult>()?;
    m.add_class::<Buffer>()?;
    m.add_class::<Governance>()?;
    m.add_class::<DedupeIndex>()?;
    m.add_class::<IdentityGraph>()?;
    m.add_function(wrap_pyfunction!(ingest_request, m)?)?;
    m.add_function(wrap_pyfunction!(process_batch, m)?)?;
    m.add_function(wrap_pyfunction!(snake_case, m)?)?;
    m.add_function(wrap_pyfunction!(event_table, m)?)?;
    m.add_function(wrap_pyfunction!(idempotency_key, m)?)?;
    m.add_function(wrap_pyfunction!(message_index, m)?)?;
    m.add_function(wrap_pyfunction!(lateness, m)?)?;
    m.add_function(wrap_pyfunction!(archive_rows, m)?)?;
    m.add_function(wrap_pyfunction!(hmac_column, m)?)?;
    m.add_function(wrap_pyfunction!(normalized_id, m)?)?;
    Ok(())
}
