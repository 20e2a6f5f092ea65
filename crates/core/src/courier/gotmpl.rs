//! The subset of Go's `text/template` syntax that Kratos's courier templates use, translated
//! to the Jinja syntax minijinja renders. Kratos operators already have `.gotmpl` files;
//! they work here unchanged as long as they stay within this subset:
//!
//! - `{{ .To }}`, `{{ .Identity.traits.email }}`: a value by path (missing → empty);
//! - literals: `"text"`, `` `raw` ``, numbers, `true`, `false`, `nil`;
//! - `{{ if COND }} … {{ else if COND }} … {{ else }} … {{ end }}`;
//! - the functions `not`, `and`, `or`, `eq` (`eq .A "x" "y"`: any of them), `ne`, `lt`,
//!   `le`, `gt`, `ge`, with parentheses for nesting: `{{ if and .A (eq .B "ko") }}`;
//! - `{{-` and `-}}` trim the whitespace before or after, `{{/* comments */}}`.
//!
//! Anything else (`range`, `with`, `define`, pipelines, other functions) is refused when the
//! template is loaded, naming the construct, rather than rendering something unexpected.
//! Text outside actions is kept literally, even where it looks like Jinja (`{% … %}`).

/// Translates a Go template into an equivalent minijinja template.
pub fn to_jinja(src: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open_ifs = 0usize;
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        literal(&mut out, &rest[..start]);
        let after = &rest[start + 2..];
        let end = find_close(after).ok_or_else(|| "an action {{ is never closed".to_string())?;
        let mut action = &after[..end];
        rest = &after[end + 2..];
        let trim_left = action.starts_with("- ") || action.starts_with("-\n") || action == "-";
        if trim_left {
            action = &action[1..];
        }
        let trim_right = action.ends_with(" -") || action.ends_with("\n-");
        if trim_right {
            action = &action[..action.len() - 1];
        }
        let (l, r) = (
            if trim_left { "-" } else { "" },
            if trim_right { "-" } else { "" },
        );
        let action = action.trim();
        if action.starts_with("/*") {
            if !action.ends_with("*/") {
                return Err("a comment {{/* … */}} is never closed".into());
            }
            out += &format!("{{#{l} #{r}}}");
            continue;
        }
        let words = tokenize(action)?;
        match words.first().map(String::as_str) {
            Some("if") => {
                open_ifs += 1;
                out += &format!("{{%{l} if {} {r}%}}", expression(words.get(1..).unwrap_or_default())?);
            }
            Some("else") if words.get(1).map(String::as_str) == Some("if") => {
                require_open(open_ifs, "else if")?;
                out += &format!("{{%{l} elif {} {r}%}}", expression(words.get(2..).unwrap_or_default())?);
            }
            Some("else") if words.len() == 1 => {
                require_open(open_ifs, "else")?;
                out += &format!("{{%{l} else {r}%}}");
            }
            Some("end") if words.len() == 1 => {
                require_open(open_ifs, "end")?;
                open_ifs -= 1;
                out += &format!("{{%{l} endif {r}%}}");
            }
            Some(w @ ("range" | "with" | "define" | "template" | "block" | "break" | "continue")) => {
                return Err(format!(
                    "{{{{ {w} }}}} is not supported (the supported subset: values, if/else, comparisons)"
                ))
            }
            Some(_) => out += &format!("{{{{{l} {} {r}}}}}", expression(&words)?),
            None => return Err("an empty action {{ }}".into()),
        }
    }
    literal(&mut out, rest);
    if open_ifs > 0 {
        return Err("an {{ if }} is never closed with {{ end }}".into());
    }
    Ok(out)
}

fn require_open(open_ifs: usize, what: &str) -> Result<(), String> {
    if open_ifs == 0 {
        Err(format!("{{{{ {what} }}}} without an {{{{ if }}}}"))
    } else {
        Ok(())
    }
}

/// The end of an action: the first `}}` outside a string literal.
fn find_close(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes.get(i).copied()?;
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if b == b'}' && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Text between actions, kept literally: wrapped in a raw block when Jinja would read it.
fn literal(out: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if text.contains("{%") || text.contains("{#") || text.contains("{{") {
        // `{% endraw %}` cannot occur inside a raw block; split around it.
        let parts: Vec<&str> = text.split("{% endraw %}").collect();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push_str("{{ \"{% endraw %}\" }}");
            }
            out.push_str("{% raw %}");
            out.push_str(p);
            out.push_str("{% endraw %}");
        }
    } else {
        out.push_str(text);
    }
}

/// Splits an action into words: parentheses, string literals and bare words.
fn tokenize(action: &str) -> Result<Vec<String>, String> {
    let mut words = vec![];
    let mut chars = action.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' | ')' => words.push(c.to_string()),
            '"' | '`' => {
                let mut j = i + 1;
                let mut escaped = false;
                let mut closed = false;
                for (k, d) in chars.by_ref() {
                    j = k;
                    if c == '"' && d == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if d == c && !escaped {
                        closed = true;
                        break;
                    }
                    escaped = false;
                }
                if !closed {
                    return Err(format!("an unterminated string in {{{{ {action} }}}}"));
                }
                words.push(action[i..=j].to_string());
            }
            '|' => return Err(format!("pipelines are not supported: {{{{ {action} }}}}")),
            _ => {
                let mut end = action.len();
                while let Some(&(k, d)) = chars.peek() {
                    if d.is_whitespace() || d == '(' || d == ')' {
                        end = k;
                        break;
                    }
                    chars.next();
                }
                words.push(action[i..end].to_string());
            }
        }
    }
    Ok(words)
}

