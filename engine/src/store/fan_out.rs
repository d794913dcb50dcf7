//! A store directory whose entries are fanned out by the first two hex
//! digits of their names (`objects/ab/cdef…`), and which of those fan-out
//! directories this process knows it must make.
//!
//! Something is put in a fan-out directory by trying first and making the
//! directory only when the attempt finds it missing (see `in_fan_dir`): in a
//! store that has been used, it almost always exists. In a store this
//! process has just created, none does, and each of the first 256 puts
//! would fail once before making it; there the directory is made first.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::fs::Dir;

/// A fanned-out store directory.
#[derive(Debug)]
pub(super) struct FanOut {
    dir: Dir,
    /// Whether this process created the directory (empty then).
    created: bool,
    /// The fan-out directories this process made in it, one bit each.
    made: [AtomicU64; 4],
}

impl FanOut {
    /// `dir`, which this process has just `created` (or not).
    pub(super) fn new(dir: Dir, created: bool) -> Self {
        Self { dir, created, made: Default::default() }
    }

    /// Makes fan-out directory `fan` first where it cannot exist yet: in a
    /// directory this process created, the first time `fan` is used.
    pub(super) fn prepare(&self, fan: &str) -> crate::Result<()> {
        let Some(index) = fan_index(fan).filter(|_| self.created) else { return Ok(()) };
        let (word, bit) = (&self.made[index / 64], 1u64 << (index % 64));
        if word.load(Ordering::Relaxed) & bit == 0 {
            super::ensure_dir(&self.dir, fan)?;
            word.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl std::os::fd::AsFd for FanOut {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl Deref for FanOut {
    type Target = Dir;

    fn deref(&self) -> &Dir {
        &self.dir
    }
}

/// The number a fan-out directory's name (two lowercase hex digits) stands
/// for; `None` for any other name.
fn fan_index(fan: &str) -> Option<usize> {
    let digits = fan.as_bytes();
    let hex = |digit: u8| matches!(digit, b'0'..=b'9' | b'a'..=b'f');
    (digits.len() == 2 && digits.iter().all(|digit| hex(*digit)))
        .then(|| usize::from_str_radix(fan, 16).expect("two hex digits"))
}

#[cfg(test)]
mod tests {
    use super::fan_index;

    #[test]
    fn only_two_lowercase_hex_digits_name_a_fan_out_directory() {
        assert_eq!(fan_index("00"), Some(0));
        assert_eq!(fan_index("ff"), Some(255));
        assert_eq!(fan_index("a7"), Some(0xa7));
        for other in ["FF", "0", "abc", "indexes", "g0", ""] {
            assert_eq!(fan_index(other), None, "{other}");
        }
    }
}
