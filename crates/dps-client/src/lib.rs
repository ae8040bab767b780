//! dps-client