/// A command (`func arg…` or one argument) as a Jinja expression.
fn expression(words: &[String]) -> Result<String, String> {
    let mut pos = 0;
    let e = command(words, &mut pos)?;
    if pos != words.len() {
        return Err(format!("unexpected {:?}", words.get(pos)));
    }
    Ok(e)
}

fn command(words: &[String], pos: &mut usize) -> Result<String, String> {
    let Some(head) = words.get(*pos) else {
        return Err("an empty expression".into());
    };
    let func = match head.as_str() {
        f @ ("not" | "and" | "or" | "eq" | "ne" | "lt" | "le" | "gt" | "ge") => Some(f),
        _ => None,
    };
    let Some(func) = func else {
        let a = argument(words, pos)?;
        if *pos < words.len() && words.get(*pos).map(String::as_str) != Some(")") {
            return Err(format!(
                "{:?} is not a supported function (not, and, or, eq, ne, lt, le, gt, ge)",
                head
            ));
        }
        return Ok(a);
    };
    *pos += 1;
    let mut args = vec![];
    while *pos < words.len() && words.get(*pos).map(String::as_str) != Some(")") {
        args.push(argument(words, pos)?);
    }
    let n = args.len();
    let bad = |want: &str| Err(format!("{func} takes {want} arguments, got {n}"));
    match func {
        "not" if n == 1 => Ok(format!("(not {})", args.join(""))),
        "not" => bad("1"),
        "and" | "or" if n >= 2 => Ok(format!("({})", args.join(&format!(" {func} ")))),
        "and" | "or" => bad("2 or more"),
        "eq" if n >= 2 => {
            let (first, others) = args.split_first().ok_or("eq needs arguments")?;
            let any: Vec<String> = others.iter().map(|o| format!("{first} == {o}")).collect();
            Ok(format!("({})", any.join(" or ")))
        }
        "eq" => bad("2 or more"),
        _ if n == 2 => {
            let op = match func {
                "ne" => "!=",
                "lt" => "<",
                "le" => "<=",
                "gt" => ">",
                _ => ">=",
            };
            match (args.first(), args.get(1)) {
                (Some(a), Some(b)) => Ok(format!("({a} {op} {b})")),
                _ => bad("2"),
            }
        }
        _ => bad("2"),
    }
}

fn argument(words: &[String], pos: &mut usize) -> Result<String, String> {
    let Some(w) = words.get(*pos) else {
        return Err("a function is missing an argument".into());
    };
    *pos += 1;
    if w == "(" {
        let inner = command(words, pos)?;
        if words.get(*pos).map(String::as_str) != Some(")") {
            return Err("a ( is never closed".into());
        }
        *pos += 1;
        return Ok(inner);
    }
    if w == ")" {
        return Err("an unexpected )".into());
    }
    if let Some(path) = w.strip_prefix('.') {
        return field_path(path);
    }
    if w.starts_with('"') {
        let s: String = serde_json::from_str(w).map_err(|_| format!("a bad string {w}"))?;
        return Ok(quote(&s));
    }
    if let Some(raw) = w.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Ok(quote(raw));
    }
    match w.as_str() {
        "true" | "false" => return Ok(w.clone()),
        "nil" => return Ok("none".into()),
        _ => {}
    }
    if w.parse::<f64>().is_ok()
        && w.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Ok(w.clone());
    }
    Err(format!(
        "{w:?} is not supported (values are written .Field or .A.b; the functions are not, and, or, eq, ne, lt, le, gt, ge)"
    ))
}

/// `.A.b.c` as `A["b"]["c"]`: any key works, even one Jinja reserves.
fn field_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("{{ . }} (the whole model) is not supported; name a field: {{ .To }}".into());
    }
    let mut segs = path.split('.');
    let first = segs.next().unwrap_or_default();
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    if !ident(first) {
        return Err(format!("a bad field name in .{path}"));
    }
    let mut out = first.to_string();
    for s in segs {
        if !ident(s) {
            return Err(format!("a bad field name in .{path}"));
        }
        out += &format!("[{}]", quote(s));
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::to_jinja;

    #[test]
    fn fields_conditions_and_trims_translate() {
        assert_eq!(to_jinja("Hi {{ .To }}!").unwrap(), "Hi {{ To }}!");
        assert_eq!(
            to_jinja("{{ .Identity.traits.email }}").unwrap(),
            "{{ Identity[\"traits\"][\"email\"] }}"
        );
        assert_eq!(
            to_jinja("{{- if eq .A \"ko\" -}}x{{ else if not .B }}y{{ else }}z{{ end }}").unwrap(),
            "{%- if (A == \"ko\") -%}x{% elif (not B) %}y{% else %}z{% endif %}"
        );
        assert_eq!(
            to_jinja("{{ if and .A (ne .B 3) }}x{{ end }}").unwrap(),
            "{% if (A and (B != 3)) %}x{% endif %}"
        );
        assert_eq!(to_jinja("a{{/* note */}}b").unwrap(), "a{# #}b");
    }

    #[test]
    fn jinja_looking_text_stays_literal() {
        assert_eq!(
            to_jinja("{% raw %} {#x#}").unwrap(),
            "{% raw %}{% raw %} {#x#}{% endraw %}"
        );
    }

    #[test]
    fn what_is_outside_the_subset_is_refused() {
        for bad in [
            "{{ range .X }}{{ end }}",
            "{{ .X | html }}",
            "{{ printf \"%s\" .X }}",
            "{{ if .X }}",
            "{{ end }}",
            "{{ .X ",
            "{{ . }}",
            "{{ with .X }}{{ end }}",
        ] {
            assert!(to_jinja(bad).is_err(), "{bad} was accepted");
        }
    }
}
