//! CEL for Kubernetes: admission policies, webhook `matchConditions` and CRD
//! `x-kubernetes-validations`.
//!
//! The interpreter is the `cel` crate; this crate adds what Kubernetes expects on top
//! (upstream's `k8s.io/apiserver/pkg/cel/library`): list helpers, regex `find`/`findAll`,
//! `quantity`, `url`, `ip`/`cidr` and the `authorizer` variable, plus the strings extension of
//! `cel` itself. Variables are given as JSON. Every evaluation runs under a cost budget (each
//! comprehension charges the size of the list or map it walks, each library call one unit) so a
//! hostile expression cannot hang the caller; expressions are also bounded in length.

mod authz;
mod duration;
mod json;
mod library;
mod macros;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use cel::common::ast::{Expr, IdedExpr};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::Context;

pub use authz::{Authorizer, AuthzRequest, Decision};
pub use cel::Value;
pub use json::{from_json, to_json};

/// Longest expression accepted (upstream bounds expressions by cost; a length bound keeps the
/// parser's work small too).
pub const MAX_EXPRESSION_LEN: usize = 10 * 1024;

/// Wall-clock bound of one evaluation (checked at every loop step and library call).
pub const EVAL_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Cost units one evaluation may spend. A unit is one comprehension step or one library call;
/// upstream's per-expression limit is 10^6 units of single operations, and a loop step is
/// several operations, so 10^5 steps is about the same bound.
pub const DEFAULT_COST_LIMIT: u64 = 100_000;

/// Deepest bracket nesting accepted: the parser recurses a dozen frames per level before its
/// own depth check runs.
pub const MAX_NESTING: usize = 32;

/// Deepest expression tree accepted (operator and select chains nest without brackets); the
/// interpreter recurses per level.
pub const MAX_DEPTH: usize = 250;

/// Generous stack use of the interpreter per tree level (measured ≈ 25 KiB in debug builds).
const STACK_PER_LEVEL: usize = 32 << 10;

/// The stack each compile and evaluation runs on (reserved, touched only as far as used).
const STACK: usize = 64 << 20;

/// The deepest nesting of `()`, `[]` and `{}` in `src`, string literals skipped.
fn nesting(src: &str) -> usize {
    let b = src.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            q @ (b'\'' | b'"') => {
                let raw = i > 0 && matches!(b[i - 1], b'r' | b'R');
                let triple = b.get(i..i + 3) == Some(&[q, q, q][..]);
                let close: &[u8] = if triple { &[q, q, q] } else { &[q] };
                i += close.len();
                while i < b.len() && !b[i..].starts_with(close) {
                    if b[i] == b'\\' && !raw {
                        i += 1;
                    }
                    i += 1;
                }
                i += close.len();
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max
}

/// Why an expression was not compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("expression is too long ({len} characters, at most {MAX_EXPRESSION_LEN})")]
    TooLong { len: usize },
    #[error("{0}")]
    Syntax(String),
    #[error(
        "expression is nested too deeply (at most {MAX_NESTING} brackets and {MAX_DEPTH} levels)"
    )]
    TooDeep,
    #[error("ERROR: <input>:1:1: undeclared reference to '{0}' (in container '')")]
    Undeclared(String),
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression ran into an error (the text follows upstream where practical, e.g.
    /// `no such key: x`).
    #[error("{0}")]
    Runtime(String),
    #[error("operation cancelled: actual cost limit exceeded")]
    CostLimit,
    #[error("expected a {want} result, got {got}")]
    WrongType { want: &'static str, got: String },
}

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    inner: cel::Program,
    source: Arc<str>,
    idents: BTreeSet<String>,
    /// Stack an evaluation may need: below it, evaluation moves to a segment of its own.
    red_zone: usize,
}

/// One variable: its value, and the interpreter's form of it, converted on first use and
/// shared by the clones of an activation (converting an object is a deep copy).
#[derive(Clone)]
struct Var {
    name: String,
    value: Value,
    val: Arc<OnceLock<Option<Box<dyn Val>>>>,
}

/// Hands the interpreter borrowed, once-converted variables.
struct Resolver<'a>(&'a [Var]);

