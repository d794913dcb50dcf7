//! Deterministic mode: virtual clocks that advance by a fixed step on every
//! reading, and random sources seeded from the step's cache key, so the same
//! step on the same inputs sees the same time and the same random bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use crate::Digest;

/// Where virtual wall-clock time starts: 2000-01-01T00:00:00Z.
const WALL_CLOCK_START: Duration = Duration::from_secs(946_684_800);
/// How far a virtual clock advances on each reading.
const TICK: Duration = Duration::from_millis(1);

/// A clock that reads `start`, then one [`TICK`] later on each reading.
struct VirtualClock {
    start: Duration,
    readings: AtomicU64,
}

impl VirtualClock {
    fn new(start: Duration) -> Self {
        Self { start, readings: AtomicU64::new(0) }
    }

    fn next(&self) -> Duration {
        let n = self.readings.fetch_add(1, Ordering::Relaxed);
        self.start + TICK * u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        TICK
    }

    fn now(&self) -> Duration {
        self.next()
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        TICK.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        u64::try_from(self.next().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Makes `builder`'s clocks virtual and its random sources seeded by `seed`.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder, seed: &Digest) {
    let derive = |purpose: &str| *blake3::keyed_hash(seed.as_bytes(), purpose.as_bytes()).as_bytes();
    let insecure_seed = derive("insecure-seed");
    let mut seed_bytes = [0u8; 16];
    seed_bytes.copy_from_slice(&insecure_seed[..16]);
    builder
        .wall_clock(VirtualClock::new(WALL_CLOCK_START))
        .monotonic_clock(VirtualClock::new(Duration::ZERO))
        .secure_random(StdRng::from_seed(derive("secure-random")))
        .insecure_random(StdRng::from_seed(derive("insecure-random")))
        .insecure_random_seed(u128::from_le_bytes(seed_bytes));
}
