//! Renders metric queries the way Flagger does: Go `text/template` executed with no data (`.` is
//! nil), `missingkey=error`, and the canary's values as *functions* (`{{ namespace }}`,
//! `{{ target }}`, `{{ variables.key }}`, ...).
//!
//! This is the subset of Go's template language that queries use: text, comments, whitespace
//! trimming (`{{-`, `-}}`), pipelines (`a | b`), function calls with arguments, field chains on
//! maps (`variables.key`, `$v.key`, `(variables).key`), variables (`$x := ...`, `$x = ...`),
//! string, raw-string, number and boolean literals, and the builtins `printf`, `print`,
//! `println`, `index`, `len`, `urlquery`, `eq`, `ne`, `not`, `and`, `or`. Control structures
//! (`if`, `range`, `with`, `define`, `template`, `block`) are refused with a clear error instead
//! of being rendered wrongly. (The `gtmpl` crate was considered: its functions are plain `fn`
//! pointers, which cannot carry a canary's values, and it has no field chains on function
//! results.)

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The values a query can use, as Flagger's template functions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    pub namespace: String,
    pub target: String,
    pub service: String,
    pub ingress: String,
    pub route: String,
    pub interval: String,
    pub variables: BTreeMap<String, String>,
}

/// Renders `template` with `model`. The error says what went wrong and where, as Go's does
/// (`template: query:1:5: ...`).
pub fn render(template: &str, model: &Model) -> Result<String, String> {
    let parts = split(template)?;
    let mut out = String::new();
    let mut vars: BTreeMap<String, Value> = BTreeMap::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Action { line, body } => {
                let mut p = Parser::new(&body, line);
                let action = p.action()?;
                let mut ev = Eval {
                    model,
                    vars: &mut vars,
                    line,
                };
                if let Some(v) = ev.action(&action)? {
                    out.push_str(&v.to_string());
                }
            }
        }
    }
    Ok(out)
}

// === lexing the text ===

enum Part {
    Text(String),
    Action { line: usize, body: String },
}

/// Splits the template into text and actions, applying `{{-` / `-}}` trimming and dropping
/// comments.
fn split(src: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            parts.push(Part::Text(text.to_string()));
            break;
        };
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        line += rest[..start].matches('\n').count();
        let mut inner = &rest[start + 2..];
        // `{{- ` trims the text before; the dash must be followed by a space.
        if let Some(after) = inner.strip_prefix('-')
            && after.starts_with(|c: char| c.is_ascii_whitespace())
        {
            text = text.trim_end();
            inner = after;
        }
        parts.push(Part::Text(text.to_string()));
        let (body, after_action) = action_body(inner, line)?;
        line += rest[start..rest.len() - after_action.len()]
            .matches('\n')
            .count();
        let mut body = body.to_string();
        trim_next = false;
        if let Some(b) = body.strip_suffix('-')
            && b.ends_with(|c: char| c.is_ascii_whitespace())
        {
            body = b.to_string();
            trim_next = true;
        }
        let trimmed = body.trim();
        if let Some(comment) = trimmed.strip_prefix("/*") {
            if !comment.ends_with("*/") {
                return Err(format!("template: query:{line}: unclosed comment"));
            }
        } else {
            parts.push(Part::Action { line, body });
        }
        rest = after_action;
    }
    Ok(parts)
}

/// The text of one action up to its closing `}}` (quotes respected), and what follows it.
fn action_body(s: &str, line: usize) -> Result<(&str, &str), String> {
    // A comment may hold anything, quotes included, up to `*/`.
    if s.trim_start().starts_with("/*") {
        let end = s
            .find("*/")
            .ok_or_else(|| format!("template: query:{line}: unclosed comment"))?;
        let close = s[end..]
            .find("}}")
            .ok_or_else(|| format!("template: query:{line}: unclosed action"))?;
        return Ok((&s[..end + close], &s[end + close + 2..]));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q != b'`' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => {
                if b == b'"' || b == b'`' || b == b'\'' {
                    quote = Some(b);
                } else if bytes[i..].starts_with(b"}}") {
                    return Ok((&s[..i], &s[i + 2..]));
                }
            }
        }
        i += 1;
    }
    Err(format!("template: query:{line}: unclosed action"))
}