impl VariableResolver for Resolver<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let var = self.0.iter().find(|v| v.name == name)?;
        let val = var
            .val
            .get_or_init(|| Box::<dyn Val>::try_from(var.value.clone()).ok());
        val.as_deref().map(CowVal::Borrowed)
    }
}

/// The variables an evaluation sees.
#[derive(Default, Clone)]
pub struct Activation {
    vars: Vec<Var>,
    authorizer: Option<Arc<dyn Authorizer>>,
    request_resource: Option<AuthzRequest>,
    cost_limit: Option<u64>,
}

impl Activation {
    pub fn new() -> Activation {
        Activation::default()
    }

    /// Adds (or replaces) a variable given as JSON (integers become `int`, other numbers
    /// `double`).
    pub fn json(&mut self, name: &str, value: &serde_json::Value) -> &mut Self {
        self.value(name, from_json(value))
    }

    /// Adds (or replaces) a variable given as a CEL value.
    pub fn value(&mut self, name: &str, value: Value) -> &mut Self {
        self.vars.retain(|v| v.name != name);
        self.vars.push(Var {
            name: name.to_string(),
            value,
            val: Arc::new(OnceLock::new()),
        });
        self
    }

    /// Makes `authorizer` available, answering through `authz`.
    pub fn authorizer(&mut self, authz: Arc<dyn Authorizer>) -> &mut Self {
        self.authorizer = Some(authz);
        self
    }

    /// Sets `authorizer.requestResource`: the request's group, resource, subresource,
    /// namespace and name (the verb comes from `check`).
    pub fn request_resource(&mut self, r: AuthzRequest) -> &mut Self {
        self.request_resource = Some(r);
        self
    }

    /// Overrides [`DEFAULT_COST_LIMIT`].
    pub fn cost_limit(&mut self, limit: u64) -> &mut Self {
        self.cost_limit = Some(limit);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.vars.iter().find(|v| v.name == name).map(|v| &v.value)
    }
}

static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(build_env()));

fn build_env() -> cel::Env {
    let mut env = cel::Env::default().with_stdlib();
    // Registration only fails on duplicate declarations, which would be a bug caught by the
    // unit tests; a failed registration leaves that function undeclared rather than panicking.
    let results = [
        env.add_extension(cel::extensions::strings),
        macros::register(&mut env),
        library::register(&mut env),
        authz::register(&mut env),
        duration::register(&mut env),
    ];
    for r in results {
        if let Err(e) = r {
            debug_assert!(false, "CEL environment: {e}");
        }
    }
    env
}

/// Compiles `source`. `declared` lists the variables the expression may reference (e.g.
/// `object`, `oldObject`, `request`); referencing any other name is a compile error, as with
/// upstream's type checker.
pub fn compile(source: &str, declared: &[&str]) -> Result<Program, CompileError> {
    if source.len() > MAX_EXPRESSION_LEN {
        return Err(CompileError::TooLong { len: source.len() });
    }
    if nesting(source) > MAX_NESTING {
        return Err(CompileError::TooDeep);
    }
    let (inner, idents, tree_depth) = stacker::grow(STACK, || {
        let inner = ENV
            .compile(source)
            .map_err(|e| CompileError::Syntax(e.to_string()))?;
        let tree_depth = depth(inner.expression());
        if tree_depth > MAX_DEPTH {
            return Err(CompileError::TooDeep);
        }
        let mut idents = BTreeSet::new();
        free_idents(inner.expression(), &mut Vec::new(), &mut idents);
        Ok::<_, CompileError>((inner, idents, tree_depth))
    })?;
    if let Some(unknown) = idents
        .iter()
        .find(|i| !declared.contains(&i.as_str()) && !is_type_name(i))
    {
        return Err(CompileError::Undeclared(unknown.clone()));
    }
    Ok(Program {
        inner,
        source: source.into(),
        idents,
        red_zone: STACK_PER_LEVEL * (tree_depth + 8),
    })
}

/// Names that resolve to types (`type(x) == string`) rather than variables.
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "int"
            | "uint"
            | "double"
            | "bool"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
            | "dyn"
            | "optional"
    )
}

