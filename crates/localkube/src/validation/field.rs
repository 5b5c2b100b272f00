//! Field errors as apimachinery's `util/validation/field` has them: the type of each error
//! (its `reason`), the bad value as Go prints it, the error's text and `StatusCause`, and what
//! a validator collects.

use serde_json::Value;

use super::content;
use crate::error::Cause;

/// `field.ErrorType`: the cause's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
}

impl ErrorType {
    /// The `reason` of a `StatusCause`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
        }
    }

    /// The canonical text (`ErrorType.String()`).
    pub fn text(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
        }
    }
}

/// The offending value, as Go's `fmt` would print it in `ErrorBody`.
#[derive(Debug, Clone, PartialEq)]
pub enum Bad {
    /// No value shown (Required, Forbidden, TooLong).
    None,
    /// A string, shown quoted (`%q`).
    Str(String),
    /// A number or boolean, shown plain.
    Plain(String),
    /// Already rendered as Go's `%#v` would (maps, structs, slices).
    Go(String),
}

impl Bad {
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    pub fn int(n: i64) -> Self {
        Self::Plain(n.to_string())
    }

    /// A JSON scalar as the Go type kube-apiserver decoded it into.
    pub fn json(v: &Value) -> Self {
        match v {
            Value::String(s) => Self::Str(s.clone()),
            Value::Null => Self::Plain("null".into()),
            other => Self::Plain(other.to_string()),
        }
    }
}

/// One field error (`field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub type_: ErrorType,
    pub field: String,
    pub value: Bad,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        Self {
            type_: ErrorType::Required,
            field: field.into(),
            value: Bad::None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: Bad, detail: impl Into<String>) -> Self {
        Self {
            type_: ErrorType::Invalid,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: Bad) -> Self {
        Self {
            type_: ErrorType::Duplicate,
            field: field.into(),
            value,
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: Bad) -> Self {
        Self {
            type_: ErrorType::NotFound,
            field: field.into(),
            value,
            detail: String::new(),
        }
    }

    /// `field.NotSupported`: the detail lists the supported values, quoted.
    pub fn not_supported(field: impl Into<String>, value: Bad, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let q: Vec<String> = supported.iter().map(|s| content::go_quote(s)).collect();
            format!("supported values: {}", q.join(", "))
        };
        Self {
            type_: ErrorType::NotSupported,
            field: field.into(),
            value,
            detail,
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            type_: ErrorType::Forbidden,
            field: field.into(),
            value: Bad::None,
            detail: detail.into(),
        }
    }

    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self {
            type_: ErrorType::TooLong,
            field: field.into(),
            value: Bad::None,
            detail: format!("must have at most {max_bytes} bytes"),
        }
    }

    /// `ErrorBody()`: the message without the field.
    pub fn body(&self) -> String {
        let mut s = match (&self.type_, &self.value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _)
            | (_, Bad::None) => self.type_.text().to_string(),
            (t, Bad::Str(v)) => format!("{}: {}", t.text(), content::go_quote(v)),
            (t, Bad::Plain(v) | Bad::Go(v)) => format!("{}: {v}", t.text()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The `StatusCause` of this error.
    pub fn cause(&self) -> Cause {
        Cause {
            reason: self.type_.reason().into(),
            field: self.field.clone(),
            message: self.body(),
        }
    }

    /// `Error()`: `field: body`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

/// A failure of the decoding step (400 BadRequest `... cannot be handled as a Kind: ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError(pub String);

/// What a validator collects.
#[derive(Debug, Default)]
pub struct Errors {
    pub fields: Vec<FieldError>,
    pub decode: Option<DecodeError>,
}

impl Errors {
    pub fn push(&mut self, e: FieldError) {
        self.fields.push(e);
    }

    pub fn extend(&mut self, es: impl IntoIterator<Item = FieldError>) {
        self.fields.extend(es);
    }

    /// Records a decode failure (the first one wins, as decoding stops there).
    pub fn decode(&mut self, msg: impl Into<String>) {
        if self.decode.is_none() {
            self.decode = Some(DecodeError(msg.into()));
        }
    }
}