// === parsing an action ===

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Var(String),
    Str(String),
    Int(i64),
    Float(f64),
    Declare,
    Assign,
    Pipe,
    Open,
    Close,
    Dot,
}

fn tokens(body: &str, line: usize) -> Result<Vec<Tok>, String> {
    let err = |m: String| format!("template: query:{line}: {m}");
    let chars: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            '$' => {
                i += 1;
                out.push(Tok::Var(word(&mut i)));
            }
            '.' => {
                i += 1;
                if chars.get(i).is_some_and(|c| c.is_alphabetic() || *c == '_') {
                    out.push(Tok::Field(word(&mut i)));
                } else if chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(err("numbers must not start with a dot".into()));
                } else {
                    out.push(Tok::Dot);
                }
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated quoted string".into())),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            s.push(match chars.get(i) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some('\'') => '\'',
                                Some(other) => {
                                    return Err(err(format!("unknown escape sequence \\{other}")));
                                }
                                None => return Err(err("unterminated quoted string".into())),
                            });
                        }
                        Some(c) => s.push(*c),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(s));
            }
            '`' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(err("unterminated raw quoted string".into()));
                }
                out.push(Tok::Str(chars[start..i].iter().collect()));
                i += 1;
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '+') && next_is_digit(&chars, i)) => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if let Ok(n) = text.parse::<i64>() {
                    out.push(Tok::Int(n));
                } else if let Ok(f) = text.parse::<f64>() {
                    out.push(Tok::Float(f));
                } else {
                    return Err(err(format!("bad number syntax: {text:?}")));
                }
            }
            c if c.is_alphabetic() || c == '_' => out.push(Tok::Ident(word(&mut i))),
            other => return Err(err(format!("unexpected {other:?} in command"))),
        }
    }
    Ok(out)
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(|c| c.is_ascii_digit())
}

#[derive(Clone, Debug, PartialEq)]
enum Action {
    Output(Pipeline),
    Declare(String, Pipeline),
    Assign(String, Pipeline),
}

type Pipeline = Vec<Command>;

#[derive(Clone, Debug, PartialEq)]
struct Command {
    operands: Vec<Operand>,
}

#[derive(Clone, Debug, PartialEq)]
struct Operand {
    term: Term,
    fields: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Func(String),
    Var(String),
    Dot,
    Literal(Value),
    Paren(Pipeline),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    line: usize,
    body: String,
}

const CONTROL: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

impl Parser {
    fn new(body: &str, line: usize) -> Self {
        Self {
            toks: Vec::new(),
            pos: 0,
            line,
            body: body.trim().to_string(),
        }
    }

    fn err(&self, m: impl std::fmt::Display) -> String {
        format!(
            "template: query:{}: {m} in {{{{{}}}}}",
            self.line, self.body
        )
    }

    fn action(&mut self) -> Result<Action, String> {
        self.toks = tokens(&self.body, self.line)?;
        if self.toks.is_empty() {
            return Err(self.err("missing value for command"));
        }
        if let Some(Tok::Ident(k)) = self.toks.first()
            && CONTROL.contains(&k.as_str())
        {
            return Err(self.err(format!(
                "`{k}` actions are not supported by flagger-rs query templates (supported: \
                 functions, pipelines, printf, index and variables)"
            )));
        }
        let action = match (self.toks.first(), self.toks.get(1)) {
            (Some(Tok::Var(v)), Some(Tok::Declare)) => {
                let v = v.clone();
                self.pos = 2;
                Action::Declare(v, self.pipeline()?)
            }
            (Some(Tok::Var(v)), Some(Tok::Assign)) => {
                let v = v.clone();
                self.pos = 2;
                Action::Assign(v, self.pipeline()?)
            }
            _ => Action::Output(self.pipeline()?),
        };
        if self.pos < self.toks.len() {
            return Err(self.err(format!("unexpected {:?}", self.toks[self.pos])));
        }
        Ok(action)
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut cmds = vec![self.command()?];
        while self.toks.get(self.pos) == Some(&Tok::Pipe) {
            self.pos += 1;
            cmds.push(self.command()?);
        }
        Ok(cmds)
    }

