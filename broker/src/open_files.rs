//! The process's open-file limit: raised at start-up from its soft value to its hard one, as
//! the JVM does for Kafka (HotSpot's `MaxFDLimit`, on by default on Linux). Each partition keeps
//! at least three files open (its active segment and the segment's offset and time indexes, and
//! one more per older segment) and each connection one socket, so the soft limit many systems
//! start a service with (1,024) would stop a broker at about 300 partitions: CreateTopics then
//! fails with KAFKA_STORAGE_ERROR and the listener can accept no more connections.

/// The soft open-file limit before and after `raise_to_hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub after: u64,
}

/// The soft and hard `RLIMIT_NOFILE`, or the error of `getrlimit`.
fn current() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (when the hard one is unlimited, as far as
/// the kernel allows a process to open: `nr_open`, read by the kernel's own refusal). Returns the
/// soft limit before and after, or the error of `getrlimit`/`setrlimit`.
pub fn raise_to_hard() -> std::io::Result<OpenFileLimit> {
    let (before, hard) = current()?;
    if before >= hard {
        return Ok(OpenFileLimit {
            before,
            after: before,
        });
    }
    let wanted = if hard == libc::RLIM_INFINITY {
        nr_open().unwrap_or(before).max(before)
    } else {
        hard
    };
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OpenFileLimit {
        before,
        after: wanted,
    })
}

/// The kernel's ceiling on one process's open files (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = current().unwrap();
        // Lower the soft limit by one (process-wide, so barely: other tests in this process
        // keep their files), then raise it again.
        let lowered = libc::rlimit {
            rlim_cur: if hard == libc::RLIM_INFINITY {
                nr_open().unwrap() - 1
            } else {
                hard - 1
            },
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let limits = raise_to_hard().unwrap();
        assert_eq!(limits.before, lowered.rlim_cur);
        assert!(limits.after > limits.before, "{limits:?}");
        assert_eq!(current().unwrap().0, limits.after);
        // Already at the hard limit: nothing changes.
        let again = raise_to_hard().unwrap();
        assert_eq!(again.before, again.after);
    }
}
