//! The expressions dynamo-lite understands: condition and filter expressions made of
//! `attribute_exists(p)`, `attribute_not_exists(p)` and comparisons (`=`, `<>`, `<`, `<=`, `>`,
//! `>=`) of attributes and `:values`, joined by `AND`, `OR`, `NOT` and parentheses; update
//! expressions of `SET p = operand, ...` and `REMOVE p, ...`. A path is one top-level attribute
//! (a name or a `#name`). Anything else (functions like `begins_with`, nested paths, arithmetic)
//! is refused with a `ValidationException` naming it. That covers what cellgate's write path
//! and CLI send (`attribute_not_exists(pk)`, `#v = :expected`, `#e = :old`, `SET #e = :new`,
//! `#k = :k`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::wire::{Fault, WireItem};

/// `ExpressionAttributeNames` and `ExpressionAttributeValues` of a request.
pub struct Bindings<'a> {
    pub names: Option<&'a Map<String, Value>>,
    pub values: Option<&'a Map<String, Value>>,
}

impl<'a> Bindings<'a> {
    pub fn of(req: &'a Value) -> Self {
        Self {
            names: req
                .get("ExpressionAttributeNames")
                .and_then(Value::as_object),
            values: req
                .get("ExpressionAttributeValues")
                .and_then(Value::as_object),
        }
    }

    fn name(&self, token: &str) -> Result<String, Fault> {
        if token.starts_with('#') {
            self.names
                .and_then(|n| n.get(token))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Fault::validation(format!(
                        "An expression attribute name used in the document path is not defined; attribute name: {token}"
                    ))
                })
        } else if token.contains(['.', '[']) {
            Err(Fault::unsupported(format!("nested paths ({token})")))
        } else {
            Ok(token.to_owned())
        }
    }

    fn value(&self, token: &str) -> Result<Value, Fault> {
        self.values
            .and_then(|v| v.get(token))
            .cloned()
            .ok_or_else(|| {
                Fault::validation(format!(
                    "An expression attribute value used in expression is not defined; attribute value: {token}"
                ))
            })
    }
}