    fn command(&mut self) -> Result<Command, String> {
        let mut operands = Vec::new();
        while let Some(tok) = self.toks.get(self.pos) {
            if matches!(tok, Tok::Pipe | Tok::Close) {
                break;
            }
            operands.push(self.operand()?);
        }
        if operands.is_empty() {
            return Err(self.err("missing value for command"));
        }
        Ok(Command { operands })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let tok = self.toks[self.pos].clone();
        self.pos += 1;
        let mut fields = Vec::new();
        let term = match tok {
            Tok::Ident(name) => match name.as_str() {
                "true" => Term::Literal(Value::Bool(true)),
                "false" => Term::Literal(Value::Bool(false)),
                "nil" => Term::Literal(Value::Nil),
                _ => Term::Func(name),
            },
            Tok::Var(v) => Term::Var(v),
            Tok::Dot => Term::Dot,
            Tok::Field(f) => {
                fields.push(f);
                Term::Dot
            }
            Tok::Str(s) => Term::Literal(Value::Str(s)),
            Tok::Int(n) => Term::Literal(Value::Int(n)),
            Tok::Float(f) => Term::Literal(Value::Float(f)),
            Tok::Open => {
                let p = self.pipeline()?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return Err(self.err("unclosed left paren"));
                }
                self.pos += 1;
                Term::Paren(p)
            }
            other => return Err(self.err(format!("unexpected {other:?}"))),
        };
        while let Some(Tok::Field(f)) = self.toks.get(self.pos) {
            fields.push(f.clone());
            self.pos += 1;
        }
        Ok(Operand { term, fields })
    }
}

// === evaluating ===

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(BTreeMap<String, String>),
}

impl Value {
    /// The Go type's name, as text/template's errors give it.
    fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }
}

impl std::fmt::Display for Value {
    /// Go's `%v` (and what an action prints).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("<no value>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => f.write_str(&go_float_g(*x, None)),
            Value::Str(s) => f.write_str(s),
            Value::Map(m) => {
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

struct Eval<'a> {
    model: &'a Model,
    vars: &'a mut BTreeMap<String, Value>,
    line: usize,
}

impl Eval<'_> {
    fn err(&self, m: impl std::fmt::Display) -> String {
        format!("template: query:{}: {m}", self.line)
    }