/// The depth of the expression tree.
fn depth(e: &IdedExpr) -> usize {
    let children = match &e.expr {
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| depth(t))
            .chain(c.args.iter().map(depth))
            .max(),
        Expr::Select(s) => Some(depth(&s.operand)),
        Expr::List(l) => l.elements.iter().map(depth).max(),
        Expr::Map(m) => m
            .entries
            .iter()
            .map(|en| match &en.expr {
                cel::common::ast::EntryExpr::MapEntry(me) => depth(&me.key).max(depth(&me.value)),
                cel::common::ast::EntryExpr::StructField(f) => depth(&f.value),
            })
            .max(),
        Expr::Struct(st) => st
            .entries
            .iter()
            .map(|en| match &en.expr {
                cel::common::ast::EntryExpr::StructField(f) => depth(&f.value),
                cel::common::ast::EntryExpr::MapEntry(me) => depth(&me.value),
            })
            .max(),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(depth)
        .max(),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => None,
    };
    1 + children.unwrap_or(0)
}

/// The identifiers `e` reads that no enclosing comprehension binds.
fn free_idents(e: &IdedExpr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) {
                out.insert(name.clone());
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_idents(t, bound, out);
            }
            for a in &c.args {
                free_idents(a, bound, out);
            }
        }
        Expr::Select(s) => free_idents(&s.operand, bound, out),
        Expr::List(l) => {
            for x in &l.elements {
                free_idents(x, bound, out);
            }
        }
        Expr::Map(m) => {
            for en in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &en.expr {
                    free_idents(&me.key, bound, out);
                    free_idents(&me.value, bound, out);
                }
            }
        }
        Expr::Struct(s) => {
            for en in &s.entries {
                if let cel::common::ast::EntryExpr::StructField(f) = &en.expr {
                    free_idents(&f.value, bound, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            free_idents(&c.loop_cond, bound, out);
            free_idents(&c.loop_step, bound, out);
            free_idents(&c.result, bound, out);
            bound.truncate(depth);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The select chain `root.a.b` that `e` is, as (field, node id) pairs.
fn select_chain(e: &IdedExpr, root: &str) -> Option<Vec<(String, u64)>> {
    match &e.expr {
        Expr::Ident(n) if n == root => Some(Vec::new()),
        Expr::Select(s) => {
            let mut chain = select_chain(&s.operand, root)?;
            chain.push((s.field.clone(), e.id));
            Some(chain)
        }
        _ => None,
    }
}

fn collect_paths(
    e: &IdedExpr,
    root: &str,
    bound: &mut Vec<String>,
    out: &mut Vec<Vec<(String, (u32, u32))>>,
    pos: &dyn Fn(u64) -> (u32, u32),
) {
    if !bound.iter().any(|b| b == root) {
        if let Some(chain) = select_chain(e, root) {
            if !chain.is_empty() {
                out.push(chain.into_iter().map(|(f, id)| (f, pos(id))).collect());
            }
            return;
        }
    }
    let mut walk = |x: &IdedExpr, bound: &mut Vec<String>| collect_paths(x, root, bound, out, pos);
    match &e.expr {
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                walk(t, bound);
            }
            for a in &c.args {
                walk(a, bound);
            }
        }
        Expr::Select(s) => walk(&s.operand, bound),
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, bound);
            }
        }
        Expr::Map(m) => {
            for en in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &en.expr {
                    walk(&me.key, bound);
                    walk(&me.value, bound);
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, bound);
            walk(&c.accu_init, bound);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound);
            walk(&c.loop_step, bound);
            walk(&c.result, bound);
            bound.truncate(depth);
        }
        _ => {}
    }
}

