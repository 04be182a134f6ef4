//! The reconcile stage's arithmetic over one message's event times (`stages/reconcile.py` keeps
//! the watermark in the partition's state): how far beyond the allowed lateness each event is,
//! and where the watermark moves. One call per message instead of a chain of numpy calls, whose
//! fixed costs dominated single-event messages.

/// Per event, milliseconds beyond `allowed_us` behind the watermark as it stood when the event
/// arrived (0: in time), and the new watermark (`None` only for an empty message without one).
///
/// The watermark is the highest event time seen, each capped at `kafka_time_us + max_future_us`
/// (a device clock running ahead cannot drag it into the future); a partition's first message
/// starts it at its first event.
pub fn lateness(times: &[i64], kafka_time_us: i64, watermark: Option<i64>, allowed_us: i64, max_future_us: i64) -> (Vec<i64>, Option<i64>) {
    let Some(&first) = times.first() else {
        return (Vec::new(), watermark);
    };
    let cap = kafka_time_us.saturating_add(max_future_us);
    let mut before = watermark.unwrap_or_else(|| first.min(cap));
    let late = times
        .iter()
        .map(|&t| {
            let behind = before.saturating_sub(t);
            before = before.max(t.min(cap));
            if behind > allowed_us { behind / 1000 } else { 0 }
        })
        .collect();
    (late, Some(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn only_beyond_the_allowed_lateness_is_late() {
        let now = 1_795_000_000_000_000;
        let (late, wm) = lateness(&[now, now + 10, now - H / 2, now - 3 * H, now + 20], now + 20, None, H, 0);
        assert_eq!(late, vec![0, 0, 0, (3 * H + 10) / 1000, 0]);
        assert_eq!(wm, Some(now + 20));
        // the watermark carries over to the next message
        let (late, _) = lateness(&[now - 2 * H], now + 30, wm, H, 0);
        assert_eq!(late, vec![(2 * H + 20) / 1000]);
    }

    #[test]
    fn a_clock_ahead_of_the_broker_does_not_move_the_watermark_past_it() {
        let now = 1_795_000_000_000_000;
        let (late, wm) = lateness(&[now + 365 * 24 * H, now, now - 30_000_000], now, None, 60_000_000, 0);
        assert_eq!(late, vec![0, 0, 0]);
        assert_eq!(wm, Some(now));
    }

    #[test]
    fn an_empty_message_changes_nothing() {
        assert_eq!(lateness(&[], 5, Some(7), 0, 0), (vec![], Some(7)));
        assert_eq!(lateness(&[], 5, None, 0, 0), (vec![], None));
    }
}
