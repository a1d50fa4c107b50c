//! Progress and failure messages on a 16550 serial port (`kexec --console-serial`).
//!
//! Between the two kernels nothing else can report: a digest mismatch halts
//! the machine, and without a message it looks like a hang. The port keeps the
//! old kernel's settings (its console's) unless a rate was asked for; a port
//! that never becomes ready is given up on after a bounded wait, so a missing
//! UART cannot stop the boot.

/// A UART at an I/O port base, e.g. 0x3f8 for ttyS0.
pub struct Serial {
    port: u16,
}

/// Line status register polls before a byte is dropped: far longer than one
/// character takes at 9600 baud, short enough that a port with nothing behind
/// it costs milliseconds.
const READY_POLLS: u32 = 100_000;

impl Serial {
    /// The UART at `port`, reprogrammed for `divisor` (115200 / baud) unless
    /// it is 0; `None` when `port` is 0 (no console asked for).
    ///
    /// # Safety
    /// Writes I/O ports; only for the purgatory, where nothing else owns them.
    pub unsafe fn open(port: u16, divisor: u16) -> Option<Serial> {
        if port == 0 {
            return None;
        }
        if divisor == 0 {
            return Some(Serial { port });
        }
        outb(port + 1, 0x00); // no interrupts
        outb(port + 3, 0x80); // divisor latch access
        outb(port, divisor as u8);
        outb(port + 1, (divisor >> 8) as u8);
        outb(port + 3, 0x03); // 8 data bits, no parity, 1 stop bit
        outb(port + 2, 0x07); // FIFOs on and cleared
        outb(port + 4, 0x03); // DTR, RTS
        Some(Serial { port })
    }

    /// Sends `text`, waiting for the transmitter before each byte.
    ///
    /// # Safety
    /// As for [`Serial::open`].
    pub unsafe fn write(&self, text: &[u8]) {
        for &byte in text {
            let mut polls = 0;
            while inb(self.port + 5) & 0x20 == 0 && polls < READY_POLLS {
                polls += 1;
            }
            outb(self.port, byte);
        }
    }
}

unsafe fn outb(port: u16, value: u8) {
    core::arch::asm!("outb %al, %dx", in("dx") port, in("al") value,
        options(att_syntax, nomem, nostack, preserves_flags));
}

unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    core::arch::asm!("inb %dx, %al", in("dx") port, out("al") value,
        options(att_syntax, nomem, nostack, preserves_flags));
    value
}
