//! The top-level fields of an event the pipeline reads, found in one pass over the event.
//!
//! A parsed `sonic_rs::Object` looks keys up by scanning its members, and each member's key
//! costs a lookup of the document it sits in; asking for a dozen fields one `get` at a time
//! costs a dozen scans. One pass that sorts the members into slots costs one.

use sonic_rs::{JsonValueTrait, Object, Value};

/// The fields of one event (the object's own members: no duplicate keys, see `json::parse`).
#[derive(Clone, Copy, Default, Debug)]
pub struct Fields<'a> {
    pub type_: Option<&'a Value>,
    pub event: Option<&'a Value>,
    pub name: Option<&'a Value>,
    pub message_id: Option<&'a Value>,
    pub anonymous_id: Option<&'a Value>,
    pub user_id: Option<&'a Value>,
    pub group_id: Option<&'a Value>,
    pub previous_id: Option<&'a Value>,
    pub received_at: Option<&'a Value>,
    pub timestamp: Option<&'a Value>,
    pub sent_at: Option<&'a Value>,
    pub original_timestamp: Option<&'a Value>,
    pub channel: Option<&'a Value>,
    pub context: Option<&'a Value>,
    pub properties: Option<&'a Value>,
    pub traits: Option<&'a Value>,
}

impl<'a> Fields<'a> {
    pub fn of(event: &'a Object) -> Fields<'a> {
        let mut f = Fields::default();
        for (key, value) in event.iter() {
            let slot = match key {
                "type" => &mut f.type_,
                "event" => &mut f.event,
                "name" => &mut f.name,
                "messageId" => &mut f.message_id,
                "anonymousId" => &mut f.anonymous_id,
                "userId" => &mut f.user_id,
                "groupId" => &mut f.group_id,
                "previousId" => &mut f.previous_id,
                "receivedAt" => &mut f.received_at,
                "timestamp" => &mut f.timestamp,
                "sentAt" => &mut f.sent_at,
                "originalTimestamp" => &mut f.original_timestamp,
                "channel" => &mut f.channel,
                "context" => &mut f.context,
                "properties" => &mut f.properties,
                "traits" => &mut f.traits,
                _ => continue,
            };
            *slot = Some(value);
        }
        f
    }

    /// A string field (`None` when absent or not a string).
    pub fn str(field: Option<&'a Value>) -> Option<&'a str> {
        field.and_then(|v| v.as_str())
    }

    /// The identifier field `name` (one of `govern::ID_FIELDS`).
    pub fn id_field(&self, name: &str) -> Option<&'a Value> {
        match name {
            "userId" => self.user_id,
            "anonymousId" => self.anonymous_id,
            "previousId" => self.previous_id,
            "groupId" => self.group_id,
            _ => None,
        }
    }
}
