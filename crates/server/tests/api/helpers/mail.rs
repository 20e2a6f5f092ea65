//! Reading what the courier queued: the newest message to an address (through the admin API
//! `GET /admin/courier/messages`, as an operator would) and the code in its body.

use super::TestApp;
use serde_json::Value;

impl TestApp {
    /// The messages queued for `to`, newest first.
    pub async fn messages_to(&self, to: &str) -> Vec<Value> {
        let path = format!(
            "/admin/courier/messages?recipient={}",
            url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()
        );
        self.admin_get_list(&path).await
    }

    /// The code in the newest message of `template` (a Kratos `template_type`) to `to`.
    pub async fn mailed_code(&self, to: &str, template: &str) -> String {
        let messages = self.messages_to(to).await;
        let m = messages
            .iter()
            .find(|m| m["template_type"] == template)
            .unwrap_or_else(|| panic!("no {template} message to {to} in {messages:?}"));
        code_in(m["body"].as_str().unwrap()).unwrap_or_else(|| panic!("no code in {:?}", m["body"]))
    }
}

/// The first run of exactly six digits in `text`.
pub fn code_in(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == 6 {
                return Some(text[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    None
}
