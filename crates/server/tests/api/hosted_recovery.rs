//! The hosted pages of recovery and verification (`/ui/recovery`, `/ui/verification`), as a
//! browser without JavaScript uses them: plain links and form posts, in English and Korean.
//! The "Forgot password?" link on the sign-in page, the settings page a recovery ends on, and
//! the welcome page's addresses with the way to verify one.
//!
//! Codes come from `POST /admin/recovery/code` (a code the admin hands over); the emailed
//! codes of both flows are read through the courier's admin API in `recovery.rs` and in the
//! Chromium tests (`tests/browser/recovery.test.mjs`).

use crate::helpers::{location, unique_email, Browser, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

crate::on_every_backend!(
    recovery_and_verification_pages_render_in_english_and_korean,
    the_sign_in_page_offers_a_forgotten_password,
    without_recovery_and_verification_nothing_links_to_them with flows_off,
    a_full_recovery_through_the_hosted_pages_without_javascript,
    a_wrong_code_on_the_hosted_page_shows_the_translated_error,
    the_welcome_page_shows_the_addresses_and_offers_verification,
    unknown_and_expired_flows_start_again,
);

fn flows_off(c: &mut portcullis_core::config::Config) {
    c.selfservice.flows.recovery.enabled = Some(false);
    c.selfservice.flows.verification.enabled = Some(false);
}

/// Follows redirects from `path` (as a browser does, with its cookies) to the page they end
/// on; returns that page's URL and HTML.
async fn open(b: &mut Browser<'_>, path: &str) -> (String, String) {
    let mut url = b.app.url(path);
    for _ in 0..8 {
        let r = b.get(&url).await;
        match r.status() {
            StatusCode::SEE_OTHER => url = location(&r),
            StatusCode::OK => return (url, r.text().await.unwrap()),
            other => panic!("{url}: {other}: {}", r.text().await.unwrap()),
        }
    }
    panic!("too many redirects from {path}")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in the tag `tag` (`name="…"`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// A form of the page, as a browser sends it: its action, its hidden fields and its first
/// button (the one a click or Enter in a field submits with, name and value included).
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
    button: Option<(String, String)>,
    html: String,
}

impl Form {
    /// The form whose `class` is exactly `class` (`flow-form group-code`, or with
    /// ` side-action` for a side action such as "Resend code").
    fn of(html: &str, class: &str) -> Form {
        let open = format!("<form class=\"{class}\"");
        let start = html
            .find(&open)
            .unwrap_or_else(|| panic!("no form {class:?} in {html}"));
        let end = start + html[start..].find("</form>").unwrap();
        let html = html[start..end].to_string();
        let action = attr(&html, "action").unwrap();
        let hidden = html
            .split("<input")
            .skip(1)
            .filter(|tag| tag.contains("type=\"hidden\""))
            .map(|tag| (attr(tag, "name").unwrap(), attr(tag, "value").unwrap()))
            .collect();
        let button = html
            .split("<button")
            .nth(1)
            .and_then(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)));
        Form {
            action,
            hidden,
            button,
            html,
        }
    }

    /// Fills in `fields` and presses the form's first button.
    async fn post(&self, b: &mut Browser<'_>, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all: Vec<(&str, &str)> = self
            .hidden
            .iter()
            .chain(&self.button)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(fields);
        b.post_form(&self.action, &all).await
    }
}

