//! Long-running processes a test starts (`strata serve`, containerd): started, waited for,
//! and stopped by PID.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long [`Daemon::wait_for_line`] waits before the test fails instead of hanging.
const LINE_DEADLINE: Duration = Duration::from_secs(120);

/// A child process killed (by PID) when dropped, with its stderr collected for diagnostics.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: Arc<Log>,
}

/// The stderr of a daemon so far, line by line, and whether it ended.
#[derive(Default)]
struct Log {
    text: Mutex<(String, bool)>,
    grew: Condvar,
}

impl Log {
    /// The text and whether it ended; a failed test's panic elsewhere does not hide it.
    fn lock(&self) -> MutexGuard<'_, (String, bool)> {
        self.text
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: &str) {
        self.lock().0.push_str(line);
        self.grew.notify_all();
    }

    fn text(&self) -> String {
        self.lock().0.clone()
    }
}

impl Daemon {
    /// Starts `command` and returns once a line of its stderr contains `ready`.
    pub fn start(name: &'static str, mut command: Command, ready: &str) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Log::default());
        let mut line = String::new();
        loop {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            log.push(&line);
            assert!(n > 0, "{name} exited before ready:\n{}", log.text());
            if line.contains(ready) {
                break;
            }
        }
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                sink.push(&line);
                line.clear();
            }
            sink.lock().1 = true;
            sink.grew.notify_all();
        });
        Daemon { name, child, log }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The first line of its stderr that contains `needle`, once there is one; fails the test
    /// when the daemon's stderr ends without one, or after a deadline.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + LINE_DEADLINE;
        let mut state = self.log.lock();
        loop {
            if let Some(line) = state.0.lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                // Not while holding the lock: its reader would find it poisoned.
                let log = state.0.clone();
                drop(state);
                panic!("{} logged no line with {needle:?}:\n{log}", self.name);
            }
            state = self
                .log
                .grew
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (by PID) and waits for it to end.
    pub fn kill(&mut self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, signal);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill(rustix::process::Signal::TERM);
        }
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log.text());
        }
    }
}
