//! Progress for long image work: indicatif bars on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct TermProgress {
    terminal: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl TermProgress {
    pub fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        if let Ok(mut guard) = self.bar.lock() {
            f(&mut guard);
        }
    }
}

impl skiff_image::Progress for TermProgress {
    fn start(&self, label: &str, total: u64) {
        if !self.terminal {
            return;
        }
        self.with_bar(|slot| {
            if let Some(old) = slot.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.to_string());
            *slot = Some(bar);
        });
    }

    fn advance(&self, delta: u64) {
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.inc(delta);
            }
        });
    }

    fn finish(&self) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }

    fn message(&self, line: &str) {
        let mut printed = false;
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.println(line);
                printed = true;
            }
        });
        if !printed {
            eprintln!("{line}");
        }
    }
}
