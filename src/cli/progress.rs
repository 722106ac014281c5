//! Progress of long operations (unmount drain, `sync --wait`, devnet start-up): a bar on a
//! terminal (indicatif), plain lines at a calm pace otherwise (logs, pipes, journald).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Plain mode: at most one line this often (and whenever the message changes kind).
    every: Duration,
    last_line: Option<Instant>,
    prefix: &'static str,
}

impl Progress {
    fn new(bar: Option<ProgressBar>, prefix: &'static str, every: Duration) -> Progress {
        Progress {
            bar,
            every,
            last_line: None,
            prefix,
        }
    }

    fn on_terminal() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Counting down bytes (with the files left in the message).
    pub fn bytes(prefix: &'static str) -> Progress {
        let bar = Self::on_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(prefix);
            b
        });
        Progress::new(bar, prefix, Duration::from_secs(2))
    }

    /// Numbered steps.
    pub fn steps(prefix: &'static str, total: u64) -> Progress {
        let bar = Self::on_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(prefix);
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        // Every step is worth a line.
        Progress::new(bar, prefix, Duration::ZERO)
    }

    /// Waiting for something with no measure of how far along it is.
    pub fn spinner(prefix: &'static str) -> Progress {
        let bar = Self::on_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(prefix);
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress::new(bar, prefix, Duration::from_secs(5))
    }

    fn plain(&mut self, force: bool, line: impl FnOnce() -> String) {
        let due = self.last_line.is_none_or(|t| t.elapsed() >= self.every);
        if force || due {
            self.last_line = Some(Instant::now());
            crate::say_err!("{}: {}", self.prefix, line());
        }
    }

    /// `left` of `total` bytes remain, in `files` files.
    pub fn bytes_left(&mut self, total: u64, left: u64, files: u64) {
        let msg = format!("{files} file(s) left");
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(total.saturating_sub(left));
                b.set_message(msg);
            }
            None => self.plain(false, || {
                format!("{files} file(s), {} left", super::status::human_bytes(left))
            }),
        }
    }

    /// Step `n` (from 1) begins.
    pub fn step(&mut self, n: u64, total: u64, what: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(n.saturating_sub(1));
                b.set_message(what.to_string());
            }
            None => self.plain(true, || format!("[{n}/{total}] {what}")),
        }
    }

    /// Still waiting; `what` says for what.
    pub fn waiting(&mut self, what: &str, waited: Duration) {
        match &self.bar {
            Some(b) => b.set_message(what.to_string()),
            None => self.plain(false, || format!("{what} ({} s)", waited.as_secs())),
        }
    }

    /// Done: clear the bar (a terminal) and print `msg`, if any, as a line.
    pub fn finish(self, msg: Option<&str>) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(m) = msg {
            crate::say_err!("{}: {m}", self.prefix);
        }
    }
}
