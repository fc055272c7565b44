//! `skiff attach`: a running container's stdio through its shim's attach socket (protocol in
//! `skiff_runtime::attach`), also the interactive half of `skiff run -i/-t`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use skiff_runtime::attach::{self, AttachOptions};
use skiff_runtime::Runtime;

use crate::container_cmd::open_runtime;

#[derive(Args)]
pub struct AttachArgs {
    /// Do not send this terminal's input to the container.
    #[arg(long)]
    no_stdin: bool,
    /// Container name or ID (prefix).
    container: String,
}

pub fn attach(data_dir: &Path, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(data_dir)?;
    let info = runtime.get(&args.container)?;
    let code = session(&runtime, &info.id, !args.no_stdin, true)?;
    // Closed without an exit report: the shim went away; ask the runtime.
    let code = match code {
        Some(c) => c,
        None => runtime.wait(&info.id)?.code,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Restores the terminal's settings when dropped.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}

/// This terminal's size as a resize payload.
fn terminal_size() -> Option<Vec<u8>> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer, valid for the call.
    let rc = unsafe { nix::libc::ioctl(0, nix::libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then(|| {
        serde_json::to_vec(&attach::TerminalSize {
            width: ws.ws_col,
            height: ws.ws_row,
        })
        .unwrap_or_default()
    })
}

/// Attaches to container `id`: our stdin to its stdin (when `stdin`), its output to ours
/// (when `output`). Returns the exit code the shim reported, None when it closed without one.
pub fn session(
    runtime: &Runtime,
    id: &str,
    stdin: bool,
    output: bool,
) -> anyhow::Result<Option<i32>> {
    let opts = AttachOptions {
        stdin,
        stdout: output,
        stderr: output,
    };
    let mut sock = runtime.attach(id, &opts)?;
    // Stdin and resizes come from two threads: one lock keeps their frames whole.
    let writer = std::sync::Arc::new(std::sync::Mutex::new(sock.try_clone()?));
    let send = |w: &std::sync::Mutex<std::os::unix::net::UnixStream>, kind: u8, p: &[u8]| {
        let mut w = w
            .lock()
            .map_err(|_| std::io::Error::other("writer lock poisoned"))?;
        attach::write_frame(&mut *w, kind, p)
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let _raw = if stdin && output && tty {
        Some(RawMode::enter()?)
    } else {
        None
    };
    if tty {
        if let Some(size) = terminal_size() {
            send(&writer, attach::FRAME_RESIZE, &size)?;
        }
        // Window changes follow: SIGWINCH is blocked here (threads spawned later inherit the
        // mask) and taken by one thread, which sends the new size.
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGWINCH);
        set.thread_block()?;
        let w = writer.clone();
        std::thread::spawn(move || {
            while set.wait().is_ok() {
                if let Some(size) = terminal_size() {
                    if send(&w, attach::FRAME_RESIZE, &size).is_err() {
                        return;
                    }
                }
            }
        });
    }
    if stdin {
        let w = writer.clone();
        // Blocking reads of our stdin; the thread ends with the process.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if send(&w, attach::FRAME_STDIN, &buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = send(&w, attach::FRAME_CLOSE_STDIN, &[]);
        });
    }
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        match attach::read_frame(&mut sock, attach::MAX_FRAME)? {
            Some((attach::FRAME_STDOUT, p)) => {
                out.write_all(&p)?;
                out.flush()?;
            }
            Some((attach::FRAME_STDERR, p)) => {
                err.write_all(&p)?;
                err.flush()?;
            }
            Some((attach::FRAME_EXIT, p)) => {
                return Ok(String::from_utf8_lossy(&p).trim().parse().ok());
            }
            Some(_) => {}
            None => return Ok(None),
        }
    }
}
