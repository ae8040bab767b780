//! The one error type of this crate.

/// Why a value could not become a model record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// An identifier does not satisfy its syntax rules.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId {
        /// Which identifier (`registrationId`, `idScope`, …).
        kind: &'static str,
        /// The offending value.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// JSON that does not fit the expected shape: missing required field,
    /// wrong type, unknown enum spelling, invalid id inside a record.
    #[error("invalid JSON at `{path}`: {message}")]
    Json {
        /// Where in the document (`attestation.type`, `.` for the root).
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A field is syntactically fine but its value is not acceptable.
    #[error("invalid value for `{field}` ({value:?}): {reason}")]
    InvalidField {
        /// The field, in wire spelling.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}
