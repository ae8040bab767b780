//! Shared helpers of the benchmarks: environment knobs, the results table and
//! CPU accounting ([`table`]), dps and the hub emulator started in-process
//! ([`system`]) or as separate processes ([`procs`]), and a device loop that
//! provisions over any transport through several endpoints ([`devices`]).

#![deny(missing_docs)]

pub mod devices;
pub mod procs;
pub mod system;
pub mod table;

/// The value of the environment variable `name`, or `default` when it is
/// unset or does not parse (underscores are allowed as digit separators).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// User + system CPU time of this process so far (Linux; `None` elsewhere).
/// Server and client share the process, so this is the whole system's cost.
pub fn process_cpu_seconds() -> Option<f64> {
    procs::cpu_seconds("self")
}

/// The machine's core count, for the headers.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The runtime every bench uses: two worker threads, as many as the
/// reference machine's cores, so figures compare across machines.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `met` or `MISSED`, for target lines.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// A cheap pseudo-random sequence (xorshift64) for picking records; the
/// state must start non-zero.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
