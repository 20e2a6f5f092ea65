//! What a write records besides itself: the outbox events it causes, the audit records of
//! it and the messages it queues for the courier. The core names them; the store writes them
//! in the write's own transaction, so an event, a record or a message exists if and only if
//! the change does.

use crate::audit::AuditRecord;
use crate::courier::Message;
use crate::webhooks::{EventKind, Subject};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    events: Vec<EventKind>,
    audit: Vec<AuditRecord>,
    messages: Vec<Message>,
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

    /// Queues `message` for the courier with the write.
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
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
