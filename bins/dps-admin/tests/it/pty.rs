//! A pseudo-terminal for a child's stderr, so a test sees what a person at
//! a terminal would: progress bars are drawn only there.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::OwnedFd;

use anyhow::{Context as _, Result};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

/// A terminal: the child writes to `terminal`, the test reads `controller`.
pub(crate) struct Pty {
    controller: OwnedFd,
    /// The terminal end, to hand to the child (then drop it here).
    pub(crate) terminal: File,
}

impl Pty {
    /// A new 120×40 terminal.
    pub(crate) fn open() -> Result<Pty> {
        let controller = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        grantpt(&controller)?;
        unlockpt(&controller)?;
        tcsetwinsize(
            &controller,
            Winsize {
                ws_row: 40,
                ws_col: 120,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )?;
        let name = ptsname(&controller, Vec::new())?;
        let terminal = File::options()
            .read(true)
            .write(true)
            .open(name.to_str().context("pty name")?)?;
        Ok(Pty {
            controller,
            terminal,
        })
    }

    /// Read everything written to the terminal until every writer closed
    /// it (the controller then reads EIO), on a thread of its own.
    pub(crate) fn collect(self) -> std::thread::JoinHandle<Vec<u8>> {
        let Pty {
            controller,
            terminal,
        } = self;
        drop(terminal);
        let mut reader = File::from(controller);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buffer[..n]);
            }
            seen
        })
    }
}
