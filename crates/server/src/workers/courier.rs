//! The courier: a loop per instance that sends queued messages over SMTP (lettre, on tokio
//! and rustls).
//!
//! Each round claims up to `courier.worker.pull_count` due messages under a lease in the
//! database (`courier.worker.lease`), sends them concurrently, each cut off at half the lease,
//! and records every attempt; the core decides what follows (sent, retried after a doubling
//! backoff from `courier.retry_backoff`, or abandoned after `courier.message_retries`
//! attempts). Nothing is held in memory: a message claimed by an instance that dies
//! (SIGKILL mid-send) is claimed again once its lease has run out, so it is delivered at
//! least once, and with several instances on one PostgreSQL each message goes to one of
//! them. When a round took fewer than `pull_count` the loop waits `courier.worker.pull_wait`.
//!
//! `courier.smtp.connection_uri` as Kratos reads it:
//! - `smtp://[user:password@]host[:port]/`: STARTTLS is required (as in Kratos);
//!   `?disable_starttls=true` sends in plain text (a local relay or test sink);
//! - `smtps://…`: TLS from the first byte (port 465 by default);
//! - `?skip_ssl_verify=true` accepts any certificate; `?server_name=` names the host the
//!   certificate must be for, when it differs from the one connected to.
//!
//! Without a connection URI (dev mode only; the configuration refuses it otherwise when a flow
//! sends mail) the loop does not run: messages stay queued and show in the dev mailbox.

use crate::AppState;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use portcullis_core::config::CourierConfig;
use portcullis_core::courier::Message;
use std::time::Duration;
use uuid::Uuid;

/// The longest one SMTP command may take (the whole send is also bounded by the lease).
const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What sends: the transport (with its connection pool) and the envelope settings.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    headers: Vec<HeaderValue>,
    /// The domain of the `Message-ID`s.
    domain: String,
}

impl Mailer {
    /// The mailer `courier` describes; `None` without a connection URI. An error names the
    /// key that is wrong (start-up reports it).
    pub fn new(courier: &CourierConfig, public_url: &str) -> Result<Option<Mailer>, String> {
        if !courier.smtp_enabled() {
            return Ok(None);
        }
        let uri = url::Url::parse(courier.smtp.connection_uri.expose())
            .map_err(|e| format!("courier.smtp.connection_uri: {e}"))?;
        let host = uri
            .host_str()
            .ok_or("courier.smtp.connection_uri: no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let query = |k: &str| {
            uri.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        let flag = |k: &str| query(k).is_some_and(|v| v == "true" || v == "1");
        let skip_verify = flag("skip_ssl_verify");
        let server_name = query("server_name").unwrap_or_else(|| host.clone());
        let params = || {
            TlsParameters::builder(server_name.clone())
                .dangerous_accept_invalid_certs(skip_verify)
                .dangerous_accept_invalid_hostnames(skip_verify)
                .build_rustls()
                .map_err(|e| format!("courier.smtp.connection_uri: TLS: {e}"))
        };
        let (tls, default_port) = match uri.scheme() {
            "smtps" => (Tls::Wrapper(params()?), 465),
            _ if flag("disable_starttls") => (Tls::None, 25),
            _ => (Tls::Required(params()?), 25),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(uri.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(SMTP_COMMAND_TIMEOUT));
        if !uri.username().is_empty() {
            builder = builder.credentials(Credentials::new(
                percent_decode(uri.username()),
                percent_decode(uri.password().unwrap_or_default()),
            ));
        }
        let address = if courier.smtp.from_address.is_empty() {
            let host = url::Url::parse(public_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "localhost".into());
            format!("no-reply@{host}")
        } else {
            courier.smtp.from_address.clone()
        };
        let from_addr: lettre::Address = address
            .parse()
            .map_err(|e| format!("courier.smtp.from_address: {address:?}: {e}"))?;
        let name = (!courier.smtp.from_name.is_empty()).then(|| courier.smtp.from_name.clone());
        let mut headers = vec![];
        for (k, v) in &courier.smtp.headers {
            let name = HeaderName::new_from_ascii(k.clone())
                .map_err(|_| format!("courier.smtp.headers: {k:?} is not a header name"))?;
            if v.contains(['\r', '\n']) {
                return Err(format!(
                    "courier.smtp.headers.{k}: a value cannot contain line breaks"
                ));
            }
            headers.push(HeaderValue::new(name, v.clone()));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            domain: from_addr.domain().to_string(),
            from: Mailbox::new(name, from_addr),
            headers,
        }))
    }

