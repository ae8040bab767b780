//! dps-hub