fn tokens(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let single = matches!(c, '(' | ')' | ',' | '=');
        let pair = matches!(c, '<' | '>');
        if c.is_whitespace() || single || pair {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if single {
                out.push(c.to_string());
            } else if pair {
                let mut op = c.to_string();
                if let Some(&n) = chars.peek()
                    && (n == '=' || (c == '<' && n == '>'))
                {
                    op.push(n);
                    chars.next();
                }
                out.push(op);
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Parser<'a, 'b> {
    toks: Vec<String>,
    at: usize,
    b: &'b Bindings<'a>,
    item: Option<&'b WireItem>,
    expr: &'b str,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Result<String, Fault> {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or_else(|| Fault::validation(format!("Invalid expression: {}", self.expr)))?;
        self.at += 1;
        Ok(t)
    }

    fn expect(&mut self, want: &str) -> Result<(), Fault> {
        let t = self.next()?;
        if t == want {
            Ok(())
        } else {
            Err(Fault::validation(format!(
                "Invalid expression: expected {want}, found {t}: {}",
                self.expr
            )))
        }
    }

    fn keyword(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<bool, Fault> {
        let mut v = self.and()?;
        while self.keyword("OR") {
            self.at += 1;
            v |= self.and()?;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, Fault> {
        let mut v = self.not()?;
        while self.keyword("AND") {
            self.at += 1;
            v &= self.not()?;
        }
        Ok(v)
    }

    fn not(&mut self) -> Result<bool, Fault> {
        if self.keyword("NOT") {
            self.at += 1;
            return Ok(!self.not()?);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<bool, Fault> {
        let t = self.next()?;
        if t == "(" {
            let v = self.or()?;
            self.expect(")")?;
            return Ok(v);
        }
        if self.peek() == Some("(") {
            self.at += 1;
            let path = self.next()?;
            self.expect(")")?;
            let present = self.attribute(&path)?.is_some();
            return match t.as_str() {
                "attribute_exists" => Ok(present),
                "attribute_not_exists" => Ok(!present),
                f => Err(Fault::unsupported(format!("the function {f}"))),
            };
        }
        let left = self.operand(&t)?;
        let op = self.next()?;
        let right_tok = self.next()?;
        let right = self.operand(&right_tok)?;
        let (Some(l), Some(r)) = (left, right) else {
            return Ok(false);
        };
        let ord = compare(&l, &r);
        Ok(match op.as_str() {
            "=" => ord == Some(Ordering::Equal),
            "<>" => ord != Some(Ordering::Equal),
            "<" => ord == Some(Ordering::Less),
            "<=" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            ">" => ord == Some(Ordering::Greater),
            ">=" => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            o => return Err(Fault::unsupported(format!("the operator {o}"))),
        })
    }

    fn attribute(&self, path: &str) -> Result<Option<Value>, Fault> {
        let name = self.b.name(path)?;
        Ok(self.item.and_then(|i| i.get(&name)).cloned())
    }

    fn operand(&self, t: &str) -> Result<Option<Value>, Fault> {
        if t.starts_with(':') {
            self.b.value(t).map(Some)
        } else {
            self.attribute(t)
        }
    }
}

/// Orders two wire values of one type (numbers by value); `None` when they cannot be compared.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (
        a.get("N").and_then(Value::as_str),
        b.get("N").and_then(Value::as_str),
    ) {
        let (x, y) = (x.parse::<f64>().ok()?, y.parse::<f64>().ok()?);
        return x.partial_cmp(&y);
    }
    if let (Some(x), Some(y)) = (
        a.get("S").and_then(Value::as_str),
        b.get("S").and_then(Value::as_str),
    ) {
        return Some(x.cmp(y));
    }
    (a == b).then_some(Ordering::Equal)
}

/// Whether `item` (absent: `None`) satisfies `expr`.
pub fn holds(expr: &str, b: &Bindings<'_>, item: Option<&WireItem>) -> Result<bool, Fault> {
    let mut p = Parser {
        toks: tokens(expr),
        at: 0,
        b,
        item,
        expr,
    };
    let v = p.or()?;
    if p.at != p.toks.len() {
        return Err(Fault::validation(format!("Invalid expression: {expr}")));
    }
    Ok(v)
}

/// Applies an update expression to `item` (the key attributes already in it).
pub fn update(expr: &str, b: &Bindings<'_>, item: &mut WireItem) -> Result<(), Fault> {
    let toks = tokens(expr);
    let mut i = 0;
    let mut action = String::new();
    while i < toks.len() {
        let t = &toks[i];
        if t.eq_ignore_ascii_case("SET") || t.eq_ignore_ascii_case("REMOVE") {
            action = t.to_ascii_uppercase();
            i += 1;
            continue;
        }
        if t == "," {
            i += 1;
            continue;
        }
        let name = b.name(t)?;
        match action.as_str() {
            "SET" => {
                if toks.get(i + 1).map(String::as_str) != Some("=") {
                    return Err(Fault::validation(format!(
                        "Invalid UpdateExpression: {expr}"
                    )));
                }
                let operand = toks.get(i + 2).ok_or_else(|| {
                    Fault::validation(format!("Invalid UpdateExpression: {expr}"))
                })?;
                if toks
                    .get(i + 3)
                    .is_some_and(|n| n != "," && !n.eq_ignore_ascii_case("REMOVE"))
                {
                    return Err(Fault::unsupported(format!(
                        "this update expression (only SET p = operand and REMOVE p): {expr}"
                    )));
                }
                let value = if operand.starts_with(':') {
                    b.value(operand)?
                } else {
                    let from = b.name(operand)?;
                    item.get(&from).cloned().ok_or_else(|| {
                        Fault::validation(format!(
                            "The provided expression refers to an attribute that does not exist in the item: {from}"
                        ))
                    })?
                };
                item.insert(name, value);
                i += 3;
            }
            "REMOVE" => {
                item.remove(&name);
                i += 1;
            }
            _ => {
                return Err(Fault::unsupported(format!(
                    "this update expression: {expr}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_forms_cellgate_sends_evaluate_like_dynamodb() {
        let names = json!({"#v": "version", "#e": "epoch"});
        let values = json!({":expected": {"N": "3"}, ":new": {"N": "4"}});
        let b = Bindings {
            names: names.as_object(),
            values: values.as_object(),
        };
        let item: WireItem = json!({"pk": {"S": "x"}, "version": {"N": "3"}})
            .as_object()
            .cloned()
            .unwrap();
        assert!(holds("attribute_not_exists(pk)", &b, None).unwrap());
        assert!(!holds("attribute_not_exists(pk)", &b, Some(&item)).unwrap());
        assert!(holds("#v = :expected", &b, Some(&item)).unwrap());
        assert!(!holds("#v = :expected", &b, None).unwrap());
        assert!(
            holds(
                "NOT (#v <> :expected) AND attribute_exists(pk)",
                &b,
                Some(&item)
            )
            .unwrap()
        );
        assert!(holds("begins_with(pk, :new)", &b, Some(&item)).is_err());
        let mut epoch = WireItem::new();
        update("SET #e = :new", &b, &mut epoch).unwrap();
        assert_eq!(epoch["epoch"], json!({"N": "4"}));
        assert!(update("SET #e = #e + :new", &b, &mut epoch).is_err());
    }
}
