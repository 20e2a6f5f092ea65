//! The password policy for new passwords: length, similarity to the account's identifiers
//! (bounded, security review F1) and the list of common passwords. Pure and cheap.

use crate::config::PasswordPolicyConfig;
use crate::ui::{msg, UiText};

/// Identifier and password prefixes the similarity check compares: enough to judge any real
/// identifier, and a bound on its O(n·m) work (security review F1).
const SIMILARITY_MAX_CHARS: usize = 256;

/// Checks a new password against the policy; returns the first violation.
pub fn check_policy(
    password: &str,
    identifiers: &[String],
    cfg: &PasswordPolicyConfig,
) -> Option<UiText> {
    let len = password.chars().count();
    if len < cfg.min_password_length {
        return Some(msg::password_min_length(cfg.min_password_length, len));
    }
    if len > cfg.max_password_length {
        return Some(msg::password_max_length(cfg.max_password_length, len));
    }
    if cfg.identifier_similarity_check_enabled
        && identifiers.iter().any(|id| too_similar(id, password))
    {
        return Some(msg::password_too_similar());
    }
    if cfg.common_password_check_enabled && is_common(password) {
        return Some(msg::password_breached());
    }
    None
}

/// True when most of the password is the identifier (or the part of an email before `@`).
/// Both are cut to [`SIMILARITY_MAX_CHARS`] first, so the work is bounded whatever was sent.
fn too_similar(identifier: &str, password: &str) -> bool {
    let id: String = identifier
        .chars()
        .take(SIMILARITY_MAX_CHARS)
        .collect::<String>()
        .to_lowercase();
    let pw: String = password
        .chars()
        .take(SIMILARITY_MAX_CHARS)
        .collect::<String>()
        .to_lowercase();
    let local = id.split('@').next().unwrap_or(&id).to_string();
    [id.as_str(), local.as_str()].iter().any(|cand| {
        if cand.len() < 3 {
            return false;
        }
        if pw == *cand {
            return true;
        }
        let lcs = longest_common_substring(cand, &pw);
        lcs * 2 >= pw.chars().count() && lcs >= 4
    })
}

/// The classic dynamic programme with two reused rows: O(|a|·|b|) time, O(|b|) memory.
fn longest_common_substring(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    let mut best = 0;
    for ca in a.chars() {
        for (j, cb) in b.iter().enumerate() {
            let len = if ca == *cb {
                prev.get(j).copied().unwrap_or(0) + 1
            } else {
                0
            };
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = len;
            }
            best = best.max(len);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

/// True when the whole password is one entry of zxcvbn's bundled list of the most common
/// (breached) passwords, ignoring case, l33t substitutions and reversal.
fn is_common(password: &str) -> bool {
    use zxcvbn::matching::patterns::MatchPattern;
    use zxcvbn::matching::Match;
    // zxcvbn's cost grows with length; a long password is never a whole-list entry.
    if password.chars().count() > 64 {
        return false;
    }
    let entropy = zxcvbn::zxcvbn(password, &[]);
    let seq: &[Match] = entropy.sequence();
    matches!(seq, [only] if matches!(&only.pattern, MatchPattern::Dictionary(d)
            // zxcvbn does not export `DictionaryType`; its default variant is `Passwords`.
            if d.dictionary_name == Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_similarity_check_is_bounded_and_still_catches_long_identifiers() {
        let huge = "a".repeat(1_000_000);
        let started = std::time::Instant::now();
        assert!(too_similar(&huge, &"a".repeat(300)));
        assert!(!too_similar(&huge, &"tangerine violin sleepy ".repeat(40)));
        // Unbounded, these two calls took seconds (security review F1).
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(too_similar("ada.lovelace@example.com", "ada.lovelace1"));
    }

    #[test]
    fn policy_rejects_short_similar_and_common_passwords() {
        let cfg = PasswordPolicyConfig::default();
        let ids = vec!["ada.lovelace@example.com".to_string()];
        assert_eq!(
            check_policy("short", &ids, &cfg).map(|t| t.id),
            Some(4000032)
        );
        assert_eq!(
            check_policy("ada.lovelace1", &ids, &cfg).map(|t| t.id),
            Some(4000031)
        );
        assert_eq!(
            check_policy("password123", &ids, &cfg).map(|t| t.id),
            Some(4000034)
        );
        assert_eq!(
            check_policy("Password1", &ids, &cfg).map(|t| t.id),
            Some(4000034)
        );
        assert_eq!(
            check_policy(&"x".repeat(1025), &ids, &cfg).map(|t| t.id),
            Some(4000033)
        );
        assert_eq!(check_policy("tangerine violin sleepy", &ids, &cfg), None);
        assert_eq!(
            check_policy(&"long passphrase words ".repeat(3), &ids, &cfg),
            None
        );
    }
}
