//! The Python module `tidegate._core`: thin bindings over the domain modules. Every call takes
//! a whole request or batch and releases the GIL while it works.

use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict};
use serde_json::Value;

use crate::batch::{self, Message};
use crate::idempotency;
use crate::ingest::{EventType, IngestError, Limits};
use crate::warehouse;

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

/// The result of one batch, as columns and buffers rather than a Python object per event.
#[pyclass(frozen, module = "tidegate._core")]
struct BatchResult {
    #[pyo3(get)]
    events_in: usize,
    #[pyo3(get)]
    accepted: usize,
    tables: Vec<(String, Vec<(String, &'static str)>, Vec<u8>, usize)>,
    discards: Vec<u8>,
    discard_count: usize,
    rejected: Vec<u8>,
    rejected_reasons: Vec<(&'static str, usize)>,
    keys: Vec<u8>,
}

#[pymethods]
impl BatchResult {
    /// `[(table, [(column, type)], ndjson_rows, row_count)]`.
    #[getter]
    fn tables<'py>(&self, py: Python<'py>) -> Vec<(String, Vec<(String, &'static str)>, Bound<'py, PyBytes>, usize)> {
        self.tables
            .iter()
            .map(|(name, cols, rows, n)| (name.clone(), cols.clone(), PyBytes::new(py, rows), *n))
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

/// Process a batch of raw-topic messages `[(source, kafka_time_us, events_json)]`.
/// `extra` columns (str, int or None values) are added to every row.
#[pyfunction]
#[pyo3(signature = (messages, extra=None))]
fn process_batch(
    py: Python<'_>,
    messages: Vec<(PyBackedStr, i64, PyBackedBytes)>,
    extra: Option<Vec<(String, Option<String>)>>,
) -> BatchResult {
    let extra: Vec<(String, Value)> = extra
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
        .collect();
    py.detach(|| {
        let msgs: Vec<Message<'_>> = messages
            .iter()
            .map(|(source, ts, events)| Message { source: source, received_at_us: *ts, events: events })
            .collect();
        let extra_refs: Vec<(&str, Value)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let out = batch::process(&msgs, &extra_refs);
        let tables = out
            .layout
            .tables()
            .iter()
            .map(|t| {
                let cols = t.columns().iter().map(|(c, k)| (c.clone(), k.as_str())).collect();
                (t.name.clone(), cols, t.to_ndjson(), t.len())
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
            tables,
            discards: batch::discards_ndjson(&out.layout.discards),
            discard_count: out.layout.discards.len(),
            rejected: batch::rejected_ndjson(&out.rejected),
            rejected_reasons: reasons,
            keys: out.keys.iter().flat_map(|k| k.to_le_bytes()).collect(),
        }
    })
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
    m.add_class::<BatchResult>()?;
    m.add_function(wrap_pyfunction!(ingest_request, m)?)?;
    m.add_function(wrap_pyfunction!(process_batch, m)?)?;
    m.add_function(wrap_pyfunction!(snake_case, m)?)?;
    m.add_function(wrap_pyfunction!(event_table, m)?)?;
    m.add_function(wrap_pyfunction!(idempotency_key, m)?)?;
    Ok(())
}
