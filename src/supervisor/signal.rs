//! Signals and exits as s6 reports them: what a run ended with, what `finish` is told, and
//! the code a node halts with.

use std::fmt;

/// The signals s6-svc can send (`-h -i -q -k -1 -2 -a -t -c -p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Signal {
    /// SIGHUP (`-h`).
    Hup,
    /// SIGINT (`-i`).
    Int,
    /// SIGQUIT (`-q`).
    Quit,
    /// SIGKILL (`-k`).
    Kill,
    /// SIGUSR1 (`-1`).
    Usr1,
    /// SIGUSR2 (`-2`).
    Usr2,
    /// SIGALRM (`-a`).
    Alrm,
    /// SIGTERM (`-t`).
    Term,
    /// SIGCONT (`-c`).
    Cont,
    /// SIGSTOP (`-p`).
    Stop,
    /// SIGABRT (a process may die of it; s6-svc cannot send it).
    Abrt,
    /// SIGBUS.
    Bus,
    /// SIGFPE.
    Fpe,
    /// SIGSEGV.
    Segv,
    /// SIGPIPE.
    Pipe,
}

impl Signal {
    /// The Linux signal number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Quit => 3,
            Signal::Kill => 9,
            Signal::Usr1 => 10,
            Signal::Usr2 => 12,
            Signal::Alrm => 14,
            Signal::Term => 15,
            Signal::Cont => 18,
            Signal::Stop => 19,
            Signal::Abrt => 6,
            Signal::Bus => 7,
            Signal::Fpe => 8,
            Signal::Segv => 11,
            Signal::Pipe => 13,
        }
    }

    /// `SIGTERM`, as s6-svstat prints it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Kill => "SIGKILL",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Alrm => "SIGALRM",
            Signal::Term => "SIGTERM",
            Signal::Cont => "SIGCONT",
            Signal::Stop => "SIGSTOP",
            Signal::Abrt => "SIGABRT",
            Signal::Bus => "SIGBUS",
            Signal::Fpe => "SIGFPE",
            Signal::Segv => "SIGSEGV",
            Signal::Pipe => "SIGPIPE",
        }
    }

    /// Every signal, for parsing and tests.
    pub const ALL: [Signal; 15] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Kill,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Alrm,
        Signal::Term,
        Signal::Cont,
        Signal::Stop,
        Signal::Abrt,
        Signal::Bus,
        Signal::Fpe,
        Signal::Segv,
        Signal::Pipe,
    ];

    /// The signal called `name` (`SIGTERM` or `TERM`, any case), as a `down-signal` file
    /// names it.
    pub fn from_name(name: &str) -> Option<Signal> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper).to_string();
        Signal::ALL.into_iter().find(|s| s.name()[3..] == bare)
    }

    /// The signal with this number, if s6-svc can send it.
    pub fn from_number(number: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == number)
    }

    /// Whether a process that does not handle it dies of it (SIGCONT and SIGSTOP do not
    /// end a process).
    pub fn terminates_by_default(self) -> bool {
        !matches!(self, Signal::Cont | Signal::Stop)
    }
}

/// How one run of a service ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (0 to 255).
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

/// What `finish` is told: the exit code, or 256 and the signal number (s6's finish
/// arguments 1 and 2).
pub const FINISH_SIGNALLED: i32 = 256;

impl Exit {
    /// `finish`'s first two arguments.
    pub fn finish_args(self) -> (i32, i32) {
        match self {
            Exit::Code(code) => (code, 0),
            Exit::Signal(signal) => (FINISH_SIGNALLED, signal.number()),
        }
    }

    /// The exit code a node halts with when its main service ended this way (s6-overlay:
    /// the code, or 128 + the signal number).
    pub fn node_code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal.number(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit {code}"),
            Exit::Signal(signal) => write!(f, "signal {}", signal.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_args_and_node_codes_follow_s6() {
        assert_eq!(Exit::Code(3).finish_args(), (3, 0));
        assert_eq!(Exit::Signal(Signal::Term).finish_args(), (256, 15));
        assert_eq!(Exit::Code(7).node_code(), 7);
        assert_eq!(Exit::Signal(Signal::Kill).node_code(), 137);
        assert_eq!(Exit::Signal(Signal::Term).to_string(), "signal SIGTERM");
        assert_eq!(Signal::from_name("int\n"), Some(Signal::Int));
        for signal in Signal::ALL {
            assert_eq!(Signal::from_number(signal.number()), Some(signal));
            assert_eq!(Signal::from_name(signal.name()), Some(signal));
        }
    }
}
