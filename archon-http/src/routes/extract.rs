//! Request extractors whose failures are problem objects naming the field: a
//! JSON body ([`Body`]: size-limited, unknown fields refused, the path of a bad
//! value reported as `jobs[2].timeout`), a query ([`Params`]) and an id in the
//! path ([`PathId`]).

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::Error;

/// A JSON body of type `T`.
#[derive(Debug)]
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or("");
            if !kind.starts_with("application/json") && !kind.contains("+json") {
                return Err(Error::bad("content-type", format!("{kind:?} is not JSON (send application/json)")));
            }
        }
        let limit = state.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| Error::TooLarge { limit })?;
        // No body at all reads as `{}`: a pause needs no note.
        decode(if bytes.is_empty() { b"{}" } else { &bytes }).map(Body)
    }
}

/// Decodes a JSON object (every body this API takes is one), naming the path
/// of the first bad value.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(Error::bad("body", "must be a JSON object ({…})"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {inner}")
        } else {
            // serde_json appends " at line 1 column 12": the field says where.
            let text = inner.to_string();
            text.rsplit_once(" at line ").map_or(text.clone(), |(head, _)| head.to_owned())
        };
        Error::bad(field, message)
    })
}

/// Query parameters of type `T` (its fields are the accepted names; others are
/// refused naming them).
#[derive(Debug)]
pub(crate) struct Params<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Error> {
        Query::<T>::from_request_parts(parts, &()).await.map(|Query(q)| Params(q)).map_err(|e| {
            let text = e.body_text();
            let text = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
            // "foo: unknown field `foo`, expected one of …": name the parameter.
            match text.split_once(": ") {
                Some((name, rest)) if !name.contains(' ') => Error::bad(name, rest),
                _ => Error::bad("query", text),
            }
        })
    }
}

/// Parses an optional query value, naming the parameter on error. Only the
/// value's own spelling is accepted (`succeeded`, not `Succeeded ` or
/// `SUCCEEDED`), as the document's enum lists it.
pub(crate) fn param<T: FromStr + std::fmt::Display>(name: &str, value: Option<&str>) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    value
        .map(|v| match v.parse::<T>() {
            Ok(t) if t.to_string() == v => Ok(t),
            Ok(t) => Err(Error::bad(name, format!("{v:?}: write it as {t:?}", t = t.to_string()))),
            Err(e) => Err(Error::bad(name, e.to_string())),
        })
        .transpose()
}

/// Parses an id (`job-12` or `12`) of the kind `T`, exactly as the document's
/// pattern has it (`^(job-)?[0-9]{1,19}$`): no spaces, no sign, at most 19
/// digits, so every id the pattern admits is one the server reads.
pub(crate) fn id<T: FromStr>(name: &str, raw: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    let digits = raw.rsplit_once('-').map_or(raw, |(_, d)| d);
    let id = raw.parse::<T>().map_err(|e| Error::bad(name, e.to_string()))?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad(
            name,
            format!("{raw:?} is not an id as printed (a prefix such as job- and 1 to 19 digits)"),
        ));
    }
    Ok(id)
}

/// Parses an optional id, naming the parameter on error.
pub(crate) fn id_param<T: FromStr>(name: &str, value: Option<&str>) -> Result<Option<T>, Error>
where
    T::Err: std::fmt::Display,
{
    value.map(|v| id(name, v)).transpose()
}

/// Parses an optional whole number in `range`, naming the parameter and the
/// accepted form on error. Only digits are accepted (no sign, no spaces), as
/// the document's `integer` with its bounds.
pub(crate) fn number<T>(name: &str, value: Option<&str>, range: std::ops::RangeInclusive<T>) -> Result<Option<T>, Error>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    value
        .map(|v| {
            let n = v
                .parse::<T>()
                .ok()
                .filter(|_| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Error::bad(name, format!("{v:?} is not a whole number (e.g. 50)")))?;
            if !range.contains(&n) {
                let (lo, hi) = (range.start(), range.end());
                return Err(Error::bad(name, format!("{n} is out of range ({lo} to {hi})")));
            }
            Ok(n)
        })
        .transpose()
}

/// An RFC 3339 instant (any offset), naming the field on error.
pub(crate) fn instant(name: &str, value: &str) -> Result<archon_core::model::Timestamp, Error> {
    super::rfc3339::parse(value)
        .ok_or_else(|| Error::bad(name, format!("{value:?} is not an RFC 3339 instant (e.g. 2026-12-01T10:00:00Z)")))
}

/// An id in the path (`job-12` or `12`), of the kind `T`, as [`id`] reads it.
#[derive(Debug)]
pub(crate) struct PathId<T>(pub T);

impl<T> FromRequestParts<AppState> for PathId<T>
where
    T: FromStr + Send,
    T::Err: std::fmt::Display,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::bad("id", e.body_text()))?;
        id("id", &raw).map(PathId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobDraft;

    fn field_of(json: &str) -> (String, String) {
        match decode::<JobDraft>(json.as_bytes()) {
            Err(Error::BadRequest { field, message }) => (field, message),
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn bad_bodies_name_the_field_and_what_was_expected() {
        assert_eq!(
            field_of(r#"{"command": 5}"#),
            ("command".into(), "invalid type: integer `5`, expected a string".into())
        );
        let (field, message) = field_of(r#"{"command": "x", "tiemout": "5s"}"#);
        assert_eq!(field, "tiemout");
        assert!(message.starts_with("unknown field `tiemout`, expected one of"), "{message}");
        // Broken JSON names where it broke.
        let (field, message) = field_of(r#"{"command": "#);
        assert_eq!(field, "command");
        assert!(message.starts_with("not valid JSON"), "{message}");
        assert_eq!(field_of(r#"{"docker": {"image": 1}}"#).0, "docker.image");
        assert_eq!(field_of(r#"{"env": {"A": 1}}"#).0, "env.A");
        assert_eq!(field_of("[1]").0, "body");
    }
}
