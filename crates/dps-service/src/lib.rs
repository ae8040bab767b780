//! dps-service