    fn action(&mut self, action: &Action) -> Result<Option<Value>, String> {
        match action {
            Action::Output(p) => self.pipeline(p).map(Some),
            Action::Declare(v, p) => {
                let value = self.pipeline(p)?;
                self.vars.insert(v.clone(), value);
                Ok(None)
            }
            Action::Assign(v, p) => {
                if !self.vars.contains_key(v) {
                    return Err(self.err(format!("undefined variable: ${v}")));
                }
                let value = self.pipeline(p)?;
                self.vars.insert(v.clone(), value);
                Ok(None)
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline) -> Result<Value, String> {
        let mut piped: Option<Value> = None;
        for cmd in p {
            piped = Some(self.command(cmd, piped.take())?);
        }
        piped.ok_or_else(|| self.err("empty pipeline"))
    }

    fn command(&mut self, cmd: &Command, piped: Option<Value>) -> Result<Value, String> {
        let first = &cmd.operands[0];
        if let Term::Func(name) = &first.term
            && first.fields.is_empty()
        {
            let mut args = Vec::with_capacity(cmd.operands.len());
            for op in &cmd.operands[1..] {
                args.push(self.operand(op)?);
            }
            args.extend(piped);
            return self.call(name, args);
        }
        if cmd.operands.len() > 1 || piped.is_some() {
            return Err(self.err(format!(
                "can't give argument to non-function {}",
                describe(first)
            )));
        }
        self.operand(first)
    }

    fn operand(&mut self, op: &Operand) -> Result<Value, String> {
        let mut value = match &op.term {
            Term::Func(name) => self.call(name, Vec::new())?,
            Term::Var(v) if v.is_empty() => Value::Nil,
            Term::Var(v) => self
                .vars
                .get(v)
                .cloned()
                .ok_or_else(|| self.err(format!("undefined variable: ${v}")))?,
            Term::Dot => Value::Nil,
            Term::Literal(v) => v.clone(),
            Term::Paren(p) => self.pipeline(p)?,
        };
        for field in &op.fields {
            value = match value {
                Value::Map(m) => match m.get(field) {
                    Some(v) => Value::Str(v.clone()),
                    None => {
                        return Err(self.err(format!(
                            "executing \"query\": map has no entry for key \"{field}\""
                        )));
                    }
                },
                Value::Nil => {
                    return Err(self.err(format!(
                        "can't evaluate field {field}: queries are rendered with no data; use \
                         the functions {{{{ name }}}}, {{{{ namespace }}}}, {{{{ target }}}}, \
                         {{{{ service }}}}, {{{{ ingress }}}}, {{{{ route }}}}, \
                         {{{{ interval }}}} and {{{{ variables.{field} }}}}"
                    )));
                }
                other => {
                    return Err(self.err(format!(
                        "can't evaluate field {field} in type {}",
                        other.go_type()
                    )));
                }
            };
        }
        Ok(value)
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        let m = self.model;
        let niladic = |v: &str| -> Result<Value, String> {
            if args.is_empty() {
                Ok(Value::Str(v.to_string()))
            } else {
                Err(self.err(format!(
                    "wrong number of args for {name}: want 0 got {}",
                    args.len()
                )))
            }
        };
        match name {
            "name" => niladic(&m.name),
            "namespace" => niladic(&m.namespace),
            "target" => niladic(&m.target),
            "service" => niladic(&m.service),
            "ingress" => niladic(&m.ingress),
            "route" => niladic(&m.route),
            "interval" => niladic(&m.interval),
            "variables" => {
                if args.is_empty() {
                    Ok(Value::Map(m.variables.clone()))
                } else {
                    Err(self.err(format!(
                        "wrong number of args for variables: want 0 got {}",
                        args.len()
                    )))
                }
            }
            "printf" => {
                let Some((Value::Str(format), rest)) = args.split_first() else {
                    return Err(self.err("printf needs a format string"));
                };
                Ok(Value::Str(sprintf(format, rest)))
            }
            "print" => Ok(Value::Str(sprint(&args))),
            "println" => {
                let s: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                Ok(Value::Str(format!("{}\n", s.join(" "))))
            }
            "index" => {
                let Some((first, keys)) = args.split_first() else {
                    return Err(self.err("wrong number of args for index: want at least 1 got 0"));
                };
                let mut v = first.clone();
                for k in keys {
                    v = match (&v, k) {
                        (Value::Map(map), Value::Str(key)) => match map.get(key) {
                            Some(s) => Value::Str(s.clone()),
                            // Go's index returns the zero value for a missing key.
                            None => Value::Str(String::new()),
                        },
                        (Value::Str(s), Value::Int(i)) => {
                            match usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i)) {
                                Some(b) => Value::Int(i64::from(*b)),
                                None => {
                                    return Err(self.err(format!(
                                        "error calling index: index out of range: {i}"
                                    )));
                                }
                            }
                        }
                        _ => {
                            return Err(self.err(format!(
                                "error calling index: can't index item of type {} with {}",
                                v.go_type(),
                                k.go_type()
                            )));
                        }
                    };
                }
                Ok(v)
            }
            "len" => match args.as_slice() {
                [Value::Str(s)] => Ok(Value::Int(s.len() as i64)),
                [Value::Map(m)] => Ok(Value::Int(m.len() as i64)),
                _ => Err(self.err("error calling len: len of a non-string, non-map value")),
            },
            "urlquery" => Ok(Value::Str(
                url_query_escape(&sprint(&args)).replace("%20", "+"),
            )),
            "not" => match args.as_slice() {
                [v] => Ok(Value::Bool(!v.truthy())),
                _ => Err(self.err(format!(
                    "wrong number of args for not: want 1 got {}",
                    args.len()
                ))),
            },
            "and" => Ok(args
                .iter()
                .find(|a| !a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Nil)),
            "or" => Ok(args
                .iter()
                .find(|a| a.truthy())
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Nil)),
            "eq" | "ne" => match args.split_first() {
                Some((first, rest)) if !rest.is_empty() => {
                    let eq = rest.iter().any(|r| loose_eq(first, r));
                    Ok(Value::Bool(if name == "eq" { eq } else { !eq }))
                }
                _ => Err(self.err(format!("missing argument for comparison {name}"))),
            },
            other => Err(self.err(format!("function \"{other}\" not defined"))),
        }
    }
}

