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
    /// The token's expiry lies further ahead than the verifier allows (a
    /// token meant to be replayed for a long time, or forever).
    #[error("token expiry {expiry} lies more than {max_lifetime_secs} s ahead")]
    TokenLifetimeTooLong {
        /// `se` of the token, Unix seconds.
        expiry: u64,
        /// The longest lifetime the verifier accepts, in seconds.
        max_lifetime_secs: u64,
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

    /// A certificate (PEM, base64 DER or DER) could not be decoded or parsed.
    #[error("malformed certificate ({which}): {reason}")]
    MalformedCertificate {
        /// Which certificate: `chain[0]`, `enrolled primary`, `trust anchor "name"`…
        which: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS client presented no certificate.
    #[error("no client certificate was presented")]
    EmptyChain,
    /// A certificate's subject carries no common name (CN).
    #[error("certificate subject {subject:?} has no common name")]
    MissingCommonName {
        /// The subject distinguished name.
        subject: String,
    },
    /// The leaf certificate's CN is not the registration id.
    #[error("certificate common name {actual:?} does not match registration id {expected:?}")]
    CommonNameMismatch {
        /// The registration id the device asked for (or the enrollment's).
        expected: String,
        /// The CN of the leaf certificate.
        actual: String,
    },
    /// A certificate's validity period ended before `now`.
    #[error("certificate {subject:?} expired at {not_after} (now {now})")]
    CertificateExpired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
        /// The verifier's clock, RFC 3339.
        now: String,
    },
    /// A certificate's validity period starts after `now`.
    #[error("certificate {subject:?} is not valid before {not_before} (now {now})")]
    CertificateNotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
        /// The verifier's clock, RFC 3339.
        now: String,
    },
    /// A certificate's signature does not verify with its issuer's public key.
    #[error("signature of certificate {subject:?} does not verify with the key of {issuer:?}")]
    BadCertificateSignature {
        /// Subject of the certificate whose signature failed.
        subject: String,
        /// Subject of the certificate whose key was tried.
        issuer: String,
    },
    /// A certificate is signed with an algorithm this crate does not accept
    /// (only RSA PKCS#1 v1.5 with SHA-256/384/512 of ≥ 2048 bits, ECDSA P-256/P-384
    /// with SHA-256/384, and Ed25519 are).
    #[error("certificate {subject:?} uses unsupported signature algorithm {algorithm}")]
    UnsupportedSignatureAlgorithm {
        /// Subject of the certificate.
        subject: String,
        /// The signature algorithm OID with the issuer key's algorithm, dotted.
        algorithm: String,
    },
    /// The presented leaf is neither the enrollment's primary nor its secondary certificate.
    #[error("certificate with SHA-256 thumbprint {sha256_thumbprint} is not enrolled")]
    CertificateNotEnrolled {
        /// Upper-case hex SHA-256 of the presented leaf.
        sha256_thumbprint: String,
    },
    /// The chain reaches a CA certificate that has not passed proof of possession.
    #[error("CA certificate not found. ({name:?} is not verified)")]
    CaNotVerified {
        /// Name of the CA certificate (or group signing certificate).
        name: String,
    },
    /// No certificate of the chain leads to any trust anchor.
    #[error("certificate chain ends at {subject:?}, whose issuer {issuer:?} is no trusted CA")]
    ChainDoesNotReachAnchor {
        /// Subject of the last certificate reached.
        subject: String,
        /// The issuer named by that certificate, found neither in the chain nor among the anchors.
        issuer: String,
    },
    /// A certificate that issues another one is not a CA (basicConstraints
    /// CA flag missing, or key usage without keyCertSign).
    #[error("certificate {subject:?} is not a certificate authority")]
    NotACertificateAuthority {
        /// Subject of the would-be issuer.
        subject: String,
    },
    /// The client presented more certificates than a chain may have; nothing
    /// was parsed or verified.
    #[error("the client presented {presented} certificates; at most {max} are accepted")]
    ChainTooLong {
        /// How many certificates the client presented, leaf included.
        presented: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Every path to a trust anchor needs more intermediates than allowed.
    #[error("no path to a trusted CA within {max} intermediate certificates")]
    PathTooDeep {
        /// The maximum number of intermediates between leaf and anchor.
        max: usize,
    },
    /// Verification stopped because its budget was spent: signature checks
    /// or path-search steps (a chain crafted to make path building
    /// expensive, or too many candidates).
    #[error(
        "certificate chain verification stopped after {signature_checks} signature checks and {path_steps} path steps"
    )]
    VerificationBudgetExhausted {
        /// Signature checks performed before stopping.
        signature_checks: usize,
        /// Certificates the path search considered before stopping.
        path_steps: usize,
    },
    /// A CA's basicConstraints pathLenConstraint allows fewer intermediates
    /// below it than the path has.
    #[error(
        "certificate {subject:?} allows {path_len} intermediate certificates below it; the path has {below}"
    )]
    PathLengthExceeded {
        /// Subject of the constrained CA.
        subject: String,
        /// Its pathLenConstraint.
        path_len: u32,
        /// Intermediates between it and the leaf on the refused path.
        below: usize,
    },
    /// A certificate's names lie outside the name constraints of a CA above
    /// it (directoryName constraints are not implemented and refuse every name).
    #[error("certificate names violate the name constraints of {constrained_by:?}")]
    NameConstraintViolation {
        /// Subject of the CA whose constraints were violated.
        constrained_by: String,
    },
    /// A certificate carries a critical extension the verifier does not
    /// process (RFC 5280 §4.2: such a certificate must be refused).
    #[error("certificate {subject:?} carries the unsupported critical extension {oid}")]
    UnsupportedCriticalExtension {
        /// Subject of the certificate.
        subject: String,
        /// The extension's OID, dotted.
        oid: String,
    },
    /// A certificate breaks an RFC 5280 rule that no more specific variant names
    /// (a CA certificate as the device's, a version-1 certificate in a group
    /// chain, mismatched signature algorithms…).
    #[error("certificate {subject:?} is refused: {reason}")]
    CertificateRejected {
        /// Subject of the certificate, when known (else the leaf's).
        subject: String,
        /// What rule it breaks.
        reason: String,
    },
    /// A proof-of-possession certificate does not carry the verification code as its CN.
    #[error(
        "proof-of-possession certificate CN {actual:?} is not the verification code {expected:?}"
    )]
    VerificationCodeMismatch {
        /// The code the service issued.
        expected: String,
        /// The CN of the presented certificate.
        actual: String,
    },
    /// A TPM public area (`TPM2B_PUBLIC`, base64) could not be decoded.
    #[error("malformed TPM {key}: {reason}")]
    MalformedTpmKey {
        /// `endorsementKey` or `storageRootKey`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TPM key is well-formed but not one the activation protocol can use.
    #[error("unsupported TPM {key}: {reason}")]
    UnsupportedTpmKey {
        /// `endorsementKey` or `storageRootKey`.
        key: String,
        /// Which property is not supported.
        reason: String,
    },
}
