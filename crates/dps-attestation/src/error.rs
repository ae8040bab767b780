//! The one error type of this crate.

/// Why a proof of identity was refused or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The token is not of the form `SharedAccessSignature sr=…&sig=…&se=…`.
    #[error("malformed shared access signature: {reason}")]
    MalformedToken {
        /// What is wrong with it.
        reason: String,
    },
    /// The token was issued for another resource.
    #[error("token audience {actual:?} does not match {expected:?}")]
    WrongAudience {
        /// The resource this token had to be issued for.
        expected: String,
        /// The resource named in the token.
        actual: String,
    },
    /// The token's expiry (plus the allowed clock skew) has passed.
    #[error("token expired at {expiry} (now {now})")]
    TokenExpired {
        /// `se` of the token, Unix seconds.
        expiry: u64,
        /// The verifier's clock, Unix seconds.
        now: u64,
    },
    /// The signature matches none of the candidate keys.
    #[error("token signature does not match")]
    BadSignature,
    /// The token names a key (`skn`) that the verifier does not know.
    #[error("unknown key name {key_name:?}")]
    UnknownKeyName {
        /// The `skn` value.
        key_name: String,
    },
    /// A symmetric key is not acceptable.
    #[error("invalid symmetric key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
}
