use std::sync::Arc;

use serde_json::json;

use super::*;

fn eval_with(expr: &str, act: &Activation) -> Result<serde_json::Value, EvalError> {
    let names: Vec<&str> = act.vars.iter().map(|v| v.name.as_str()).collect();
    let mut declared = names.clone();
    declared.push("authorizer");
    let p = compile(expr, &declared).unwrap_or_else(|e| panic!("{expr}: {e}"));
    p.eval(act).map(|v| to_json(&v))
}

fn ev(expr: &str) -> serde_json::Value {
    eval_with(expr, &Activation::new()).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn ev_err(expr: &str) -> String {
    eval_with(expr, &Activation::new())
        .expect_err(expr)
        .to_string()
}

#[test]
fn macros_and_json_variables() {
    let mut act = Activation::new();
    act.json(
        "object",
        &json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 3, "ratio": 0.5, "ports": [80, 443]}}),
    );
    let e = |x: &str| eval_with(x, &act).unwrap_or_else(|e| panic!("{x}: {e}"));
    assert_eq!(e("object.spec.replicas == 3"), json!(true));
    assert_eq!(e("object.spec.ratio * 2.0"), json!(1.0));
    assert_eq!(e("has(object.metadata.labels)"), json!(true));
    assert_eq!(e("has(object.metadata.annotations)"), json!(false));
    assert_eq!(e("object.spec.ports.all(p, p > 0)"), json!(true));
    assert_eq!(e("object.spec.ports.exists(p, p == 443)"), json!(true));
    assert_eq!(e("object.spec.ports.exists_one(p, p > 100)"), json!(true));
    assert_eq!(e("object.spec.ports.map(p, p + 1)"), json!([81, 444]));
    assert_eq!(e("object.spec.ports.map(p, p > 100, p * 2)"), json!([886]));
    assert_eq!(e("object.spec.ports.filter(p, p < 100)"), json!([80]));
    assert_eq!(e("object.metadata.labels.exists(k, k == 'x')"), json!(true));
    assert_eq!(e("[[1, 2], [3]].all(l, l.all(x, x > 0))"), json!(true));
    let err = eval_with("object.spec.missing == 1", &act).unwrap_err();
    assert_eq!(err.to_string(), "no such key: missing");
}

