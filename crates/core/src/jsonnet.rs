//! Jsonnet, as Kratos runs it: the claims mappers of social sign-in and the bodies of flow
//! web hooks. Existing `kratos.yml` files point at `.jsonnet` files, so the language is
//! not ours to choose; the engine is.
//!
//! **Engine: `rsjsonnet-lang`** rather than `jrsonnet-evaluator`. Both are pure Rust.
//! rsjsonnet-lang has stable semver releases (regularly since 2024), one crate, MIT OR
//! Apache-2.0, `forbid(unsafe_code)`, the workspace's MSRV, and targets Jsonnet 0.21 like
//! go-jsonnet 0.21 (Kratos). jrsonnet is faster but ships only pre-releases since 2023 (an
//! exact `=0.5.0-pre98` pin, seven crates, wasm-bindgen by default). A mapper runs once per
//! social sign-in on a document of a few hundred bytes, where speed does not matter and a
//! moving pre-release does.
//!
//! **Bounds.** A mapper is the operator's code, but it runs on claims a stranger's provider
//! account chose, so an evaluation must not be able to take the server with it. [`evaluate`]
//! is pure and unbounded in time; it sits behind the [`Evaluator`] port. [`InThread`] runs it
//! on a thread of its own with a stack cap, a source and result cap and a deadline, and at
//! most [`MAX_RUNNING`] evaluations run at once, counting those past their deadline (the
//! engine cannot be interrupted, so such a thread runs on until it ends; while the slots are
//! taken, evaluations wait [`SLOT_WAIT`] for one and are then refused rather than started). Memory is bounded only by those caps:
//! a worker process with `RLIMIT_AS`, killed at the deadline, is the next step.
//!
//! Imports are refused: a mapper is one self-contained file, as in Kratos (which disables
//! imports too).

use rsjsonnet_lang::arena::Arena;
use rsjsonnet_lang::program::{
    Callbacks, EvalErrorKind, EvalStackTraceItem, ImportError, NativeError, Program, Thunk,
    Value as JValue,
};
use rsjsonnet_lang::span::SpanId;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long an evaluation may take (Kratos: 1 s).
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Jsonnet's call-stack depth (go-jsonnet's default is 500).
pub const MAX_STACK: usize = 500;
/// Sources and results above this are refused: a mapper is a page, its output a document.
pub const MAX_SIZE: usize = 256 * 1024;
/// Evaluations running at once per evaluator, those past their deadline included.
pub const MAX_RUNNING: usize = 4;
/// How long an evaluation waits for one of the [`MAX_RUNNING`] slots before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonnetError {
    /// The source does not parse.
    #[error("the Jsonnet does not parse: {0}")]
    Syntax(String),
    /// The evaluation failed: an `error` expression, a missing field, a type error.
    #[error("the Jsonnet failed: {0}")]
    Eval(String),
    /// It did not finish in time (or needed more memory than it may have).
    #[error("the Jsonnet did not finish within {} ms", TIMEOUT.as_millis())]
    TimedOut,
    /// Every slot is taken (by evaluations under way, or past their deadline).
    #[error("too many Jsonnet evaluations are running")]
    Busy,
    /// The source or its result is larger than [`MAX_SIZE`].
    #[error("the Jsonnet or its result is larger than {MAX_SIZE} bytes")]
    TooLarge,
}

/// Runs Jsonnet with bounds. The core evaluates through this port; the composition root
/// chooses how (a thread, a worker process).
#[async_trait::async_trait]
pub trait Evaluator: Send + Sync {
    /// Evaluates `source` (named `file` in messages) with `vars`, and returns the result as
    /// JSON.
    async fn evaluate(
        &self,
        source: Arc<str>,
        file: &str,
        vars: Vars,
    ) -> Result<Value, JsonnetError>;
}

/// What an evaluation is given: external variables (`std.extVar(name)`, a mapper's `claims`)
/// and top-level arguments (a web hook body's `function(ctx)`), each a JSON value.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub ext: Vec<(String, Value)>,
    /// Passed by name when the source is a function; ignored otherwise, as in Jsonnet.
    pub tla: Vec<(String, Value)>,
}

