//! dps-storage
