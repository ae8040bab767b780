//! dps-hub-sim integration tests.
