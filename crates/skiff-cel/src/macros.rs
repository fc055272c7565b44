//! The standard macros (`has`, `all`, `exists`, `exists_one`/`existsOne`, `map`, `filter`),
//! expanded as CEL defines them, except that every comprehension's range goes through
//! `@budget`, which charges the evaluation's cost budget for the elements it walks. Nested
//! comprehensions charge their inner range once per outer element, so the budget bounds the
//! total number of loop steps.

use cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, Expr, IdedExpr, ListExpr, LiteralValue,
};
use cel::common::types::{CelInt, CelString, DYN_TYPE};
use cel::common::value::CowVal;
use cel::parser::{Macro, MacroExprHelper, ParseError};
use cel::{DeclarationError, Env, ExecutionError};

const ACCU: &str = "@result";

#[derive(Clone, Copy)]
enum Kind {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("@budget", "budget_dyn", vec![DYN_TYPE], budget)?;
    env.add_overload("@step", "step_dyn", vec![DYN_TYPE], step)?;
    env.add_macro(Macro::global(operators::HAS, 1, |h, _t, args| {
        let arg = args.remove(0);
        match arg.expr {
            Expr::Select(mut s) => {
                s.test = true;
                Ok(Some(h.next_expr(Expr::Select(s))))
            }
            _ => Err(h.new_error(arg.id, "invalid argument to has() macro")),
        }
    }))?;
    for (name, argc, kind) in [
        (operators::ALL, 2, Kind::All),
        (operators::EXISTS, 2, Kind::Exists),
        (operators::EXISTS_ONE, 2, Kind::ExistsOne),
        ("existsOne", 2, Kind::ExistsOne),
        (operators::MAP, 2, Kind::Map),
        (operators::MAP, 3, Kind::Map),
        (operators::FILTER, 2, Kind::Filter),
    ] {
        env.add_macro(Macro::receiver(name, argc, move |h, t, a| {
            expand(kind, h, t, a).map(Some)
        }))?;
    }
    Ok(())
}

/// Runs once per loop step (around `all`/`exists` loop conditions and `map`/`filter`
/// elements, keeping the `@result + [e]` shape the interpreter appends in place): checks the
/// evaluation's
/// deadline (a step can be slow without charging anything, e.g. concatenating large strings)
/// and charges for what an element adds to a `map` result (strings per 100 bytes, lists and
/// maps per entry), so results cannot grow without bound.
fn step<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    if args.len() != 1 {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    }
    let v = args.remove(0);
    let size = if let Some(s) = v.as_ref().downcast_ref::<CelString>() {
        s.inner().len() as u64 / 100
    } else {
        v.as_ref()
            .as_sizer()
            .map_or(0, |s| u64::try_from(*s.size().inner()).unwrap_or(0))
    };
    crate::charge(size)?;
    Ok(v)
}

/// Charges the size of the range about to be walked and hands it back unchanged.
fn budget<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    if args.len() != 1 {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    }
    let range = args.remove(0);
    let n = range
        .as_ref()
        .as_sizer()
        .map(|s| *s.size().inner())
        .unwrap_or(1);
    crate::charge(u64::try_from(n).unwrap_or(0).saturating_add(1))?;
    Ok(range)
}

fn call(h: &mut MacroExprHelper<'_>, name: &str, args: Vec<IdedExpr>) -> IdedExpr {
    h.next_expr(Expr::Call(CallExpr {
        func_name: name.to_string(),
        target: None,
        args,
    }))
}

fn accu(h: &mut MacroExprHelper<'_>) -> IdedExpr {
    h.next_expr(Expr::Ident(ACCU.to_string()))
}

fn lit(h: &mut MacroExprHelper<'_>, v: LiteralValue) -> IdedExpr {
    h.next_expr(Expr::Literal(v))
}

fn expand(
    kind: Kind,
    h: &mut MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<IdedExpr, ParseError> {
    let Some(range) = target.take() else {
        return Err(h.new_error(0, "macro needs a target"));
    };
    let var_expr = args.remove(0);
    let var = match &var_expr.expr {
        Expr::Ident(v) => v.clone(),
        _ => return Err(h.new_error(var_expr.id, "argument must be a simple name")),
    };
    let range = call(h, "@budget", vec![range]);
    let t = lit(h, LiteralValue::Boolean(true.into()));
    let (init, cond, step, result) = match kind {
        Kind::All | Kind::Exists => {
            let all = matches!(kind, Kind::All);
            let init = lit(h, LiteralValue::Boolean(all.into()));
            let a = accu(h);
            let cond_arg = if all {
                a
            } else {
                call(h, operators::LOGICAL_NOT, vec![a])
            };
            let cond = call(h, operators::NOT_STRICTLY_FALSE, vec![cond_arg]);
            // In the loop condition: an error there ends the loop (one in the step would be
            // absorbed by `&&`/`||` and the loop would go on).
            let cond = call(h, "@step", vec![cond]);
            let pred = args.remove(0);
            let a = accu(h);
            let op = if all {
                operators::LOGICAL_AND
            } else {
                operators::LOGICAL_OR
            };
            let step = call(h, op, vec![a, pred]);
            (init, cond, step, accu(h))
        }
        Kind::ExistsOne => {
            let init = lit(h, LiteralValue::Int(CelInt::from(0)));
            let pred = args.remove(0);
            let a = accu(h);
            let one = lit(h, LiteralValue::Int(CelInt::from(1)));
            let plus = call(h, operators::ADD, vec![a, one]);
            let a = accu(h);
            let step = call(h, operators::CONDITIONAL, vec![pred, plus, a]);
            let a = accu(h);
            let one = lit(h, LiteralValue::Int(CelInt::from(1)));
            let result = call(h, operators::EQUALS, vec![a, one]);
            let cond = call(h, "@step", vec![t]);
            (init, cond, step, result)
        }
        Kind::Map | Kind::Filter => {
            let init = h.next_expr(Expr::List(ListExpr::new(Vec::new())));
            let (filter, elem) = match kind {
                Kind::Filter => (Some(args.remove(0)), h.next_expr(Expr::Ident(var.clone()))),
                _ if args.len() == 2 => {
                    let f = args.remove(0);
                    (Some(f), args.remove(0))
                }
                _ => (None, args.remove(0)),
            };
            // The interpreter appends in place for exactly this `@result + [e]` shape.
            let elem = call(h, "@step", vec![elem]);
            let one = h.next_expr(Expr::List(ListExpr::new(vec![elem])));
            let a = accu(h);
            let add = call(h, operators::ADD, vec![a, one]);
            let step = match filter {
                Some(f) => {
                    let a = accu(h);
                    call(h, operators::CONDITIONAL, vec![f, add, a])
                }
                None => add,
            };
            (init, t, step, accu(h))
        }
    };
    Ok(h.next_expr(Expr::Comprehension(Box::new(ComprehensionExpr {
        iter_range: range,
        iter_var: var,
        iter_var2: None,
        accu_var: ACCU.to_string(),
        accu_init: init,
        loop_cond: cond,
        loop_step: step,
        result,
    }))))
}
