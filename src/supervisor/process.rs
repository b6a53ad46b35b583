//! Services that are real processes, for `rollcall supervise`: an s6 service directory
//! (`run`, `finish`, `down`, `timeout-finish`, `timeout-kill`, `down-signal`,
//! `max-death-tally`) becomes a [`Service`] whose runs are child processes, each in its own
//! process group as s6 runs them in a new session. Signals go to the process by pid; a run
//! the supervisor drops (a halt) takes its whole process group with it.
//!
//! Not here: `notification-fd` (readiness) for real processes; the core supports it for
//! in-process services.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{self as nix_signal, Signal as NixSignal};
use nix::unistd::Pid;

use super::core::{DEATH_TALLY_MAX, ServiceSpec};
use super::driver::{FinishFuture, Service, ServiceFuture, Stopped};
use super::signal::{Exit, Signal};

/// A service directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceDirError {
    /// No executable `run`.
    #[error("{dir}: no run script")]
    NoRun { dir: PathBuf },
    /// A control file holds something s6 would not accept.
    #[error("{file}: {problem}")]
    BadFile { file: PathBuf, problem: String },
}

/// Reads one s6 service directory.
pub fn read_service_dir(dir: &Path) -> Result<Service, ServiceDirError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let run = dir.join("run");
    if !run.is_file() {
        return Err(ServiceDirError::NoRun { dir: dir.to_path_buf() });
    }
    let mut spec = ServiceSpec::longrun(name.clone());
    spec.normally_up = !dir.join("down").exists();
    if let Some(ms) = number_file(&dir.join("timeout-finish"))? {
        spec.timeout_finish = Duration::from_millis(ms);
    }
    if let Some(ms) = number_file(&dir.join("timeout-kill"))? {
        spec.timeout_kill = Duration::from_millis(ms);
    }
    if let Some(tally) = number_file(&dir.join("max-death-tally"))? {
        spec.max_death_tally = (tally as usize).min(DEATH_TALLY_MAX);
    }
    let down_signal = dir.join("down-signal");
    if let Ok(text) = std::fs::read_to_string(&down_signal) {
        spec.down_signal = Signal::from_name(&text).ok_or_else(|| ServiceDirError::BadFile {
            file: down_signal.clone(),
            problem: format!("unknown signal '{}'", text.trim()),
        })?;
    }
    let argv = vec![run.display().to_string(), name.clone()];
    let service = process_service(spec, argv, Some(dir.to_path_buf()));
    let finish = dir.join("finish");
    if !finish.is_file() {
        return Ok(service);
    }
    Ok(service.finish(move |code, signal| run_finish(finish.clone(), code, signal, name.clone())))
}

/// A decimal number in a control file, if the file exists.
fn number_file(path: &Path) -> Result<Option<u64>, ServiceDirError> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let number = text.trim().parse().map_err(|_| ServiceDirError::BadFile {
        file: path.to_path_buf(),
        problem: format!("'{}' is not a number of milliseconds", text.trim()),
    })?;
    Ok(Some(number))
}

/// A service whose runs are `argv` as a child process (in `cwd`, if given).
pub fn process_service(spec: ServiceSpec, argv: Vec<String>, cwd: Option<PathBuf>) -> Service {
    process_service_with_pid(spec, argv, cwd).0
}

/// [`process_service`], with the running process's pid (for signal handlers that send
/// another signal than the one they got, as HAProxy's SIGHUP-to-SIGUSR2).
pub fn process_service_with_pid(
    spec: ServiceSpec,
    argv: Vec<String>,
    cwd: Option<PathBuf>,
) -> (Service, Rc<Cell<Option<i32>>>) {
    let pid: Rc<Cell<Option<i32>>> = Rc::default();
    let handle = pid.clone();
    let running = pid.clone();
    let mut service = Service::new(spec, move |_ready| -> ServiceFuture {
        let (argv, cwd, pid) = (argv.clone(), cwd.clone(), running.clone());
        Box::pin(async move { run_process(&argv, cwd.as_deref(), &pid).await })
    });
    service.deliver = Some(Box::new(move |signal| {
        if let (Some(pid), Ok(signal)) = (pid.get(), NixSignal::try_from(signal.number())) {
            let _ = nix_signal::kill(Pid::from_raw(pid), signal);
        }
    }));
    (service, handle)
}

/// Sends `signal` to the process `pid` holds, if it runs.
pub fn signal_pid(pid: &Cell<Option<i32>>, signal: Signal) {
    if let (Some(pid), Ok(signal)) = (pid.get(), NixSignal::try_from(signal.number())) {
        let _ = nix_signal::kill(Pid::from_raw(pid), signal);
    }
}

/// Kills a run's whole process group when the run is dropped (the node halts).
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = nix_signal::killpg(Pid::from_raw(self.0), NixSignal::SIGKILL);
    }
}

async fn run_process(argv: &[String], cwd: Option<&Path>, pid: &Cell<Option<i32>>) -> Result<(), Stopped> {
    let mut command = tokio::process::Command::new(&argv[0]);
    command.args(&argv[1..]).stdin(Stdio::null()).process_group(0).kill_on_drop(true);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|error| Stopped {
        exit: Exit::Code(111),
        reason: format!("cannot run {}: {error}", argv[0]),
    })?;
    let id = child.id().map(|id| id as i32);
    pid.set(id);
    let _group = id.map(GroupGuard);
    let status = child.wait().await;
    pid.set(None);
    let status = status.map_err(|error| Stopped { exit: Exit::Code(111), reason: error.to_string() })?;
    match exit_of(status) {
        Exit::Code(0) => Ok(()),
        exit => Err(Stopped { exit, reason: argv[0].clone() }),
    }
}

/// A process's exit status as s6 reports it. A signal without a name here is reported as
/// exit 128 + its number.
fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(number)) => Signal::from_number(number).map_or(Exit::Code(128 + number), Exit::Signal),
        (None, None) => Exit::Code(111),
    }
}

/// `finish CODE SIGNAL NAME`, in the service directory; a finish that cannot run counts as
/// exit 0 (s6 logs it and goes on).
fn run_finish(finish: PathBuf, code: i32, signal: i32, name: String) -> FinishFuture {
    Box::pin(async move {
        let mut command = tokio::process::Command::new(&finish);
        command.args([code.to_string(), signal.to_string(), name]).stdin(Stdio::null()).kill_on_drop(true);
        if let Some(dir) = finish.parent() {
            command.current_dir(dir);
        }
        match command.status().await {
            Ok(status) => status.code().unwrap_or(0),
            Err(error) => {
                tracing::warn!(finish = %finish.display(), %error, "finish script did not run");
                0
            }
        }
    })
}
