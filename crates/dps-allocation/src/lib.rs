//! dps-allocation
