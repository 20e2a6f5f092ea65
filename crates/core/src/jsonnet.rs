//! Jsonnet, as Kratos runs it: the claims mappers of social sign-in (and next, the bodies of
//! flow web hooks). Existing `kratos.yml` files point at `.jsonnet` files, so the language is
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
//! taken, evaluations are refused rather than started). Memory is bounded only by those caps:
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
    /// Evaluates `source` (named `file` in messages) with each `(name, value)` of `ext` as an
    /// external variable (`std.extVar(name)`), and returns the result as JSON.
    async fn evaluate(
        &self,
        source: Arc<str>,
        file: &str,
        ext: Vec<(String, Value)>,
    ) -> Result<Value, JsonnetError>;
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

/// Evaluates `source` with the external variables `ext`, unbounded in time (see the module
/// note): call it through an [`Evaluator`].
pub fn evaluate(source: &str, file: &str, ext: &[(String, Value)]) -> Result<Value, JsonnetError> {
    if source.len() > MAX_SIZE {
        return Err(JsonnetError::TooLarge);
    }
    let arena = Arena::new();
    let mut program = Program::new(&arena);
    program.set_max_stack(MAX_STACK);
    let mut callbacks = Sandbox;
    for (name, value) in ext {
        // A JSON document is a Jsonnet expression: the variable is the parsed value, as
        // Kratos passes `claims` (ext code, not a string).
        let json = value.to_string();
        let thunk = load(&mut program, &json, name)?;
        let name = program.intern_str(name);
        program.add_ext_var(name, &thunk);
    }
    let root = load(&mut program, source, file)?;
    let value = program
        .eval_value(&root, &mut callbacks)
        .map_err(|e| JsonnetError::Eval(eval_reason(&e.kind)))?;
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
        ext: Vec<(String, Value)>,
    ) -> Result<Value, JsonnetError> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return Err(JsonnetError::Busy);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let file = file.to_string();
        let spawned = std::thread::Builder::new()
            .name("jsonnet".into())
            // The engine recurses per nesting level; MAX_STACK levels fit in 16 MiB.
            .stack_size(16 * 1024 * 1024)
            .spawn(move || {
                let out = evaluate(&source, &file, &ext);
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

    fn claims(v: Value) -> Vec<(String, Value)> {
        vec![("claims".to_string(), v)]
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
        let out = evaluate("import '/etc/passwd'", "m.jsonnet", &[]);
        assert!(matches!(out, Err(JsonnetError::Eval(_))), "{out:?}");
        let out = evaluate("importstr '/etc/hostname'", "m.jsonnet", &[]);
        assert!(matches!(out, Err(JsonnetError::Eval(_))), "{out:?}");
    }

    #[test]
    fn syntax_errors_and_deep_recursion_are_errors_not_crashes() {
        assert!(matches!(
            evaluate("{ identity: ", "m.jsonnet", &[]),
            Err(JsonnetError::Syntax(_))
        ));
        let deep = evaluate("local f(n) = f(n + 1) + 1; f(0)", "m.jsonnet", &[]);
        assert_eq!(
            deep,
            Err(JsonnetError::Eval("the call stack is too deep".into()))
        );
    }

    #[test]
    fn large_sources_and_results_are_refused() {
        let big = format!("'{}'", "x".repeat(MAX_SIZE));
        assert_eq!(evaluate(&big, "m", &[]), Err(JsonnetError::TooLarge));
        let grows = "std.makeArray(100000, function(i) 'xxxxxxxxxx')";
        assert_eq!(evaluate(grows, "m", &[]), Err(JsonnetError::TooLarge));
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
                tokio::spawn(async move { r.evaluate(src, "loop.jsonnet", vec![]).await })
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
        // The runaways hold every slot: evaluations are refused at once.
        let refused = runner.evaluate("{}".into(), "ok.jsonnet", vec![]).await;
        assert_eq!(refused, Err(JsonnetError::Busy));
        // Another evaluator (another server) is not affected.
        let ok = InThread::default()
            .evaluate("{a: 1}".into(), "ok.jsonnet", vec![])
            .await;
        assert_eq!(ok, Ok(serde_json::json!({"a": 1})));
    }
}
