//! dps-hub integration tests.