thread_local! {
    /// Cost units left for the evaluation running on this thread.
    static BUDGET: Cell<u64> = const { Cell::new(u64::MAX) };
    /// When the evaluation running on this thread must stop.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The error the budget raises once spent; recognised by [`Program::eval`].
const COST_MESSAGE: &str = "operation cancelled: actual cost limit exceeded";

/// Spends `n` units of the running evaluation's budget (and checks its deadline).
pub(crate) fn charge(n: u64) -> Result<(), cel::ExecutionError> {
    let late = DEADLINE.with(|d| d.get().is_some_and(|d| Instant::now() > d));
    if late {
        BUDGET.with(|b| b.set(0));
        return Err(cel::ExecutionError::function_error("cost", COST_MESSAGE));
    }
    BUDGET.with(|b| {
        let left = b.get();
        if left < n {
            b.set(0);
            Err(cel::ExecutionError::function_error("cost", COST_MESSAGE))
        } else {
            b.set(left - n);
            Ok(())
        }
    })
}

fn budget_spent() -> bool {
    BUDGET.with(|b| b.get() == 0)
}

impl Program {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression reads variable `name`.
    pub fn references(&self, name: &str) -> bool {
        self.idents.contains(name)
    }

    /// Every field path read from variable `root` (`object.spec.replicas` → `spec`,
    /// `replicas`), each field with its 1-based (line, column) in the source, outermost chains
    /// only. For best-effort type checking against a schema.
    pub fn field_paths(&self, root: &str) -> Vec<Vec<(String, (u32, u32))>> {
        let mut out = Vec::new();
        let info = self.inner.source_info();
        let pos = |id: u64| {
            let start = info.offset_for(id).map_or(0, |(s, _)| s as usize);
            let before: String = self.source.chars().take(start).collect();
            let line = before.matches('\n').count() as u32 + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            (line, col)
        };
        stacker::grow(STACK, || {
            collect_paths(
                self.inner.expression(),
                root,
                &mut Vec::new(),
                &mut out,
                &pos,
            );
        });
        out
    }

    /// Evaluates the expression.
    pub fn eval(&self, act: &Activation) -> Result<Value, EvalError> {
        let resolver = Resolver(&act.vars);
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.set_variable_resolver(&resolver);
        if self.idents.contains("authorizer") {
            if let Some(a) = &act.authorizer {
                ctx.add_variable_from_value(
                    "authorizer",
                    authz::root(Arc::clone(a), act.request_resource.as_ref()),
                );
            }
        }
        let limit = act.cost_limit.unwrap_or(DEFAULT_COST_LIMIT);
        let previous = BUDGET.with(|b| b.replace(limit.max(1)));
        let previous_deadline =
            DEADLINE.with(|d| d.replace(Some(Instant::now() + EVAL_TIME_LIMIT)));
        // Ordinary expressions fit the caller's stack; a segment costs tens of µs.
        let out = stacker::maybe_grow(self.red_zone, STACK, || self.inner.execute(&ctx));
        let spent = budget_spent();
        BUDGET.with(|b| b.set(previous));
        DEADLINE.with(|d| d.set(previous_deadline));
        if spent {
            return Err(EvalError::CostLimit);
        }
        out.map_err(|e| EvalError::Runtime(error_text(&e)))
    }

    /// Evaluates an expression that must yield a bool.
    pub fn eval_bool(&self, act: &Activation) -> Result<bool, EvalError> {
        match self.eval(act)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::WrongType {
                want: "bool",
                got: type_name(&other).to_string(),
            }),
        }
    }

    /// Evaluates an expression that must yield a string.
    pub fn eval_string(&self, act: &Activation) -> Result<String, EvalError> {
        match self.eval(act)? {
            Value::String(s) => Ok(s.to_string()),
            other => Err(EvalError::WrongType {
                want: "string",
                got: type_name(&other).to_string(),
            }),
        }
    }
}

/// Upstream's wording for the common runtime errors.
fn error_text(e: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match e {
        E::NoSuchKey(k) => format!("no such key: {k}"),
        E::UndeclaredReference(r) => format!("undeclared reference to '{r}'"),
        E::DivisionByZero(_) => "division by zero".to_string(),
        E::RemainderByZero(_) => "modulus by zero".to_string(),
        E::IndexOutOfBounds(i) => format!("index out of bounds: {}", json::short(i)),
        E::FunctionError { message, .. } => message.clone(),
        E::NoSuchOverload(o) => format!("no such overload: {o}"),
        other => other.to_string(),
    }
}

/// The CEL type name of `v`.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Opaque(_) => "opaque",
        Value::Struct(_) => "struct",
        Value::Null => "null_type",
    }
}

#[cfg(test)]
mod tests;
