//! The built-in messages, in English and Korean, written in the same Go-template subset an
//! override uses (`gotmpl.rs`), so a built-in is also a starting point for an override.
//!
//! Each message is a subject and paragraphs; the plain-text body is the paragraphs, the HTML
//! body the same paragraphs in a small layout (a paragraph that is only the code is set large
//! so it can be read off a phone). The static text holds no HTML metacharacters (a test
//! checks), so building the HTML by concatenation escapes nothing it should not.

use super::{Locale, TemplateKind};

pub struct Builtin {
    pub subject: &'static str,
    pub paragraphs: &'static [&'static str],
}

pub fn builtin(kind: TemplateKind, locale: Locale) -> Builtin {
    use Locale::{En, Ko};
    use TemplateKind::*;
    let (subject, paragraphs): (&'static str, &'static [&'static str]) = match (kind, locale) {
        (RecoveryCodeValid, En) => (
            "Recover access to your account",
            &[
                "Hi,",
                "please recover access to your account by entering the following code:",
                "{{ .RecoveryCode }}",
                "The code is valid for {{ .ExpiresInMinutes }} minutes. If you did not ask for it, you can ignore this email: nothing changes without the code.",
            ],
        ),
        (RecoveryCodeValid, Ko) => (
            "계정 복구 코드",
            &[
                "안녕하세요.",
                "아래 코드를 입력해 계정을 복구하세요:",
                "{{ .RecoveryCode }}",
                "이 코드는 {{ .ExpiresInMinutes }}분 동안 유효합니다. 요청하지 않으셨다면 이 메일을 무시하셔도 됩니다. 코드 없이는 아무것도 바뀌지 않습니다.",
            ],
        ),
        (RecoveryCodeInvalid, En) => (
            "Account access attempted",
            &[
                "Hi,",
                "you (or someone else) entered this email address when trying to recover access to an account.",
                "However, this email address is not registered with us, so the attempt failed.",
                "If this was you, check whether you signed up with a different address. If this was not you, please ignore this email.",
            ],
        ),
        (RecoveryCodeInvalid, Ko) => (
            "계정 접근 시도",
            &[
                "안녕하세요.",
                "누군가(본인일 수도 있습니다) 계정을 복구하려고 이 이메일 주소를 입력했습니다.",
                "하지만 이 주소로 가입된 계정이 없어 복구하지 못했습니다.",
                "본인이라면 다른 주소로 가입하셨는지 확인해 주세요. 본인이 아니라면 이 메일을 무시하셔도 됩니다.",
            ],
        ),
        (VerificationCodeValid, En) => (
            "Please verify your email address",
            &[
                "Hi,",
                "please verify your email address by entering the following code:",
                "{{ .VerificationCode }}",
                "The code is valid for {{ .ExpiresInMinutes }} minutes.",
            ],
        ),
        (VerificationCodeValid, Ko) => (
            "이메일 주소 인증",
            &[
                "안녕하세요.",
                "아래 코드를 입력해 이메일 주소를 인증해 주세요:",
                "{{ .VerificationCode }}",
                "이 코드는 {{ .ExpiresInMinutes }}분 동안 유효합니다.",
            ],
        ),
        (VerificationCodeInvalid, En) => (
            "Someone tried to verify this email address",
            &[
                "Hi,",
                "someone asked to verify this email address, but there is no account for it.",
                "If this was you, check whether you signed up with a different address. If this was not you, please ignore this email.",
            ],
        ),
        (VerificationCodeInvalid, Ko) => (
            "이메일 주소 인증 시도",
            &[
                "안녕하세요.",
                "누군가 이 이메일 주소의 인증을 요청했지만, 이 주소로 가입된 계정이 없습니다.",
                "본인이라면 다른 주소로 가입하셨는지 확인해 주세요. 본인이 아니라면 이 메일을 무시하셔도 됩니다.",
            ],
        ),
        (LoginCodeValid, En) => (
            "Your sign-in code",
            &[
                "Hi,",
                "please enter the following code to sign in to your account:",
                "{{ .LoginCode }}",
                "The code is valid for {{ .ExpiresInMinutes }} minutes. If you did not try to sign in, you can ignore this email.",
            ],
        ),
        (LoginCodeValid, Ko) => (
            "로그인 코드",
            &[
                "안녕하세요.",
                "아래 코드를 입력해 로그인하세요:",
                "{{ .LoginCode }}",
                "이 코드는 {{ .ExpiresInMinutes }}분 동안 유효합니다. 로그인하려 하지 않으셨다면 이 메일을 무시하셔도 됩니다.",
            ],
        ),
        (RegistrationCodeValid, En) => (
            "Your sign-up code",
            &[
                "Hi,",
                "please enter the following code to finish creating your account:",
                "{{ .RegistrationCode }}",
                "The code is valid for {{ .ExpiresInMinutes }} minutes. If you did not try to sign up, you can ignore this email.",
            ],
        ),
        (RegistrationCodeValid, Ko) => (
            "가입 코드",
            &[
                "안녕하세요.",
                "아래 코드를 입력해 계정 만들기를 마치세요:",
                "{{ .RegistrationCode }}",
                "이 코드는 {{ .ExpiresInMinutes }}분 동안 유효합니다. 가입하려 하지 않으셨다면 이 메일을 무시하셔도 됩니다.",
            ],
        ),
        (PasswordChanged, En) => (
            "Your password was changed",
            &[
                "Hi,",
                "the password of your account {{ .To }} was just changed.",
                "If this was you, there is nothing more to do. If it was not, recover your account right away and choose a new password.",
            ],
        ),
        (PasswordChanged, Ko) => (
            "비밀번호가 변경되었습니다",
            &[
                "안녕하세요.",
                "{{ .To }} 계정의 비밀번호가 방금 변경되었습니다.",
                "본인이 변경하셨다면 더 하실 일은 없습니다. 본인이 아니라면 바로 계정을 복구하고 새 비밀번호를 정해 주세요.",
            ],
        ),
        (NewSignIn, En) => (
            "New sign-in to your account",
            &[
                "Hi,",
                "there was a new sign-in to your account {{ .To }}{{ if .IPAddress }} from {{ .IPAddress }}{{ end }}{{ if .UserAgent }} ({{ .UserAgent }}){{ end }}.",
                "If this was you, there is nothing more to do. If it was not, change your password and sign out your other sessions.",
            ],
        ),
        (NewSignIn, Ko) => (
            "새 로그인 알림",
            &[
                "안녕하세요.",
                "{{ .To }} 계정에 새 로그인이 있었습니다{{ if .IPAddress }} (IP {{ .IPAddress }}){{ end }}{{ if .UserAgent }} ({{ .UserAgent }}){{ end }}.",
                "본인이라면 더 하실 일은 없습니다. 본인이 아니라면 비밀번호를 바꾸고 다른 세션에서 로그아웃해 주세요.",
            ],
        ),
    };
    Builtin {
        subject,
        paragraphs,
    }
}

impl Builtin {
    pub fn plaintext(&self) -> String {
        let mut s = self.paragraphs.join("\n\n");
        s.push('\n');
        s
    }

    pub fn html(&self, locale: Locale) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"{}\">\n<head><meta charset=\"utf-8\"><title>{}</title></head>\n\
             <body style=\"font-family: -apple-system, 'Segoe UI', Roboto, 'Noto Sans KR', sans-serif; color: #1f2328; line-height: 1.5;\">\n",
            locale.as_str(),
            self.subject
        );
        for p in self.paragraphs {
            let code = p.starts_with("{{ .") && p.ends_with("Code }}");
            if code {
                s += &format!("<p style=\"font-size: 28px; font-weight: bold; letter-spacing: 6px;\">{p}</p>\n");
            } else {
                s += &format!("<p>{p}</p>\n");
            }
        }
        s += "</body>\n</html>\n";
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_text_needs_no_html_escaping() {
        for kind in TemplateKind::ALL {
            for locale in [Locale::En, Locale::Ko] {
                let b = builtin(kind, locale);
                for text in b.paragraphs.iter().chain([&b.subject]) {
                    assert!(
                        !text.contains(['<', '>', '&']),
                        "{kind:?} {locale:?}: {text}"
                    );
                }
            }
        }
    }
}
