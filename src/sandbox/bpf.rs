//! The seccomp program of a sandboxed worker, in classic BPF.
//!
//! A filter runs on every system call, and the kernel also runs it once for
//! every call number when it is installed (to cache the calls it always
//! allows), so its length is paid at each worker's start. A filter made by
//! a general rule compiler tests the calls one after another: 839
//! instructions for this policy, 0.7 ms to install. This one has a block
//! for each call that needs more than a yes (its arguments checked, or an
//! errno), then finds the other allowed calls, as ranges of numbers, by a
//! binary search. Conditional jumps skip a few instructions at most; the
//! search jumps over its subtrees with unconditional jumps, whose offsets
//! cannot overflow.

use std::collections::BTreeMap;

use libc::sock_filter;

use super::filter::{Action, When};

// Classic BPF opcodes (`<linux/bpf_common.h>`).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JGT_K: u16 = 0x25;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;

// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `i` (the arguments the policy checks are
/// `int`s: pids, signals, options, requests).
const fn arg(i: u32) -> u32 {
    if cfg!(target_endian = "little") {
        16 + 8 * i
    } else {
        20 + 8 * i
    }
}

pub(super) const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
pub(super) const TRAP: u32 = libc::SECCOMP_RET_TRAP;
pub(super) const LOG: u32 = libc::SECCOMP_RET_LOG;
pub(super) const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

pub(super) const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// The audit architecture of this machine, which the filter requires (a
/// call made through another ABI has other numbers).
fn audit_arch() -> Result<u32, String> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(0xc000_003e),
        "aarch64" => Ok(0xc000_00b7),
        "riscv64" => Ok(0xc000_00f3),
        other => Err(format!(
            "the sandbox's system call filter does not support {other}"
        )),
    }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The program for `actions` (every call not in it is refused with
/// `refused`: TRAP, or LOG in log-only mode), for process `pid`.
pub(super) fn program(
    actions: &BTreeMap<u32, Action>,
    refused: u32,
    pid: u32,
) -> Result<Vec<sock_filter>, String> {
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, audit_arch()?, 1, 0),
        stmt(RET_K, KILL),
        stmt(LD_W_ABS, NR),
    ];
    if cfg!(target_arch = "x86_64") {
        // x32 calls: the same numbers with bit 30 set.
        p.push(jump(JGE_K, 0x4000_0000, 0, 1));
        p.push(stmt(RET_K, refused));
    }
    for (&nr, action) in actions {
        let block = match action {
            Action::Allow => continue,
            Action::Errno(e) => vec![stmt(RET_K, errno(*e))],
            Action::Check(when) => check(*when, refused, pid),
        };
        let len = u8::try_from(block.len()).map_err(|_| "a filter block is too long".to_owned())?;
        p.push(jump(JEQ_K, nr, 0, len));
        p.extend(block);
    }
    let allowed = ranges(
        actions
            .iter()
            .filter(|(_, a)| **a == Action::Allow)
            .map(|(nr, _)| *nr),
    );
    search(&allowed, refused, &mut p);
    Ok(p)
}

/// A binary search for the call's number among the `allowed` ranges
/// (sorted, at least one number apart): allows it when one holds it.
/// A call is found in about twice the depth of the tree, which matters as
/// the kernel runs the program for every call number at install.
fn search(allowed: &[(u32, u32)], refused: u32, p: &mut Vec<sock_filter>) {
    match allowed {
        [] => p.push(stmt(RET_K, refused)),
        [(first, last)] => p.extend([
            jump(JGE_K, *first, 0, 2),
            jump(JGT_K, *last, 1, 0),
            stmt(RET_K, ALLOW),
            stmt(RET_K, refused),
        ]),
        _ => {
            let (below, above) = allowed.split_at(allowed.len() / 2);
            // At or above the first range of `above`: jump over `below`
            // (an unconditional jump: a subtree may be longer than the 255
            // instructions a conditional jump can skip).
            p.push(jump(JGE_K, above[0].0, 0, 1));
            let over = p.len();
            p.push(stmt(JA, 0));
            search(below, refused, p);
            p[over].k = (p.len() - over - 1) as u32;
            search(above, refused, p);
        }
    }
}

/// The block for a call allowed when its arguments pass `when`; the
/// call's number is loaded, and the block ends in returns only.
fn check(when: When, refused: u32, pid: u32) -> Vec<sock_filter> {
    match when {
        When::OwnProcess => any_of(arg(0), &[0, pid], refused),
        When::OwnPid => any_of(arg(0), &[pid], refused),
        When::NotSigsys => vec![
            stmt(LD_W_ABS, arg(0)),
            jump(JEQ_K, libc::SIGSYS as u32, 0, 1),
            stmt(RET_K, refused),
            stmt(RET_K, ALLOW),
        ],
        When::HarmlessPrctl => any_of(arg(0), When::PRCTL_OPTIONS, refused),
        When::HarmlessIoctl => any_of(arg(1), When::IOCTL_REQUESTS, refused),
        When::HarmlessFcntl => any_of(arg(1), When::FCNTL_COMMANDS, refused),
        When::NotSharedAnonymous => {
            let shared_anonymous = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u32;
            vec![
                stmt(LD_W_ABS, arg(3)),
                stmt(AND_K, shared_anonymous),
                jump(JEQ_K, shared_anonymous, 0, 1),
                stmt(RET_K, refused),
                stmt(RET_K, ALLOW),
            ]
        }
        // Anything but a thread fails with EPERM (see `filter::ERRNO`).
        When::Thread => vec![
            stmt(LD_W_ABS, arg(0)),
            stmt(AND_K, When::THREAD_MASK),
            jump(JEQ_K, When::THREAD_FLAGS, 0, 1),
            stmt(RET_K, ALLOW),
            stmt(RET_K, errno(libc::EPERM)),
        ],
    }
}