impl Vars {
    pub fn ext(name: &str, value: Value) -> Vars {
        Vars {
            ext: vec![(name.into(), value)],
            tla: vec![],
        }
    }

    pub fn tla(name: &str, value: Value) -> Vars {
        Vars {
            ext: vec![],
            tla: vec![(name.into(), value)],
        }
    }
}

/// A Jsonnet source from its `file://` or `base64://` URL (a mapper, a web hook body); with
/// `bare_path`, a URL without a scheme is a file path (web hook bodies, deprecated in Kratos).
pub fn read_source(url: &str, bare_path: bool) -> Result<String, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    if let Some(b64) = url.strip_prefix("base64://") {
        let bytes = STANDARD
            .decode(b64.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
            .map_err(|e| format!("not base64: {e}"))?;
        return String::from_utf8(bytes).map_err(|_| "not UTF-8".into());
    }
    let path = match url.strip_prefix("file://") {
        Some(path) => path,
        None if bare_path && !url.contains("://") => url,
        None => return Err(
            "only file:// and base64:// URLs are supported (fetch an http(s) source into a file)"
                .into(),
        ),
    };
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// Refuses imports; reports `std.trace` to the log; offers no native functions.
struct Sandbox;

impl<'p> Callbacks<'p> for Sandbox {
    fn import(
        &mut self,
        _: &mut Program<'p>,
        _: SpanId,
        _: &str,
    ) -> Result<Thunk<'p>, ImportError> {
        Err(ImportError)
    }
    fn import_str(
        &mut self,
        _: &mut Program<'p>,
        _: SpanId,
        _: &str,
    ) -> Result<String, ImportError> {
        Err(ImportError)
    }
    fn import_bin(
        &mut self,
        _: &mut Program<'p>,
        _: SpanId,
        _: &str,
    ) -> Result<Vec<u8>, ImportError> {
        Err(ImportError)
    }
    fn trace(&mut self, _: &mut Program<'p>, message: &str, _: &[EvalStackTraceItem]) {
        tracing::debug!(message, "std.trace in a Jsonnet mapper");
    }
    fn native_call(
        &mut self,
        _: &mut Program<'p>,
        _: rsjsonnet_lang::interner::InternedStr<'p>,
        _: &[JValue<'p>],
    ) -> Result<JValue<'p>, NativeError> {
        Err(NativeError)
    }
}

/// Loads `text` (Jsonnet, or JSON, which is Jsonnet) as a thunk of `program`.
fn load<'p>(program: &mut Program<'p>, text: &str, file: &str) -> Result<Thunk<'p>, JsonnetError> {
    let (ctx, _) = program.span_manager_mut().insert_source_context(text.len());
    program
        .load_source(ctx, text.as_bytes(), true, file)
        .map_err(|e| JsonnetError::Syntax(format!("{e:?}")))
}

/// Why an evaluation failed, in words: an `error` expression's own message, else the kind.
fn eval_reason(kind: &EvalErrorKind) -> String {
    match kind {
        EvalErrorKind::ExplicitError { message, .. } => message.clone(),
        EvalErrorKind::AssertFailed {
            message: Some(m), ..
        } => format!("assertion failed: {m}"),
        EvalErrorKind::Other { message, .. } => message.clone(),
        EvalErrorKind::StackOverflow | EvalErrorKind::InfiniteRecursion => {
            "the call stack is too deep".into()
        }
        other => format!("{other:?}"),
    }
}

