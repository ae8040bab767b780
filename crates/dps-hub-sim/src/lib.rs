//! dps-hub-sim
