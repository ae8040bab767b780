//! What one verification call may spend, metered where webpki lets us in:
//!
//! * the signature algorithms handed to rustls-webpki are wrapped so that
//!   the call performs at most a budgeted number of signature checks, never
//!   checks the same (certificate, issuer key) pair twice, remembers which
//!   check failed (webpki's error does not say), and skips the math of a
//!   check the process has already seen succeed (`signature_cache.rs`);
//! * the extended-key-usage validator, which webpki calls once for every
//!   certificate it considers as the next step of a path, counts those steps
//!   and stops the search when they are spent.
//!
//! webpki has budgets of its own (100 signatures, 200,000 path-building
//! calls per search), but they are fixed and far above what a device chain
//! needs; ours are configurable and span every anchor of every group the call
//! is given.
//!
//! A check answered from the signature cache is charged to the budget like
//! one computed: it costs a SHA-256 instead of the signature math, but
//! charging it the same keeps the outcome of a call a function of its input
//! alone — a chain refused for want of budget when the cache is cold is
//! refused when it is warm. The path-step budget bounds the search either way.

use std::cell::Cell;
use std::sync::Mutex;

use rustls_pki_types::{AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm};
use webpki::ring as algs;
use webpki::{ExtendedKeyUsageValidator, KeyPurposeIdIter};

use super::signature_cache::{check_key, SignatureCache};

/// The algorithms dps accepts on a device chain: the same set as before
/// webpki (RSA PKCS#1 v1.5 with SHA-256/384/512 from 2048 bits, with or
/// without the NULL parameters; ECDSA P-256/P-384 with SHA-256/384; Ed25519).
const SUPPORTED: [&dyn SignatureVerificationAlgorithm; 11] = [
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P256_SHA384,
    algs::ECDSA_P384_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ED25519,
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
    algs::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    algs::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    algs::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
];

/// A signature check, identified by where its message (the signed
/// `tbsCertificate`) and key live in memory: webpki hands out sub-slices of
/// the buffers it was given, so the same certificate and key always come at
/// the same addresses during one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) message: (usize, usize),
    pub(crate) key: (usize, usize),
    algorithm: usize,
}

fn span(bytes: &[u8]) -> (usize, usize) {
    (bytes.as_ptr() as usize, bytes.len())
}

#[derive(Debug, Default)]
struct State {
    done: Vec<(Check, bool)>,
    performed: usize,
    exhausted: bool,
    last_failure: Option<Check>,
}

/// The budget and memory of one verification call.
#[derive(Debug)]
pub(crate) struct Meter<'c> {
    budget: usize,
    cache: &'c SignatureCache,
    state: Mutex<State>,
}

impl<'c> Meter<'c> {
    /// A meter of `budget` checks, skipping the math of those `cache` knows.
    pub(crate) fn new(budget: usize, cache: &'c SignatureCache) -> Self {
        Meter {
            budget,
            cache,
            state: Mutex::new(State::default()),
        }
    }

    /// The algorithms to give webpki, all charging this meter.
    pub(crate) fn algorithms(&self) -> Vec<Metered<'_, 'c>> {
        SUPPORTED
            .iter()
            .enumerate()
            .map(|(index, inner)| Metered {
                inner: *inner,
                index,
                meter: self,
            })
            .collect()
    }

    /// Signature checks charged to the budget: computed or answered from
    /// the signature cache.
    pub(crate) fn performed(&self) -> usize {
        self.lock().performed
    }

    /// Whether a check was refused because the budget was spent.
    pub(crate) fn exhausted(&self) -> bool {
        self.lock().exhausted
    }

    /// The last check whose signature did not verify.
    pub(crate) fn last_failure(&self) -> Option<Check> {
        self.lock().last_failure
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn verify(
        &self,
        algorithm: usize,
        inner: &dyn SignatureVerificationAlgorithm,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let check = Check {
            message: span(message),
            key: span(public_key),
            algorithm,
        };
        let mut state = self.lock();
        if let Some((_, ok)) = state.done.iter().find(|(c, _)| *c == check) {
            return if *ok { Ok(()) } else { Err(InvalidSignature) };
        }
        if state.performed >= self.budget {
            state.exhausted = true;
            return Err(InvalidSignature);
        }
        state.performed += 1;
        let key = check_key(algorithm, public_key, message, signature);
        if self.cache.contains(&key) {
            state.done.push((check, true));
            return Ok(());
        }
        // One thread per call: holding the lock across the check costs nothing.
        let ok = inner
            .verify_signature(public_key, message, signature)
            .is_ok();
        state.done.push((check, ok));
        if ok {
            // Only a check that verified is remembered; a failure is
            // computed again whenever it comes back.
            self.cache.insert(key);
            Ok(())
        } else {
            state.last_failure = Some(check);
            Err(InvalidSignature)
        }
    }
}

/// One supported algorithm, charging a [`Meter`].
#[derive(Debug)]
pub(crate) struct Metered<'m, 'c> {
    inner: &'static dyn SignatureVerificationAlgorithm,
    index: usize,
    meter: &'m Meter<'c>,
}

impl SignatureVerificationAlgorithm for Metered<'_, '_> {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        self.meter
            .verify(self.index, self.inner, public_key, message, signature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.public_key_alg_id()
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.inner.signature_alg_id()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }
}

/// Counts path-search steps; accepts any extended key usage.
///
/// Extended key usage is not checked: DPS does not check it either as far
/// as is known, and neither did the builder before webpki (webpki's own
/// validators would require clientAuth when the extension is present).
#[derive(Debug)]
pub(crate) struct PathSteps {
    budget: usize,
    taken: Cell<usize>,
    exhausted: Cell<bool>,
}

impl PathSteps {
    pub(crate) fn new(budget: usize) -> Self {
        PathSteps {
            budget,
            taken: Cell::new(0),
            exhausted: Cell::new(false),
        }
    }

    /// Steps taken.
    pub(crate) fn taken(&self) -> usize {
        self.taken.get()
    }

    /// Whether the search was stopped for want of steps.
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.get()
    }
}

impl ExtendedKeyUsageValidator for PathSteps {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        if self.taken.get() >= self.budget {
            self.exhausted.set(true);
            // One of webpki's fatal errors: the whole search stops here.
            return Err(webpki::Error::MaximumPathBuildCallsExceeded);
        }
        self.taken.set(self.taken.get() + 1);
        // A malformed extension is still refused.
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

/// Does `inner` lie within `outer` (both as address spans)?
pub(crate) fn within(inner: (usize, usize), outer: &[u8]) -> bool {
    let (start, len) = span(outer);
    inner.0 >= start && inner.0.saturating_add(inner.1) <= start.saturating_add(len)
}
