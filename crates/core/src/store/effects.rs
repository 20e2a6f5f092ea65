//! What a write records besides itself: the outbox events it causes and the audit records of
//! it. The core names both; the store writes them in the write's own transaction, so an event
//! or a record exists if and only if the change does.

use crate::audit::AuditRecord;
use crate::webhooks::{EventKind, Subject};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    events: Vec<EventKind>,
    audit: Vec<AuditRecord>,
}

impl Effects {
    /// A write that records nothing else (a rehash, a flow update).
    pub fn none() -> Self {
        Effects::default()
    }

    pub fn event(kind: EventKind) -> Self {
        Effects::none().and_event(kind)
    }

    pub fn and_event(mut self, kind: EventKind) -> Self {
        if !self.events.contains(&kind) {
            self.events.push(kind);
        }
        self
    }

    pub fn audited(mut self, record: AuditRecord) -> Self {
        self.audit.push(record);
        self
    }

    /// The events about `subject`, in the order they were named.
    pub fn events_about(&self, subject: Subject) -> impl Iterator<Item = EventKind> + '_ {
        self.events
            .iter()
            .copied()
            .filter(move |k| k.subject() == subject)
    }

    pub fn audit(&self) -> &[AuditRecord] {
        &self.audit
    }
}