/// Evaluates `source` with `vars`, unbounded in time (see the module note): call it through
/// an [`Evaluator`].
pub fn evaluate(source: &str, file: &str, vars: &Vars) -> Result<Value, JsonnetError> {
    if source.len() > MAX_SIZE {
        return Err(JsonnetError::TooLarge);
    }
    let arena = Arena::new();
    let mut program = Program::new(&arena);
    program.set_max_stack(MAX_STACK);
    let mut callbacks = Sandbox;
    for (name, value) in &vars.ext {
        // A JSON document is a Jsonnet expression: the variable is the parsed value, as
        // Kratos passes `claims` (ext code, not a string).
        let thunk = load(&mut program, &value.to_string(), name)?;
        let name = program.intern_str(name);
        program.add_ext_var(name, &thunk);
    }
    let mut tla = vec![];
    for (name, value) in &vars.tla {
        let thunk = load(&mut program, &value.to_string(), name)?;
        tla.push((program.intern_str(name), thunk));
    }
    let root = load(&mut program, source, file)?;
    let failed = |e: rsjsonnet_lang::program::EvalError| JsonnetError::Eval(eval_reason(&e.kind));
    let mut value = program.eval_value(&root, &mut callbacks).map_err(failed)?;
    if value.is_function() {
        let f = program.value_to_thunk(&value);
        value = program
            .eval_call(&f, &[], &tla, &mut callbacks)
            .map_err(failed)?;
    }
    let json = program
        .manifest_json(&value, false)
        .map_err(|e| JsonnetError::Eval(eval_reason(&e.kind)))?;
    if json.len() > MAX_SIZE {
        return Err(JsonnetError::TooLarge);
    }
    serde_json::from_str(&json).map_err(|e| JsonnetError::Eval(e.to_string()))
}

/// Evaluates on a thread of its own with a deadline (see the module note).
#[derive(Debug, Clone)]
pub struct InThread {
    /// One permit per running evaluation; a thread gives its permit back when it ends, even
    /// after its caller stopped waiting for it.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for InThread {
    fn default() -> Self {
        InThread {
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING)),
        }
    }
}

