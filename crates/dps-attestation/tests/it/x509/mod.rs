//! X.509 attestation against certificates generated with rcgen.

mod bounds;
mod fuzz;
mod group;
mod individual;
mod info;
mod openssl;
mod proof;