fn describe(op: &Operand) -> String {
    match &op.term {
        Term::Var(v) => format!("${v}"),
        Term::Literal(v) => v.to_string(),
        Term::Dot => ".".into(),
        Term::Func(f) => f.clone(),
        Term::Paren(_) => "(...)".into(),
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_string());
    }
    out
}

fn url_query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Go's `%g`/`%v` for floats: shortest representation, exponent form for large and small values.
fn go_float_g(x: f64, precision: Option<usize>) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = match precision {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), x),
        None => format!("{x:e}"),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let limit = precision.map(|p| p as i32).unwrap_or(21);
    if exp < -4 || exp >= limit {
        let mantissa = if precision.is_some() && mantissa.contains('.') {
            mantissa.trim_end_matches('0').trim_end_matches('.')
        } else {
            mantissa
        };
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let digits = mantissa.trim_start_matches('-').replace('.', "").len() as i32;
        let decimals = (digits - 1 - exp).max(0) as usize;
        let f = format!("{x:.decimals$}");
        if f.contains('.') {
            f.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            f
        }
    }
}

/// Go's `fmt.Sprintf` for the verbs queries use: `%s %v %d %f %g %e %q %t %x %%`, with flags,
/// width and precision.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut zero = false;
        let mut plus = false;
        while let Some(f) = chars.get(i) {
            match f {
                '-' => minus = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            i += 1;
        }
        let mut width = None;
        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
            width = Some(width.unwrap_or(0) * 10 + d as usize);
            i += 1;
        }
        let mut precision = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = 0;
            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                i += 1;
            }
            precision = Some(p);
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let body = match (verb, arg) {
            ('v' | 's', Value::Float(x)) if verb == 'v' => go_float_g(*x, None),
            ('s' | 'v', v) => {
                let s = v.to_string();
                match precision {
                    Some(p) if verb == 's' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            ('d', Value::Int(n)) => {
                if plus && *n >= 0 {
                    format!("+{n}")
                } else {
                    n.to_string()
                }
            }
            ('f' | 'F', Value::Float(x)) => format!("{:.*}", precision.unwrap_or(6), x),
            ('f' | 'F', Value::Int(n)) => format!("%!f(int={n})"),
            ('g', Value::Float(x)) => go_float_g(*x, precision),
            ('e', Value::Float(x)) => {
                let s = format!("{:.*e}", precision.unwrap_or(6), x);
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                let e: i32 = e.parse().unwrap_or(0);
                format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            }
            ('q', Value::Str(s)) => format!("{s:?}"),
            ('t', Value::Bool(b)) => b.to_string(),
            ('x', Value::Int(n)) => format!("{n:x}"),
            ('x', Value::Str(s)) => s.bytes().fold(String::new(), |mut o, b| {
                let _ = write!(o, "{b:02x}");
                o
            }),
            (verb, other) => format!("%!{verb}({})", go_type(other)),
        };
        let pad = width.unwrap_or(0).saturating_sub(body.chars().count());
        if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && matches!(arg, Value::Int(_) | Value::Float(_)) {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
    }
    let extra: Vec<&Value> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        let list: Vec<String> = extra
            .iter()
            .map(|v| format!("{}={v}", go_type(v)))
            .collect();
        out.push_str(&list.join(", "));
        out.push(')');
    }
    out
}