/// Allows the call when the argument at `offset` is one of `values`.
fn any_of(offset: u32, values: &[u32], refused: u32) -> Vec<sock_filter> {
    let mut block = vec![stmt(LD_W_ABS, offset)];
    for (i, &value) in values.iter().enumerate() {
        // To the final ALLOW: past the other tests and the refusal.
        let to_allow = (values.len() - i) as u8;
        block.push(jump(JEQ_K, value, to_allow, 0));
    }
    block.push(stmt(RET_K, refused));
    block.push(stmt(RET_K, ALLOW));
    block
}

/// Sorted numbers as inclusive ranges of consecutive numbers.
fn ranges(numbers: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for nr in numbers {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == nr => *last = nr,
            _ => ranges.push((nr, nr)),
        }
    }
    ranges
}

/// Runs `program` on one call, as the kernel would: a test's reference.
#[cfg(test)]
pub(super) fn run(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let ins = program[pc];
        pc += 1;
        let taken = |cond: bool| if cond { ins.jt } else { ins.jf } as usize;
        match ins.code {
            LD_W_ABS => {
                let at = ins.k as usize;
                a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
            }
            AND_K => a &= ins.k,
            JEQ_K => pc += taken(a == ins.k),
            JGE_K => pc += taken(a >= ins.k),
            JGT_K => pc += taken(a > ins.k),
            JA => pc += ins.k as usize,
            RET_K => return ins.k,
            other => panic!("opcode {other:#x} is not used here"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_finds_every_allowed_number_and_no_other() {
        let arch = audit_arch().unwrap();
        for count in [0usize, 1, 2, 3, 7, 64, 300] {
            // Runs of two numbers, one apart: many separate ranges.
            let allowed: Vec<u32> = (0..count as u32 * 3).filter(|n| n % 3 != 2).collect();
            let actions = allowed.iter().map(|&nr| (nr, Action::Allow)).collect();
            let p = program(&actions, TRAP, 1).unwrap();
            for nr in 0..count as u32 * 3 + 5 {
                let expected = if allowed.contains(&nr) { ALLOW } else { TRAP };
                assert_eq!(run(&p, arch, nr, [0; 6]), expected, "{count} ranges, #{nr}");
            }
        }
    }

    #[test]
    fn numbers_collapse_into_ranges() {
        assert_eq!(ranges([0, 1, 2, 5, 7, 8].into_iter()), [(0, 2), (5, 5), (7, 8)]);
        assert!(ranges(std::iter::empty()).is_empty());
    }

    #[test]
    fn another_architecture_is_killed_and_x32_refused() {
        let actions = BTreeMap::from([(0, Action::Allow), (1, Action::Allow)]);
        let p = program(&actions, TRAP, 7).unwrap();
        let arch = audit_arch().unwrap();
        assert_eq!(run(&p, arch, 0, [0; 6]), ALLOW);
        assert_eq!(run(&p, arch, 2, [0; 6]), TRAP);
        assert_eq!(run(&p, arch ^ 1, 0, [0; 6]), KILL);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(&p, arch, 0x4000_0000, [0; 6]), TRAP);
        }
    }

    #[test]
    fn argument_checks_allow_what_they_name_and_nothing_else() {
        let actions = BTreeMap::from([
            (10, Action::Check(When::OwnProcess)),
            (11, Action::Check(When::NotSigsys)),
            (12, Action::Check(When::Thread)),
            (13, Action::Errno(libc::ENOSYS)),
        ]);
        let p = program(&actions, LOG, 4242).unwrap();
        let arch = audit_arch().unwrap();
        let call = |nr, a0: u64| run(&p, arch, nr, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(call(10, 4242), ALLOW);
        assert_eq!(call(10, 0), ALLOW);
        assert_eq!(call(10, 1), LOG);
        // Only the low 32 bits of an `int` argument count, as in the kernel.
        assert_eq!(call(10, (1 << 32) | 4242), ALLOW);
        assert_eq!(call(11, libc::SIGSEGV as u64), ALLOW);
        assert_eq!(call(11, libc::SIGSYS as u64), LOG);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_SETTLS) as u64;
        assert_eq!(call(12, thread), ALLOW);
        assert_eq!(call(12, libc::SIGCHLD as u64), errno(libc::EPERM));
        assert_eq!(call(12, thread | libc::CLONE_NEWUSER as u64), errno(libc::EPERM));
        assert_eq!(call(13, 0), errno(libc::ENOSYS));
        assert_eq!(call(14, 0), LOG);
    }
}
