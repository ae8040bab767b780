//! Bounds on the work one group verification may do (issue #15: a chain of
//! 240 same-subject certificates cost the old builder ~n²/2 signature checks).

/// The deepest path rustls-webpki builds: six intermediates between the leaf
/// and the anchor. [`ChainLimits::max_path_depth`] is capped at this.
pub const MAX_PATH_DEPTH: usize = 6;

/// What a device's chain may cost to verify.
///
/// The defaults fit every chain seen in practice (leaf, one to three
/// intermediates, maybe the root) with room to spare, and bound the cost of a
/// hostile chain to a few signature checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainLimits {
    /// Most certificates the client may present, leaf included. A longer
    /// chain is refused before anything is parsed.
    pub max_chain_certificates: usize,
    /// Most intermediates between the leaf and the trust anchor (at most
    /// [`MAX_PATH_DEPTH`]).
    pub max_path_depth: usize,
    /// Most signature verifications one call may perform, whatever the
    /// number of groups and anchors it is given. A repeated (certificate,
    /// issuer key) pair is verified once. A check answered from the signature
    /// cache counts too, so that whether a chain fits the budget does not
    /// depend on what the process verified before.
    pub max_signature_checks: usize,
    /// Most certificates the path search may consider as the next step of a
    /// path. Certificates sharing a subject make the search branch (seven
    /// alike in an eight-certificate chain: thousands of partial paths, 60 ms
    /// of CPU); a real chain takes one step per certificate, a few more
    /// with cross-signed intermediates.
    pub max_path_steps: usize,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits {
            max_chain_certificates: 8,
            max_path_depth: 5,
            max_signature_checks: 16,
            max_path_steps: 32,
        }
    }
}