    /// Sends `m` as a multipart (plain text and HTML) email, within `limit`.
    async fn send(&self, m: &Message, limit: Duration) -> Result<(), String> {
        let to: Mailbox = m
            .recipient
            .parse()
            .map_err(|e| format!("the recipient {:?} is not an address: {e}", m.recipient))?;
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{}@{}>", m.id, self.domain)));
        for h in &self.headers {
            b = b.raw_header(h.clone());
        }
        let email = b
            .multipart(MultiPart::alternative_plain_html(
                m.body.clone(),
                m.html_body.clone(),
            ))
            .map_err(|e| format!("building the message: {e}"))?;
        match tokio::time::timeout(limit, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the SMTP server did not finish within {}s",
                limit.as_secs()
            )),
        }
    }
}

/// `%xx` in a URI's user or password.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b.get(i), hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (Some(b'%'), Some(v)) => {
                out.push(v);
                i += 3;
            }
            (Some(c), _) => {
                out.push(*c);
                i += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn spawn_worker(state: AppState, mut stop: tokio::sync::broadcast::Receiver<()>) {
    let config = state.core.config();
    let mailer = match Mailer::new(&config.courier, config.public_url()) {
        Ok(Some(m)) => m,
        Ok(None) => {
            tracing::info!("courier: no courier.smtp.connection_uri, nothing is sent; messages stay queued (dev mode: see /admin/dev/mailbox on the admin port)");
            return;
        }
        Err(e) => {
            // `build` checked this already; reaching it means the check and this diverged.
            tracing::error!(error = %e, "courier: cannot send mail");
            return;
        }
    };
    let owner = Uuid::new_v4();
    let w = config.courier.worker.clone();
    tokio::spawn(async move {
        loop {
            let taken = match round(&state, &mailer, owner).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "courier round failed");
                    0
                }
            };
            // A full round may have left more due: go again at once (still stoppable).
            let pause = if taken >= w.pull_count as usize {
                Duration::ZERO
            } else {
                w.pull_wait.0
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.recv() => break,
            }
        }
    });
}

/// One round: claim, send concurrently, record. Returns how many messages it took.
async fn round(
    st: &AppState,
    mailer: &Mailer,
    owner: Uuid,
) -> Result<usize, portcullis_core::Error> {
    let core = &st.core;
    let claimed = core.claim_messages(owner, core.now()).await?;
    let n = claimed.len();
    let limit = core.config().courier.worker.lease.0 / 2;
    let mut set = tokio::task::JoinSet::new();
    for m in claimed {
        let (st, mailer) = (st.clone(), mailer.clone());
        set.spawn(async move {
            let result = mailer.send(&m, limit).await;
            if let Err(e) = &result {
                tracing::warn!(message_id = %m.id, error = %e, "courier: sending failed");
            }
            match st.core.record_delivery(&m, owner, result, st.core.now()).await {
                Ok(Some(outcome)) => {
                    tracing::debug!(message_id = %m.id, ?outcome, "courier: attempt recorded")
                }
                Ok(None) => {
                    tracing::warn!(message_id = %m.id, "courier: the claim ran out during the send; another instance has the message")
                }
                Err(e) => tracing::warn!(message_id = %m.id, error = %e, "courier: recording the attempt failed"),
            }
        });
    }
    while set.join_next().await.is_some() {}
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::Mailer;
    use portcullis_core::config::{CourierConfig, Secret};

    fn courier(uri: &str) -> CourierConfig {
        let mut c = CourierConfig::default();
        c.smtp.connection_uri = Secret::new(uri);
        c
    }

    #[tokio::test]
    async fn settings_are_checked_naming_the_key() {
        assert!(Mailer::new(&CourierConfig::default(), "http://x/")
            .unwrap()
            .is_none());
        for uri in [
            "smtp://127.0.0.1:2525/?disable_starttls=true",
            "smtp://u:p@mail.example.com/",
            "smtps://mail.example.com/?skip_ssl_verify=true",
        ] {
            assert!(
                Mailer::new(&courier(uri), "http://x/").unwrap().is_some(),
                "{uri}"
            );
        }
        let mut c = courier("smtp://127.0.0.1/");
        c.smtp.from_address = "not an address".into();
        let e = Mailer::new(&c, "http://x/").err().unwrap();
        assert!(e.starts_with("courier.smtp.from_address"), "{e}");
        let mut c = courier("smtp://127.0.0.1/");
        c.smtp.headers.insert("Bad Header".into(), "x".into());
        let e = Mailer::new(&c, "http://x/").err().unwrap();
        assert!(e.starts_with("courier.smtp.headers"), "{e}");
        let mut c = courier("smtp://127.0.0.1/");
        c.smtp
            .headers
            .insert("X-Ok".into(), "a\r\nBcc: victim@example.com".into());
        assert!(Mailer::new(&c, "http://x/").is_err(), "header injection");
    }

    #[test]
    fn uri_credentials_are_percent_decoded() {
        assert_eq!(super::percent_decode("p%40ss%3Aword%"), "p@ss:word%");
        assert_eq!(super::percent_decode("plain"), "plain");
    }
}
