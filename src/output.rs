//! Lines for the user (stdout) and the log (stderr) that never end the process. `println!`
//! panics when its write fails — the reader of a pipe is gone (`pxfs devnet up 2>&1 | tee
//! log`: the terminal's Ctrl-C ends `tee` first), the disk under a log file is full, the
//! terminal went away — and a panic in the middle of a shutdown leaves uploads undrained.
//! Here a failed line is dropped and counted ([`dropped_lines`]); the work goes on.
//! Every message of pxfs's commands goes through [`say!`](crate::say) and
//! [`say_err!`](crate::say_err), and the log through [`LogWriter`].

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Lines (messages and log lines) that could not be written since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// One line on stdout (see [`say!`](crate::say)).
pub fn out_line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{args}").and_then(|()| out.flush()).is_err() {
        dropped();
    }
}

/// Text on stdout without a newline (a screen refresh, a prompt).
pub fn out_text(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        dropped();
    }
}

/// One line on stderr (see [`say_err!`](crate::say_err)).
pub fn err_line(args: std::fmt::Arguments) {
    if writeln!(std::io::stderr().lock(), "{args}").is_err() {
        dropped();
    }
}

/// `println!` that drops the line instead of panicking when stdout is gone.
#[macro_export]
macro_rules! say {
    () => { $crate::output::out_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::out_line(format_args!($($arg)*)) };
}

/// `eprintln!` that drops the line instead of panicking when stderr is gone.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => { $crate::output::err_line(format_args!($($arg)*)) };
}

/// The log's writer (stderr: a terminal, journald, or the daemon's log file): a line that
/// cannot be written is dropped and counted, never retried, never a panic.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            dropped();
        }
        // Reported as written: tracing must not report (or retry) what is dropped here.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// With stdout and stderr pipes whose readers are gone, every kind of output is dropped
    /// and counted: no panic (the process would not get here), no error.
    #[test]
    fn output_to_closed_pipes_is_dropped_and_counted() {
        // Runs in a child process: it replaces the test process's own stdout and stderr.
        if std::env::var_os("PXFS_OUTPUT_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "output::tests::output_to_closed_pipes_is_dropped_and_counted",
                ])
                .args(["--nocapture", "--test-threads=1"])
                .env("PXFS_OUTPUT_CHILD", "1")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the array; dup2 onto the standard descriptors, then the read
        // end is closed, as when `tee` is gone. SIGPIPE is ignored by Rust's runtime.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            libc::close(fds[0]);
        }
        // The test harness reports on them afterwards: restored before the test returns.
        let saved_out = unsafe { libc::dup(std::io::stdout().as_raw_fd()) };
        let saved_err = unsafe { libc::dup(std::io::stderr().as_raw_fd()) };
        unsafe {
            libc::dup2(fds[1], 1);
            libc::dup2(fds[1], 2);
        }
        let before = dropped_lines();
        crate::say!("devnet ready");
        crate::say_err!("draining: {} files", 3);
        out_text(format_args!("\x1b[2J"));
        assert_eq!(LogWriter.write(b"a log line\n").unwrap(), 11);
        let after = dropped_lines();
        unsafe {
            libc::dup2(saved_out, 1);
            libc::dup2(saved_err, 2);
        }
        assert_eq!(after - before, 4, "four outputs dropped and counted");
    }
}
