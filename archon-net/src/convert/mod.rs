//! Conversions between archon-core's model and the `archon.v1` protobuf messages.
//!
//! Model → proto is total ([`From`]); proto → model is [`TryFrom`] and fails with
//! [`Error::InvalidArgument`] naming the offending field as a path
//! (`spec.task`, `attempts[2].result.status`) — never a panic. The wire keeps
//! durations in whole milliseconds, so sub-millisecond parts of a `Duration` are
//! dropped; everything else round-trips exactly. Absent optional messages read as
//! the model's serde defaults (resources, retry policy, output tails).

mod api;
mod job;
mod run;
mod session;
mod token;
mod worker;
mod workflow;

use std::time::Duration;

pub(crate) use token::token_id;

use archon_core::Error;
use archon_core::model::Timestamp;

/// `value`, or an error saying `field` is required.
pub(crate) fn required<T>(value: Option<T>, field: &str) -> Result<T, Error> {
    value.ok_or_else(|| Error::invalid(field, "is required"))
}

/// Prefixes the field path of a conversion error with where it happened.
pub(crate) trait At<T> {
    /// Names `field` as the parent of whatever field the error names.
    fn at(self, field: &str) -> Result<T, Error>;
}

impl<T> At<T> for Result<T, Error> {
    fn at(self, parent: &str) -> Result<T, Error> {
        self.map_err(|e| within(parent, e))
    }
}

/// `e` with `parent` prefixed to the field it names.
pub(crate) fn within(parent: &str, e: Error) -> Error {
    match e {
        Error::InvalidArgument { field, message } => Error::InvalidArgument { field: join(parent, &field), message },
        other => other,
    }
}

fn join(parent: &str, field: &str) -> String {
    match (parent.is_empty(), field.is_empty() || field.starts_with('[')) {
        (true, _) => field.to_owned(),
        (false, true) => format!("{parent}{field}"),
        (false, false) => format!("{parent}.{field}"),
    }
}

/// Converts every item of a repeated field, naming the index of a bad one.
pub(crate) fn each<P, M>(items: Vec<P>, field: &str) -> Result<Vec<M>, Error>
where
    M: TryFrom<P, Error = Error>,
{
    items.into_iter().enumerate().map(|(i, item)| M::try_from(item).at(&format!("{field}[{i}]"))).collect()
}

/// Converts a required message field.
pub(crate) fn message<P, M>(value: Option<P>, field: &str) -> Result<M, Error>
where
    M: TryFrom<P, Error = Error>,
{
    M::try_from(required(value, field)?).at(field)
}

/// Converts an optional message field.
pub(crate) fn optional<P, M>(value: Option<P>, field: &str) -> Result<Option<M>, Error>
where
    M: TryFrom<P, Error = Error>,
{
    value.map(|v| M::try_from(v).at(field)).transpose()
}

/// A model enum with a protobuf twin whose zero value is `UNSPECIFIED`.
pub(crate) trait ProtoEnum: Sized {
    /// The generated enum.
    type Proto: TryFrom<i32>;
    /// The model value, `None` for `UNSPECIFIED`.
    fn from_proto(value: Self::Proto) -> Option<Self>;
    /// The wire value.
    fn to_wire(self) -> i32;
}

fn known<M: ProtoEnum>(value: i32, field: &str) -> Result<Option<M>, Error> {
    let proto = M::Proto::try_from(value)
        .map_err(|_| Error::invalid(field, format!("{value} is not a known value of this enum")))?;
    Ok(M::from_proto(proto))
}

/// A required enum field: `UNSPECIFIED` and unknown values are errors.
pub(crate) fn enum_required<M: ProtoEnum>(value: i32, field: &str) -> Result<M, Error> {
    known(value, field)?.ok_or_else(|| Error::invalid(field, "is required"))
}

/// An optional enum field: `UNSPECIFIED` is `None`, unknown values are errors.
pub(crate) fn enum_optional<M: ProtoEnum>(value: i32, field: &str) -> Result<Option<M>, Error> {
    known(value, field)
}

/// An enum field with a default: `UNSPECIFIED` is the model's default.
pub(crate) fn enum_or_default<M: ProtoEnum + Default>(value: i32, field: &str) -> Result<M, Error> {
    Ok(known(value, field)?.unwrap_or_default())
}

/// Implements [`ProtoEnum`] and model → proto for a pair of enums, variant by variant.
macro_rules! proto_enum {
    ($model:ty => $proto:ident { $($variant:ident),+ $(,)? }) => {
        impl From<$model> for crate::proto::$proto {
            fn from(value: $model) -> Self {
                type M = $model;
                match value {
                    $(M::$variant => crate::proto::$proto::$variant,)+
                }
            }
        }

        impl crate::convert::ProtoEnum for $model {
            type Proto = crate::proto::$proto;

            fn from_proto(value: crate::proto::$proto) -> Option<Self> {
                type M = $model;
                match value {
                    crate::proto::$proto::Unspecified => None,
                    $(crate::proto::$proto::$variant => Some(M::$variant),)+
                }
            }

            fn to_wire(self) -> i32 {
                crate::proto::$proto::from(self) as i32
            }
        }
    };
}
pub(crate) use proto_enum;

/// A duration as whole milliseconds (saturating).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds as a duration.
pub(crate) fn duration(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// An instant as milliseconds since the epoch.
pub(crate) fn instant(t: Timestamp) -> i64 {
    t.as_millis()
}

/// Milliseconds since the epoch as an instant.
pub(crate) fn timestamp(ms: i64) -> Timestamp {
    Timestamp(ms)
}