#[async_trait::async_trait]
impl Evaluator for InThread {
    async fn evaluate(
        &self,
        source: Arc<str>,
        file: &str,
        vars: Vars,
    ) -> Result<Value, JsonnetError> {
        // A short wait for a slot smooths a burst; runaways holding every slot refuse soon.
        let Ok(Ok(permit)) =
            tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await
        else {
            return Err(JsonnetError::Busy);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let file = file.to_string();
        let spawned = std::thread::Builder::new()
            .name("jsonnet".into())
            // The engine recurses per nesting level; MAX_STACK levels fit in 16 MiB.
            .stack_size(16 * 1024 * 1024)
            .spawn(move || {
                let out = evaluate(&source, &file, &vars);
                drop(permit);
                let _ = tx.send(out);
            });
        if spawned.is_err() {
            return Err(JsonnetError::Busy);
        }
        match tokio::time::timeout(TIMEOUT, rx).await {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => Err(JsonnetError::Eval("the evaluation stopped".into())),
            Err(_) => Err(JsonnetError::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Vars {
        Vars::ext("claims", v)
    }

    #[test]
    fn the_kratos_idiom_keeps_unverified_addresses_out() {
        let mapper = r#"
            local claims = { email_verified: false } + std.extVar('claims');
            { identity: { traits: {
                [if 'email' in claims && claims.email_verified then 'email' else null]: claims.email,
            } } }"#;
        let verified = evaluate(
            mapper,
            "m.jsonnet",
            &claims(json!({"sub": "1", "email": "a@example.com", "email_verified": true})),
        );
        assert_eq!(
            verified,
            Ok(json!({"identity": {"traits": {"email": "a@example.com"}}}))
        );
        let unverified = evaluate(
            mapper,
            "m.jsonnet",
            &claims(json!({"sub": "1", "email": "a@example.com"})),
        );
        assert_eq!(unverified, Ok(json!({"identity": {"traits": {}}})));
    }

    #[test]
    fn a_function_gets_its_top_level_arguments_and_a_document_ignores_them() {
        let ctx = Vars::tla("ctx", json!({"identity": {"id": "i-1"}}));
        let body = evaluate("function(ctx) { user: ctx.identity.id }", "b.jsonnet", &ctx);
        assert_eq!(body, Ok(json!({"user": "i-1"})));
        assert_eq!(evaluate("{ a: 1 }", "b.jsonnet", &ctx), Ok(json!({"a": 1})));
        let cancelled = evaluate("function(ctx) error 'cancel'", "b.jsonnet", &ctx);
        assert_eq!(cancelled, Err(JsonnetError::Eval("cancel".into())));
    }

    #[test]
    fn sources_come_from_files_and_base64_and_bare_paths_only_where_allowed() {
        let path = std::env::temp_dir().join(format!("pc-src-{}.jsonnet", uuid::Uuid::new_v4()));
        std::fs::write(&path, "{}").unwrap();
        let bare = path.display().to_string();
        assert_eq!(
            read_source(&format!("file://{bare}"), false).as_deref(),
            Ok("{}")
        );
        assert_eq!(read_source(&bare, true).as_deref(), Ok("{}"));
        assert!(read_source(&bare, false).is_err());
        assert_eq!(read_source("base64://e30=", false).as_deref(), Ok("{}"));
        assert!(read_source("https://example.com/m.jsonnet", true).is_err());
        assert!(read_source("file:///nonexistent/m.jsonnet", false).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_error_expression_says_its_message() {
        let out = evaluate(
            "local c = std.extVar('claims'); if std.length(c.sub) == 0 then error 'claim sub not set' else {}",
            "m.jsonnet",
            &claims(json!({"sub": ""})),
        );
        assert_eq!(out, Err(JsonnetError::Eval("claim sub not set".into())));
    }

    #[test]
    fn imports_are_refused() {
        let out = evaluate("import '/etc/passwd'", "m.jsonnet", &Vars::default());
        assert!(matches!(out, Err(JsonnetError::Eval(_))), "{out:?}");
        let out = evaluate("importstr '/etc/hostname'", "m.jsonnet", &Vars::default());
        assert!(matches!(out, Err(JsonnetError::Eval(_))), "{out:?}");
    }

    #[test]
    fn syntax_errors_and_deep_recursion_are_errors_not_crashes() {
        assert!(matches!(
            evaluate("{ identity: ", "m.jsonnet", &Vars::default()),
            Err(JsonnetError::Syntax(_))
        ));
        let deep = evaluate(
            "local f(n) = f(n + 1) + 1; f(0)",
            "m.jsonnet",
            &Vars::default(),
        );
        assert_eq!(
            deep,
            Err(JsonnetError::Eval("the call stack is too deep".into()))
        );
    }

    #[test]
    fn large_sources_and_results_are_refused() {
        let big = format!("'{}'", "x".repeat(MAX_SIZE));
        assert_eq!(
            evaluate(&big, "m", &Vars::default()),
            Err(JsonnetError::TooLarge)
        );
        let grows = "std.makeArray(100000, function(i) 'xxxxxxxxxx')";
        assert_eq!(
            evaluate(grows, "m", &Vars::default()),
            Err(JsonnetError::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_mapper_that_runs_too_long_times_out_and_runaways_are_capped() {
        // Four million steps in small arrays, flat in memory: seconds in a test build, so
        // the threads given up on end soon after the test.
        let forever: Arc<str> = "std.foldl(function(a, i) std.foldl(function(b, j) b + 1, std.range(0, 100000), a), std.range(0, 39), 0)".into();
        let runner = InThread::default();
        let started = std::time::Instant::now();
        let runs: Vec<_> = (0..MAX_RUNNING)
            .map(|_| {
                let (r, src) = (runner.clone(), forever.clone());
                tokio::spawn(async move { r.evaluate(src, "loop.jsonnet", Vars::default()).await })
            })
            .collect();
        let mut outs = vec![];
        for run in runs {
            outs.push(run.await.unwrap());
        }
        assert!(
            outs.iter().all(|o| *o == Err(JsonnetError::TimedOut)),
            "{outs:?}"
        );
        assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());
        // The runaways hold every slot: evaluations are refused after a short wait.
        let refused = runner
            .evaluate("{}".into(), "ok.jsonnet", Vars::default())
            .await;
        assert_eq!(refused, Err(JsonnetError::Busy));
        // Another evaluator (another server) is not affected.
        let ok = InThread::default()
            .evaluate("{a: 1}".into(), "ok.jsonnet", Vars::default())
            .await;
        assert_eq!(ok, Ok(serde_json::json!({"a": 1})));
    }
}