fn go_type(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".into(),
        Value::Bool(b) => format!("bool={b}"),
        Value::Int(n) => format!("int={n}"),
        Value::Float(x) => format!("float64={}", go_float_g(*x, None)),
        Value::Str(s) => format!("string={s}"),
        Value::Map(_) => format!("map[string]string={v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo-route".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([
                ("reporter".into(), "destination".into()),
                ("threshold".into(), "5".into()),
            ]),
        }
    }

    fn ok(t: &str) -> String {
        render(t, &model()).unwrap_or_else(|e| panic!("{t:?}: {e}"))
    }

    fn fails(t: &str) -> String {
        match render(t, &model()) {
            Ok(s) => panic!("{t:?} rendered {s:?}, expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn renders_every_flagger_function() {
        assert_eq!(
            ok(
                "{{ name }} {{ namespace }} {{ target }} {{ service }} {{ ingress }} {{ route }} {{ interval }}"
            ),
            "podinfo test podinfo podinfo-svc podinfo-ing podinfo-route 1m"
        );
    }

    #[test]
    fn renders_a_flagger_style_query() {
        let q = r#"sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[{{ interval }}]))"#;
        assert_eq!(
            ok(q),
            r#"sum(rate(http_requests_total{namespace="test",pod=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",status!~"5.*"}[1m]))"#
        );
    }

    #[test]
    fn template_variables_are_fields_of_the_variables_function() {
        assert_eq!(ok("{{ variables.reporter }}"), "destination");
        assert_eq!(ok("{{variables.threshold}}"), "5");
        assert_eq!(ok("{{ (variables).reporter }}"), "destination");
        assert_eq!(ok(r#"{{ index variables "reporter" }}"#), "destination");
        assert_eq!(ok(r#"{{ variables | len }}"#), "2");
    }

    #[test]
    fn a_missing_variable_is_a_render_error() {
        let e = fails("x{{ variables.missing }}");
        assert!(e.contains(r#"map has no entry for key "missing""#), "{e}");
    }

    #[test]
    fn dot_fields_are_an_error_that_names_the_functions() {
        let e = fails("{{ .Namespace }}");
        assert!(e.contains("can't evaluate field Namespace"), "{e}");
        assert!(e.contains("{{ namespace }}"), "{e}");
    }

    #[test]
    fn unknown_functions_and_bad_syntax_are_errors() {
        assert!(fails("{{ nope }}").contains(r#"function "nope" not defined"#));
        assert!(fails("{{ name ").contains("unclosed action"));
        assert!(fails("{{ }}").contains("missing value for command"));
        assert!(fails(r#"{{ "abc }}"#).contains("unclosed action"));
        assert!(fails("{{ name 1 }}").contains("wrong number of args for name"));
        assert!(fails("{{ if name }}x{{ end }}").contains("`if` actions are not supported"));
        assert!(fails("{{ $x }}").contains("undefined variable: $x"));
        assert!(fails("{{ (name }}").contains("unclosed left paren"));
        assert!(fails(r#"{{ "a" "b" }}"#).contains("can't give argument to non-function"));
    }

    #[test]
    fn pipelines_printf_and_variables() {
        assert_eq!(ok(r#"{{ printf "%s-%s" namespace name }}"#), "test-podinfo");
        assert_eq!(ok(r#"{{ name | printf "%s-primary" }}"#), "podinfo-primary");
        assert_eq!(
            ok(r#"{{ $t := target }}{{ $t }}-{{ $t }}"#),
            "podinfo-podinfo"
        );
        assert_eq!(ok(r#"{{ $t := target }}{{ $t = "x" }}{{ $t }}"#), "x");
        assert_eq!(
            ok(r#"{{ $v := variables }}{{ $v.reporter }}"#),
            "destination"
        );
        assert_eq!(ok(r#"{{ printf "%d%%" 5 }}"#), "5%");
        assert_eq!(ok(r#"{{ printf "%.2f" 0.5 }}"#), "0.50");
        assert_eq!(ok(r#"{{ printf "%q" name }}"#), r#""podinfo""#);
        assert_eq!(ok(r#"{{ printf "%05d|%-4s|" 42 "ab" }}"#), "00042|ab  |");
        assert_eq!(ok(r#"{{ printf "%v %v" 1.5 true }}"#), "1.5 true");
        assert_eq!(ok(r#"{{ printf "%s" }}"#), "%!s(MISSING)");
        assert_eq!(ok(r#"{{ print 1 2 "a" }}"#), "1 2a");
        assert_eq!(ok(r#"{{ urlquery "a b&c" }}"#), "a+b%26c");
        assert_eq!(ok(r#"{{ `raw "q"` }}"#), r#"raw "q""#);
        assert_eq!(ok(r#"{{ eq name "podinfo" }} {{ ne 1 2 }}"#), "true true");
        assert_eq!(ok("{{ . }}"), "<no value>");
    }

    #[test]
    fn whitespace_trimming_and_comments() {
        assert_eq!(ok("a  {{- name -}}  b"), "apodinfob");
        assert_eq!(ok("a {{/* a comment */}}b"), "a b");
        assert_eq!(ok(r#"a{{/* don't "quote" }} */}}b"#), "ab");
        assert_eq!(ok("a \n {{- /* trimmed */ -}} \n b"), "ab");
        assert_eq!(ok("{{-3}}"), "-3");
        assert_eq!(ok("x{{ name }}\n  y"), "xpodinfo\n  y");
        assert_eq!(ok("no actions"), "no actions");
        assert_eq!(ok(""), "");
    }

    #[test]
    fn errors_carry_the_line() {
        let e = fails("sum(\n  x{{ nope }})");
        assert!(e.starts_with("template: query:2:"), "{e}");
    }

    proptest::proptest! {
        /// Any text made of template-ish pieces renders or fails with a message; never panics.
        #[test]
        fn never_panics_on_arbitrary_templates(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{{", "}}", "{{-", "-}}", " ", "\n", "name", "variables", ".", ".reporter",
                    "$x", ":=", "=", "|", "(", ")", "\"", "`", "'", "printf", "\"%s\"",
                    "index", "1", "-2", "1.5", "/*", "*/", "if", "é", "\\", "nil", "true",
                ]),
                0..24,
            )
        ) {
            let t: String = pieces.concat();
            let _ = render(&t, &model());
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for t in [
            "{{",
            "}}",
            "{{{{",
            "{{-}}",
            "{{ - }}",
            "{{ $ }}",
            "{{ :=",
            "{{ $x := }}",
            "{{ | }}",
            "{{ ( }}",
            "{{ ) }}",
            "{{ 1.2.3 }}",
            "{{ \"\\q\" }}",
            "{{ `x }}",
            "{{ .1 }}",
            "{{ index }}",
            "{{ index name 99 }}",
            "{{ printf }}",
            "{{ printf 1 }}",
            "{{ len 1 }}",
            "{{ é }}",
            "{{ name.x }}",
            "{{ '\\'' }}",
            "{{/* x }}",
        ] {
            let _ = render(t, &model());
        }
    }
}