#[test]
fn undeclared_variables_are_compile_errors() {
    let err = compile("foo.bar == 1", &["object"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')"
    );
    assert!(compile("[1].all(x, x > 0) && type(1) == int", &[]).is_ok());
    assert!(matches!(compile("1 +", &[]), Err(CompileError::Syntax(_))));
    let long = "1 + ".repeat(MAX_EXPRESSION_LEN);
    assert!(matches!(
        compile(&long, &[]),
        Err(CompileError::TooLong { .. })
    ));
}

#[test]
fn cost_budget_stops_runaway_comprehensions() {
    let big: Vec<i64> = (0..1000).collect();
    let mut act = Activation::new();
    act.json("l", &json!(big));
    let p = compile("l.all(a, l.all(b, l.all(c, a + b + c >= 0)))", &["l"]).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(p.eval(&act), Err(EvalError::CostLimit));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    // A small limit trips small loops too; the default lets ordinary ones through.
    let q = compile("l.exists(x, x == 999)", &["l"]).unwrap();
    assert_eq!(q.eval_bool(&act), Ok(true));
    act.cost_limit(10);
    assert_eq!(q.eval(&act), Err(EvalError::CostLimit));
}

#[test]
fn big_results_and_slow_steps_are_bounded() {
    let mut act = Activation::new();
    act.json("s", &json!("x".repeat(1 << 20)));
    act.json("l", &json!((0..2000).collect::<Vec<i64>>()));
    // map results are charged by size: 2000 one-MiB strings exceed the budget.
    let p = compile("l.map(i, s + s).size() > 0", &["l", "s"]).unwrap();
    assert_eq!(p.eval(&act), Err(EvalError::CostLimit));
    // Steps that allocate but keep nothing hit the deadline instead of running on.
    let p = compile(
        "l.all(a, l.all(b, (s + s + s + s).size() > 0))",
        &["l", "s"],
    )
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(p.eval(&act), Err(EvalError::CostLimit));
    assert!(
        started.elapsed() < EVAL_TIME_LIMIT * 3,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn strings_library() {
    assert_eq!(ev("'abc'.charAt(1)"), json!("b"));
    assert_eq!(ev("'hello'.indexOf('l')"), json!(2));
    assert_eq!(ev("'hello'.lastIndexOf('l')"), json!(3));
    assert_eq!(ev("'TacoCat'.lowerAscii()"), json!("tacocat"));
    assert_eq!(ev("'TacoCat'.upperAscii()"), json!("TACOCAT"));
    assert_eq!(ev("'a-b-c'.replace('-', '+')"), json!("a+b+c"));
    assert_eq!(ev("'a,b'.split(',')"), json!(["a", "b"]));
    assert_eq!(ev("'tacocat'.substring(4)"), json!("cat"));
    assert_eq!(ev("'  x '.trim()"), json!("x"));
    assert_eq!(ev("['a', 'b'].join('-')"), json!("a-b"));
    assert_eq!(ev("'%s=%d'.format(['x', 1])"), json!("x=1"));
    assert_eq!(ev("'abc'.matches('^a.c$')"), json!(true));
    assert_eq!(ev("matches('v1.2.3', 'v1.[0-3].\\\\d+')"), json!(true));
}

#[test]
fn lists_library() {
    assert_eq!(ev("[1, 2, 3].isSorted()"), json!(true));
    assert_eq!(ev("['b', 'a'].isSorted()"), json!(false));
    assert_eq!(ev("[1, 2, 3].sum()"), json!(6));
    assert_eq!(ev("[0.5, 1.5].sum()"), json!(2.0));
    assert_eq!(ev("[].sum()"), json!(0));
    assert_eq!(ev("[3, 1, 2].min()"), json!(1));
    assert_eq!(ev("[3, 1, 2].max()"), json!(3));
    assert_eq!(ev("[1, 2, 1].indexOf(1)"), json!(0));
    assert_eq!(ev("[1, 2, 1].lastIndexOf(1)"), json!(2));
    assert_eq!(ev("[1, 2].indexOf(5)"), json!(-1));
    assert_eq!(ev_err("[].min()"), "min called on empty list");
}

#[test]
fn regex_library() {
    assert_eq!(ev("'abc 123'.find('[0-9]+')"), json!("123"));
    assert_eq!(ev("'abc'.find('[0-9]+')"), json!(""));
    assert_eq!(ev("'123 abc 456'.findAll('[0-9]+')"), json!(["123", "456"]));
    assert_eq!(ev("'1 2 3'.findAll('[0-9]', 2)"), json!(["1", "2"]));
    assert!(ev_err("'a'.find('[')").starts_with("Invalid regex"));
}

#[test]
fn quantity_library() {
    assert_eq!(ev("isQuantity('1.5Gi')"), json!(true));
    assert_eq!(ev("isQuantity('abc')"), json!(false));
    assert_eq!(ev("quantity('1') == quantity('1000m')"), json!(true));
    assert_eq!(ev("quantity('1Gi').compareTo(quantity('1G'))"), json!(1));
    assert_eq!(
        ev("quantity('100m').isLessThan(quantity('1'))"),
        json!(true)
    );
    assert_eq!(
        ev("quantity('2').isGreaterThan(quantity('1'))"),
        json!(true)
    );
    assert_eq!(
        ev("quantity('1').add(quantity('500m')).asApproximateFloat()"),
        json!(1.5)
    );
    assert_eq!(ev("quantity('1').add(2).asInteger()"), json!(3));
    assert_eq!(ev("quantity('1').sub(quantity('3')).sign()"), json!(-1));
    assert_eq!(ev("quantity('5').sub(1).asInteger()"), json!(4));
    assert_eq!(ev("quantity('1.5').isInteger()"), json!(false));
    assert_eq!(ev("quantity('2k').isInteger()"), json!(true));
    assert!(ev_err("quantity('1.5').asInteger()").contains("cannot convert"));
    assert!(ev_err("quantity('x')").contains("quantities must match"));
    assert_eq!(
        ev("[quantity('1'), quantity('500m')].sum().asApproximateFloat()"),
        json!(1.5)
    );
    assert_eq!(
        ev("[quantity('100m'), quantity('1')].isSorted()"),
        json!(true)
    );
    assert_eq!(
        ev("[quantity('2'), quantity('1Ki')].max() == quantity('1024')"),
        json!(true)
    );
}

#[test]
fn url_library() {
    assert_eq!(
        ev("isURL('https://example.com:8080/a/b?x=1&x=2&y=z')"),
        json!(true)
    );
    assert_eq!(ev("isURL('not a url')"), json!(false));
    assert_eq!(
        ev("url('https://example.com:8080/a').getScheme()"),
        json!("https")
    );
    assert_eq!(
        ev("url('https://example.com:8080/a').getHost()"),
        json!("example.com:8080")
    );
    assert_eq!(
        ev("url('https://example.com:8080/a').getHostname()"),
        json!("example.com")
    );
    assert_eq!(ev("url('https://[::1]:80/').getHostname()"), json!("::1"));
    assert_eq!(
        ev("url('https://example.com:8080/a').getPort()"),
        json!("8080")
    );
    assert_eq!(
        ev("url('https://example.com/a%20b').getEscapedPath()"),
        json!("/a%20b")
    );
    assert_eq!(
        ev("url('https://h/?x=1&x=2&y=a%20b').getQuery()"),
        json!({"x": ["1", "2"], "y": ["a b"]})
    );
    assert_eq!(
        ev("url('/just/a/path').getEscapedPath()"),
        json!("/just/a/path")
    );
}

#[test]
fn ip_and_cidr_library() {
    assert_eq!(ev("isIP('10.0.0.1')"), json!(true));
    assert_eq!(ev("isIP('::ffff:1.2.3.4')"), json!(false));
    assert_eq!(ev("ip('fd00::1').family()"), json!(6));
    assert_eq!(ev("ip('127.0.0.1').isLoopback()"), json!(true));
    assert_eq!(ev("ip('0.0.0.0').isUnspecified()"), json!(true));
    assert_eq!(ev("isCIDR('10.0.0.0/8')"), json!(true));
    assert_eq!(
        ev("cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))"),
        json!(true)
    );
    assert_eq!(
        ev("cidr('10.0.0.0/8').containsIP('11.0.0.1')"),
        json!(false)
    );
    assert_eq!(
        ev("cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')"),
        json!(true)
    );
    assert_eq!(ev("cidr('10.0.0.0/8').prefixLength()"), json!(8));
    assert_eq!(
        ev("cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8')"),
        json!(true)
    );
    assert_eq!(ev("cidr('10.0.0.0/8').ip() == ip('10.0.0.0')"), json!(true));
}

struct OnlyPods;

impl Authorizer for OnlyPods {
    fn authorize(&self, r: &AuthzRequest) -> Decision {
        let allowed = r.path.is_none() && r.resource == "pods" && r.verb == "get";
        Decision {
            allowed,
            reason: if allowed {
                "rbac allows".into()
            } else {
                "no rule".into()
            },
        }
    }
}

#[test]
fn authorizer_checks_go_through_the_callback() {
    let mut act = Activation::new();
    act.authorizer(Arc::new(OnlyPods));
    let e = |x: &str| eval_with(x, &act).unwrap_or_else(|e| panic!("{x}: {e}"));
    assert_eq!(
        e("authorizer.group('').resource('pods').namespace('default').name('p').check('get').allowed()"),
        json!(true)
    );
    assert_eq!(
        e("authorizer.group('apps').resource('deployments').check('get').allowed()"),
        json!(false)
    );
    assert_eq!(
        e("authorizer.resource('pods').check('delete').reason()"),
        json!("no rule")
    );
    assert_eq!(
        e("authorizer.path('/healthz').check('get').allowed()"),
        json!(false)
    );
    assert_eq!(
        e("authorizer.resource('pods').check('get').errored()"),
        json!(false)
    );
}

#[test]
fn field_paths_follow_select_chains() {
    let p = compile(
        "object.spec.replicas > 1 && has(object.metadata.labels) && [1].all(object, object > 0)",
        &["object"],
    )
    .unwrap();
    let paths: Vec<Vec<String>> = p
        .field_paths("object")
        .into_iter()
        .map(|c| c.into_iter().map(|(f, _)| f).collect())
        .collect();
    assert_eq!(
        paths,
        vec![vec!["spec", "replicas"], vec!["metadata", "labels"]]
    );
    let first = &p.field_paths("object")[0];
    assert_eq!(first[1].1 .0, 1);
}

/// Timing figures for the docs (debug build; run with `--ignored --nocapture`).
#[test]
#[ignore]
fn timing() {
    let expr = "has(object.metadata.labels) && object.spec.containers.all(c, c.image.startsWith('registry/')) && object.metadata.name.size() < 64";
    let obj = json!({"metadata": {"name": "web", "labels": {"a": "b"}},
        "spec": {"containers": [{"image": "registry/a"}, {"image": "registry/b"}]}});
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        compile(expr, &["object"]).unwrap();
    }
    let compile_us = t.elapsed().as_micros() / n;
    let p = compile(expr, &["object"]).unwrap();
    let mut act = Activation::new();
    act.json("object", &obj);
    let t = std::time::Instant::now();
    for _ in 0..n {
        assert!(p.eval_bool(&act).unwrap());
    }
    let eval_us = t.elapsed().as_micros() / n;
    let big: Vec<i64> = (0..1000).collect();
    let mut act = Activation::new();
    act.json("l", &json!(big));
    let p = compile("l.all(a, l.all(b, l.all(c, a + b + c >= 0)))", &["l"]).unwrap();
    let t = std::time::Instant::now();
    assert_eq!(p.eval(&act), Err(EvalError::CostLimit));
    println!(
        "compile {compile_us} µs, eval {eval_us} µs, runaway stopped after {} ms",
        t.elapsed().as_millis()
    );
}

#[test]
fn optionals_and_mixed_numbers() {
    let mut act = Activation::new();
    act.json("object", &json!({"spec": {"ratio": 0.5, "replicas": 2}}));
    let e = |x: &str| eval_with(x, &act).unwrap_or_else(|e| panic!("{x}: {e}"));
    assert_eq!(e("object.?spec.?replicas.orValue(1)"), json!(2));
    assert_eq!(e("object.?spec.?missing.orValue(1)"), json!(1));
    assert_eq!(e("object.spec.ratio < 1"), json!(true));
    assert_eq!(e("object.spec.replicas == 2.0"), json!(true));
    assert_eq!(e("int(object.spec.ratio * 10.0) == 5"), json!(true));
}

#[test]
#[ignore]
fn map_timing() {
    for n in [10_000i64, 40_000] {
        let big: Vec<i64> = (0..n).collect();
        let mut act = Activation::new();
        act.json("l", &json!(big));
        let p = compile("l.map(x, x * 2).size()", &["l"]).unwrap();
        let t = std::time::Instant::now();
        let r = p.eval(&act);
        println!(
            "map over {n}: {:?} in {} ms",
            r.map(|v| to_json(&v)),
            t.elapsed().as_millis()
        );
    }
}

#[test]
fn durations_compare_and_add() {
    assert_eq!(ev("duration('1h30m') > duration('90m')"), json!(false));
    assert_eq!(ev("duration('1h30m') == duration('90m')"), json!(true));
    assert_eq!(ev("duration('1.5s') == duration('1500ms')"), json!(true));
    assert_eq!(ev("duration('0s') != duration('1ns')"), json!(true));
    assert_eq!(
        ev("duration('1s') + duration('500ms') < duration('2s')"),
        json!(true)
    );
    assert_eq!(
        ev("(duration('2s') - duration('500ms')).getMilliseconds()"),
        json!(1500)
    );
    assert_eq!(ev("duration('-2h').getHours()"), json!(-2));
    assert_eq!(ev("duration('3m').getSeconds()"), json!(180));
    assert_eq!(
        ev("[duration('2s'), duration('1s')].all(d, d > duration('0s'))"),
        json!(true)
    );
    assert!(ev_err("duration('5 parsecs')").contains("invalid duration"));
    // gateway-api HTTPRoute's timeout rule.
    let mut act = Activation::new();
    act.json("self", &json!({"request": "10s", "backendRequest": "5s"}));
    let p = compile(
        "!(has(self.request) && has(self.backendRequest) && duration(self.request) != duration('0s') && duration(self.backendRequest) > duration(self.request))",
        &["self"],
    )
    .unwrap();
    assert_eq!(p.eval_bool(&act), Ok(true));
    act.json("self", &json!({"request": "1s", "backendRequest": "5s"}));
    assert_eq!(p.eval_bool(&act), Ok(false));
    assert_eq!(duration::parse("1h2m3.5s"), Some(3_723_500_000_000));
    assert_eq!(duration::parse(""), None);
    assert_eq!(duration::parse("1"), None);
}

#[test]
fn deep_nesting_is_a_compile_error_not_a_crash() {
    // Runs on the test thread's default (2 MiB) stack, like a server worker.
    let deep = format!(
        "{}1{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert_eq!(compile(&deep, &[]).unwrap_err(), CompileError::TooDeep);
    // Brackets inside string literals do not count; ones hidden behind them do.
    let quoted = format!("'{}' == '{}'", "(".repeat(100), ")".repeat(100));
    assert!(compile(&quoted, &[]).is_ok());
    let sneaky = "(')'".repeat(MAX_NESTING + 1);
    assert!(matches!(compile(&sneaky, &[]), Err(CompileError::TooDeep)));
    for (open, close) in [("(", ")"), ("[", "]"), ("{1: ", "}"), ("!", ""), ("-", "")] {
        let n = if close.is_empty() {
            MAX_EXPRESSION_LEN / 2
        } else {
            MAX_NESTING
        };
        let src = format!("{}1{}", open.repeat(n), close.repeat(n));
        if let Ok(p) = compile(&src, &[]) {
            // Whatever the parser accepts must also evaluate without blowing the stack.
            let _ = p.eval(&Activation::new());
        }
    }
    // Long operator and select chains nest without brackets: bounded by the tree's depth.
    let chain = vec!["1"; MAX_DEPTH - 10].join("+");
    let p = compile(&chain, &[]).expect("a chain within the depth bound");
    assert_eq!(
        p.eval(&Activation::new()).map(|v| to_json(&v)),
        Ok(json!(MAX_DEPTH - 10))
    );
    let chain = vec!["1"; MAX_EXPRESSION_LEN / 4].join("+");
    assert_eq!(compile(&chain, &[]).unwrap_err(), CompileError::TooDeep);
    let select = format!("x{}", ".a".repeat(MAX_DEPTH - 10));
    let p = compile(&select, &["x"]).expect("a select chain within the depth bound");
    assert!(p.eval(&Activation::new()).is_err());
    assert_eq!(p.field_paths("x")[0].len(), MAX_DEPTH - 10);
    let select = format!("x{}", ".a".repeat(MAX_EXPRESSION_LEN / 2 - 1));
    assert_eq!(compile(&select, &["x"]).unwrap_err(), CompileError::TooDeep);
}
