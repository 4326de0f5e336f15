//! Long-running processes a test starts (`strata serve`, containerd): started, waited for,
//! and stopped by PID.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A child process killed (by PID) when dropped, with its stderr collected for diagnostics.
pub struct Daemon {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<String>>,
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
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        loop {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            log.lock().unwrap().push_str(&line);
            assert!(
                n > 0,
                "{name} exited before ready:\n{}",
                log.lock().unwrap()
            );
            if line.contains(ready) {
                break;
            }
        }
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            sink.lock().unwrap().push_str(&rest);
        });
        Daemon { name, child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

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
            eprintln!("--- {} log ---\n{}", self.name, self.log.lock().unwrap());
        }
    }
}
