//! What the kernel of this machine can enforce.

use std::fmt;

use crate::sys;

/// The Landlock ABI whose rights a sandbox asks for: every file-system
/// right up to ABI 5, TCP rules (ABI 4) and the signal and abstract-socket
/// scopes (ABI 6).
pub(crate) const LANDLOCK_ABI: u32 = 6;

/// What the kernel of this machine can enforce for a [`Sandbox`](super::Sandbox),
/// from [`Sandbox::probe`](super::Sandbox::probe).
///
/// Its `Display` lists each part:
///
/// ```
/// println!("{}", procpool::Sandbox::probe());
/// ```
///
/// prints, on a Linux 6.18 kernel with Landlock enabled:
///
/// ```text
/// system call filter (seccomp, SIGSYS on refusal): yes
/// file-system rules (Landlock ABI 7): yes
/// TCP bind and connect rules (Landlock ABI 4+): yes
/// signal and abstract-socket scopes (Landlock ABI 6+): yes
/// no_new_privs, non-dumpable, rlimits: yes
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxReport {
    seccomp: bool,
    landlock_abi: u32,
}

impl SandboxReport {
    pub(crate) fn probe() -> SandboxReport {
        SandboxReport {
            seccomp: sys::confine::seccomp_trap_available(),
            landlock_abi: sys::confine::landlock_abi(),
        }
    }

    /// Whether system calls can be filtered (seccomp-BPF with SIGSYS).
    ///
    /// # Examples
    ///
    /// ```
    /// let report = procpool::Sandbox::probe();
    /// if !report.seccomp() {
    ///     eprintln!("this kernel cannot filter system calls");
    /// }
    /// ```
    pub fn seccomp(&self) -> bool {
        self.seccomp
    }

    /// The Landlock ABI version the kernel offers; 0 without Landlock.
    ///
    /// # Examples
    ///
    /// ```
    /// println!("Landlock ABI {}", procpool::Sandbox::probe().landlock_abi());
    /// ```
    pub fn landlock_abi(&self) -> u32 {
        self.landlock_abi
    }

    /// Whether file-system access can be restricted (Landlock).
    ///
    /// # Examples
    ///
    /// ```
    /// let report = procpool::Sandbox::probe();
    /// assert_eq!(report.filesystem(), report.landlock_abi() >= 1);
    /// ```
    pub fn filesystem(&self) -> bool {
        self.landlock_abi >= 1
    }

    /// Whether TCP `bind` and `connect` can be restricted (Landlock ABI 4).
    ///
    /// # Examples
    ///
    /// ```
    /// let report = procpool::Sandbox::probe();
    /// assert_eq!(report.tcp(), report.landlock_abi() >= 4);
    /// ```
    pub fn tcp(&self) -> bool {
        self.landlock_abi >= 4
    }

    /// Whether signals to, and abstract unix sockets of, processes outside
    /// the sandbox can be refused (Landlock ABI 6).
    ///
    /// # Examples
    ///
    /// ```
    /// let report = procpool::Sandbox::probe();
    /// assert_eq!(report.scopes(), report.landlock_abi() >= 6);
    /// ```
    pub fn scopes(&self) -> bool {
        self.landlock_abi >= 6
    }

    /// The parts a sandbox needs that this kernel lacks (`network`: the
    /// sandbox allows the network, so TCP rules are not needed).
    pub(crate) fn missing(&self, network: bool) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.seccomp {
            missing.push("system call filtering (seccomp-BPF)");
        }
        if !self.filesystem() {
            missing.push("file-system rules (Landlock)");
        } else if self.landlock_abi < 5 {
            missing.push("all file-system rights (Landlock ABI 5)");
        }
        if !network && !self.tcp() {
            missing.push("TCP rules (Landlock ABI 4)");
        }
        if !self.scopes() {
            missing.push("signal and abstract-socket scopes (Landlock ABI 6)");
        }
        missing
    }
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            f,
            "system call filter (seccomp, SIGSYS on refusal): {}",
            yes(self.seccomp)
        )?;
        writeln!(
            f,
            "file-system rules (Landlock ABI {}): {}",
            self.landlock_abi,
            yes(self.filesystem())
        )?;
        writeln!(
            f,
            "TCP bind and connect rules (Landlock ABI 4+): {}",
            yes(self.tcp())
        )?;
        writeln!(
            f,
            "signal and abstract-socket scopes (Landlock ABI 6+): {}",
            yes(self.scopes())
        )?;
        write!(f, "no_new_privs, non-dumpable, rlimits: yes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_landlock_misses_it_and_one_with_all_misses_nothing() {
        let bare = SandboxReport {
            seccomp: true,
            landlock_abi: 0,
        };
        let missing = bare.missing(false);
        assert!(missing.iter().any(|m| m.contains("file-system")), "{missing:?}");
        assert!(missing.iter().any(|m| m.contains("TCP")), "{missing:?}");
        assert!(!bare.missing(true).iter().any(|m| m.contains("TCP")));
        let full = SandboxReport {
            seccomp: true,
            landlock_abi: 7,
        };
        assert!(full.missing(false).is_empty());
        let no_filter = SandboxReport {
            seccomp: false,
            landlock_abi: 7,
        };
        assert_eq!(no_filter.missing(false), ["system call filtering (seccomp-BPF)"]);
    }
}