/// An admin's recovery code for `identity_id`, for a browser flow: (link, code).
async fn admin_code(app: &TestApp, identity_id: &str) -> (String, String) {
    let (s, r) = app
        .admin_post_json(
            "/admin/recovery/code",
            &json!({ "identity_id": identity_id, "flow_type": "browser" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    (
        r["recovery_link"].as_str().unwrap().to_string(),
        r["recovery_code"].as_str().unwrap().to_string(),
    )
}

/// A well-formed code that is not `code`.
fn other_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

/// The page of flow `kind` without `?flow=`: it starts a browser flow and comes back with one.
async fn start(b: &mut Browser<'_>, kind: &str) -> (String, String) {
    let r = b.get(&format!("/ui/{kind}")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        b.app.url(&format!("/self-service/{kind}/browser"))
    );
    let (url, html) = open(b, &format!("/ui/{kind}")).await;
    assert!(
        url.starts_with(&b.app.url(&format!("/ui/{kind}?flow="))),
        "{url}"
    );
    (url, html)
}

async fn recovery_and_verification_pages_render_in_english_and_korean(app: TestApp) {
    let login = format!(r#"<a href="{}">"#, app.url("/ui/login"));
    // (kind, English title, Korean title, sent message, its Korean, code label, its Korean)
    let pages = [
        (
            "recovery",
            "Recover your account",
            "계정 복구",
            "An email containing a recovery code has been sent",
            "입력한 이메일 주소로 복구 코드를 보냈습니다.",
            "Recovery code",
            "복구 코드",
        ),
        (
            "verification",
            "Verify your email address",
            "이메일 주소 인증",
            "An email containing a verification code has been sent",
            "입력한 이메일 주소로 인증 코드를 보냈습니다.",
            "Verification code",
            "인증 코드",
        ),
    ];
    for (kind, title, title_ko, sent, sent_ko, label, label_ko) in pages {
        let mut b = Browser::new(&app);
        let (url, html) = start(&mut b, kind).await;
        assert!(html.contains(&format!("<h1>{title}</h1>")), "{html}");
        assert!(html.contains(r#"<label for="field-email">Email"#), "{html}");
        assert!(html.contains(r#"type="email""#), "{html}");
        assert!(html.contains(">Continue</button>"), "{html}");
        assert!(
            html.contains(&format!("{login}Back to sign in</a>")),
            "{html}"
        );
        let (_, ko) = open(&mut b, &format!("{url}&lang=ko")).await;
        assert!(ko.contains(r#"<html lang="ko">"#));
        assert!(ko.contains(&format!("<h1>{title_ko}</h1>")), "{ko}");
        assert!(ko.contains(r#"<label for="field-email">이메일"#), "{ko}");
        assert!(ko.contains(">계속</button>"), "{ko}");
        assert!(
            ko.contains(&format!("{login}로그인으로 돌아가기</a>")),
            "{ko}"
        );

        // An empty address is asked for, in Korean words.
        let form = Form::of(&ko, "flow-form group-code");
        let r = form.post(&mut b, &[("email", "")]).await;
        assert_eq!(location(&r), url);
        let (_, html) = open(&mut b, &url).await;
        assert!(
            html.contains(r#"data-message-id="4000002">이메일 항목을 입력해 주세요."#),
            "{html}"
        );

        // The address (unknown here: the answer is the same) moves the flow to the code.
        let address = unique_email(kind);
        let r = form.post(&mut b, &[("email", &address)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), url);
        let (_, html) = open(&mut b, &url).await;
        assert!(html.contains(sent_ko), "{html}");
        assert!(
            html.contains(&format!(r#"<label for="field-code">{label_ko}"#)),
            "{html}"
        );
        let code = html
            .lines()
            .find(|l| l.contains(r#"id="field-code""#) && l.contains("<input"))
            .unwrap();
        for a in [
            r#"autocomplete="one-time-code""#,
            r#"maxlength="6""#,
            r#"pattern="[0-9]+""#,
            "autofocus",
        ] {
            assert!(code.contains(a), "{a} missing: {code}");
        }
        // "Resend code" is a form of its own: it sends the address, never a code typed
        // into the code form.
        let main = Form::of(&html, "flow-form group-code");
        assert!(main.html.contains(r#"id="field-code""#));
        assert!(!main.html.contains(r#"name="email""#), "{}", main.html);
        let resend = Form::of(&html, "flow-form group-code side-action");
        assert!(!resend.html.contains("field-code"), "{}", resend.html);
        assert!(
            resend.html.contains(&format!(
                r#"<button type="submit" name="email" value="{address}">코드 다시 보내기</button>"#
            )),
            "{}",
            resend.html
        );
        // "Resend code" comes back to the code form, saying the code went out (in English
        // this time).
        let r = resend.post(&mut b, &[]).await;
        assert_eq!(location(&r), url);
        let (_, en) = open(&mut b, &format!("{url}&lang=en")).await;
        assert!(en.contains(sent), "{en}");
        assert!(
            en.contains(&format!(r#"<label for="field-code">{label}"#)),
            "{en}"
        );
        assert!(en.contains(">Resend code</button>"), "{en}");
    }
}

async fn the_sign_in_page_offers_a_forgotten_password(app: TestApp) {
    let mut b = Browser::new(&app);
    let (url, html) = start(&mut b, "login").await;
    let link = format!(r#"<a href="{}">"#, app.url("/ui/recovery"));
    assert!(
        html.contains(&format!("{link}Forgot password?</a>")),
        "{html}"
    );
    let (_, ko) = open(&mut b, &format!("{url}&lang=ko")).await;
    assert!(
        ko.contains(&format!("{link}비밀번호를 잊으셨나요?</a>")),
        "{ko}"
    );
    // It leads to the recovery page, in the language chosen.
    let (_, html) = start(&mut b, "recovery").await;
    assert!(html.contains("<h1>계정 복구</h1>"), "{html}");
}

async fn without_recovery_and_verification_nothing_links_to_them(app: TestApp) {
    let mut b = Browser::new(&app);
    let (_, html) = start(&mut b, "login").await;
    assert!(!html.contains("ui/recovery"), "{html}");
    assert!(!html.contains("Forgot password?"), "{html}");
    // The pages themselves explain that the feature is off.
    for kind in ["recovery", "verification"] {
        let (url, html) = open(&mut b, &format!("/ui/{kind}")).await;
        assert!(url.contains("/ui/error?id="), "{url}");
        assert!(html.contains("This feature is turned off."), "{html}");
    }
    // A new account's address is shown as not verified, with no way offered to verify it.
    b.register(&unique_email("noverify")).await;
    let (_, html) = open(&mut b, "/ui/welcome").await;
    assert!(html.contains(r#"data-verified="false""#), "{html}");
    assert!(!html.contains("verify-notice"), "{html}");
    assert!(!html.contains("ui/verification"), "{html}");
}

async fn a_full_recovery_through_the_hosted_pages_without_javascript(app: TestApp) {
    let email = unique_email("hostedrecovery");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (link, code) = admin_code(&app, &id).await;
    // The link the admin hands over adopts the flow for the browser that opens it.
    let mut b = Browser::new(&app);
    let r = b.get(&link).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = location(&r);
    assert!(page.starts_with(&app.url("/ui/recovery?flow=")), "{page}");
    assert!(b.csrf_cookie().is_some());
    let (_, html) = open(&mut b, &page).await;
    assert!(
        html.contains(r#"<label for="field-code">Recovery code"#),
        "{html}"
    );
    let r = Form::of(&html, "flow-form group-code")
        .post(&mut b, &[("code", &code)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let settings = location(&r);
    assert!(
        settings.starts_with(&app.url("/ui/settings?flow=")),
        "{settings}"
    );
    assert!(b.has_session_cookie(), "the recovery signs the browser in");

    // The settings page says what happened and for how long the password may be set
    // without signing in again (settings.privileged_session_max_age, 1h by default).
    let (_, html) = open(&mut b, &settings).await;
    assert!(
        html.contains(r#"data-message-id="1060001">You successfully recovered your account. Please change your password or set up an alternative login method (e.g. social sign in) within the next 60 minutes."#),
        "{html}"
    );
    let (_, ko) = open(&mut b, &format!("{settings}&lang=ko")).await;
    assert!(
        ko.contains(r#"data-message-id="1060001">계정을 복구했습니다. 60분 안에 비밀번호를 변경하거나 다른 로그인 방법(예: 소셜 로그인)을 설정해 주세요."#),
        "{ko}"
    );
    let new_password = "a recovered and renewed passphrase";
    let r = Form::of(&ko, "flow-form group-password")
        .post(&mut b, &[("password", new_password)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = open(&mut b, &location(&r)).await;
    assert!(html.contains("변경 사항이 저장되었습니다!"), "{html}");
    assert_eq!(
        app.login(&email, PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.login(&email, new_password).await.status(),
        StatusCode::OK
    );
}

async fn a_wrong_code_on_the_hosted_page_shows_the_translated_error(app: TestApp) {
    let email = unique_email("hostedwrong");
    let (id, _) = app.register(&email, PASSWORD).await;
    let (link, code) = admin_code(&app, &id).await;
    let mut b = Browser::new(&app);
    let page = location(&b.get(&link).await);
    let (_, html) = open(&mut b, &format!("{page}&lang=ko")).await;
    let form = Form::of(&html, "flow-form group-code");
    let r = form.post(&mut b, &[("code", &other_code(&code))]).await;
    assert_eq!(location(&r), page, "back to the same flow");
    let (_, ko) = open(&mut b, &page).await;
    assert!(
        ko.contains(r#"role="alert" data-message-id="4060006">복구 코드가 올바르지 않거나 이미 사용되었습니다. 다시 입력해 주세요."#),
        "{ko}"
    );
    let (_, en) = open(&mut b, &format!("{page}&lang=en")).await;
    assert!(
        en.contains(r#"data-message-id="4060006">The recovery code is invalid or has already been used. Please try again."#),
        "{en}"
    );
    assert!(!b.has_session_cookie());
    // One wrong guess leaves the flow usable: the right code still recovers.
    let r = Form::of(&en, "flow-form group-code")
        .post(&mut b, &[("code", &code)])
        .await;
    assert!(
        location(&r).starts_with(&app.url("/ui/settings?flow=")),
        "{}",
        location(&r)
    );

    // The same on the verification page, for an address that has an account.
    let mut b = Browser::new(&app);
    let (url, html) = start(&mut b, "verification").await;
    let r = Form::of(&html, "flow-form group-code")
        .post(&mut b, &[("email", &email)])
        .await;
    assert_eq!(location(&r), url);
    let (_, html) = open(&mut b, &format!("{url}&lang=ko")).await;
    let r = Form::of(&html, "flow-form group-code")
        .post(&mut b, &[("code", "000000")])
        .await;
    assert_eq!(location(&r), url);
    let (_, ko) = open(&mut b, &url).await;
    assert!(
        ko.contains(r#"data-message-id="4070006">인증 코드가 올바르지 않거나 이미 사용되었습니다. 다시 입력해 주세요."#),
        "{ko}"
    );
}

async fn the_welcome_page_shows_the_addresses_and_offers_verification(app: TestApp) {
    let email = unique_email("welcomeverify");
    let mut b = Browser::new(&app);
    b.register(&email).await;
    let (_, html) = open(&mut b, "/ui/welcome").await;
    let notice = html
        .lines()
        .find(|l| l.contains(r#"data-testid="verify-notice""#))
        .unwrap_or_else(|| panic!("no notice in {html}"));
    assert!(
        notice.contains(&format!("Your email address {email} is not verified yet.")),
        "{notice}"
    );
    assert!(
        notice.contains(&format!(
            r#"<a href="{}">Verify it now</a>"#,
            app.url("/ui/verification")
        )),
        "{notice}"
    );
    assert!(html.contains(r#"data-verified="false""#), "{html}");
    assert!(html.contains("Not verified"), "{html}");
    let (_, ko) = open(&mut b, "/ui/welcome?lang=ko").await;
    assert!(
        ko.contains(&format!(
            "아직 인증하지 않은 이메일 주소가 있습니다: {email}"
        )),
        "{ko}"
    );
    assert!(ko.contains(">지금 인증하기</a>") && ko.contains(">미인증</span>"));
    // The notice leads to the verification page.
    let (_, html) = start(&mut b, "verification").await;
    assert!(html.contains("<h1>이메일 주소 인증</h1>"), "{html}");
    assert!(
        html.contains(&format!(r#"<a href="{}">"#, app.url("/ui/welcome"))),
        "signed in, the way back is to the account: {html}"
    );

    // Once the address is verified the notice is gone and the address says so.
    let r = b.get_json("/sessions/whoami").await;
    let me: Value = r.json().await.unwrap();
    let id = me["identity"]["id"].as_str().unwrap();
    let r = app
        .admin_patch(
            &format!("/admin/identities/{id}"),
            &json!([{ "op": "add", "path": "/verifiable_addresses", "value": [
                { "value": email, "verified": true, "via": "email" }
            ] }]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let (_, ko) = open(&mut b, "/ui/welcome").await;
    assert!(!ko.contains("verify-notice"), "{ko}");
    assert!(ko.contains(r#"data-verified="true""#), "{ko}");
    assert!(ko.contains(">인증됨</span>"), "{ko}");
}

async fn unknown_and_expired_flows_start_again(app: TestApp) {
    for kind in ["recovery", "verification"] {
        let mut b = Browser::new(&app);
        let (url, html) = start(&mut b, kind).await;
        // A flow this page does not know: a new one is started.
        let r = b
            .get(&format!("/ui/{kind}?flow={}", uuid::Uuid::new_v4()))
            .await;
        assert_eq!(
            location(&r),
            app.url(&format!("/self-service/{kind}/browser"))
        );
        // A form sent after its flow expired lands on a fresh flow that says why.
        app.clock.advance(std::time::Duration::from_secs(61 * 60));
        let r = Form::of(&html, "flow-form group-code")
            .post(&mut b, &[("email", &unique_email(kind))])
            .await;
        let fresh = location(&r);
        assert!(
            fresh.starts_with(&app.url(&format!("/ui/{kind}?flow="))) && fresh != url,
            "{fresh}"
        );
        let (_, ko) = open(&mut b, &format!("{fresh}&lang=ko")).await;
        let (id, text) = match kind {
            "recovery" => (
                4060005,
                "계정 복구 양식이 만료되었습니다. 다시 시도해 주세요.",
            ),
            _ => (
                4070005,
                "이메일 인증 양식이 만료되었습니다. 다시 시도해 주세요.",
            ),
        };
        assert!(
            ko.contains(&format!(r#"data-message-id="{id}">{text}"#)),
            "{ko}"
        );
        assert!(
            ko.contains(r#"id="field-email""#),
            "the fresh form asks again"
        );
    }
}
